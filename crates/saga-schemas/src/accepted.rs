//! `schemas/accepted-breaks.txt`: the breaks that shipped before the gate existed, each on record
//! with its reason. Its own module because both the history (which loads it) and the gate (which
//! excuses what it lists) need it.

use std::path::Path;

use crate::error::HistoryError;
use crate::files::read;

/// The file of breaks accepted from before the gate, relative to `schemas/`.
pub const ACCEPTED_BREAKS_FILE: &str = "accepted-breaks.txt";

/// A break between two versions that shipped before the gate existed, kept on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedBreak {
    pub event: String,
    pub older: u32,
    pub newer: u32,
    pub reason: String,
}

/// Every line of the file (none when there is no file), or every malformed line.
pub(crate) fn load_accepted(root: &Path) -> Result<Vec<AcceptedBreak>, Vec<HistoryError>> {
    if !root.join(ACCEPTED_BREAKS_FILE).exists() {
        return Ok(Vec::new());
    }
    let text = read(root, ACCEPTED_BREAKS_FILE).map_err(|e| vec![e])?;
    let mut accepted = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(4, char::is_whitespace);
        let parsed = (|| {
            let event = parts.next()?.to_owned();
            let older = parts.next()?.strip_prefix('v')?.parse().ok()?;
            let newer = parts.next()?.strip_prefix('v')?.parse().ok()?;
            let reason = parts.next()?.trim().to_owned();
            (!reason.is_empty()).then_some(AcceptedBreak {
                event,
                older,
                newer,
                reason,
            })
        })();
        match parsed {
            Some(entry) => accepted.push(entry),
            None => errors.push(HistoryError::BadAcceptedBreak {
                file: ACCEPTED_BREAKS_FILE.to_owned(),
                line: index + 1,
                text: line.to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(errors)
    }
}
