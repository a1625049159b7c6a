//! Reading `schemas/`: a file's text and a directory's entries, each failure naming the path
//! relative to `schemas/` (what a person fixes), and the version a file name stands for.

use std::path::Path;

use crate::error::HistoryError;

pub(crate) fn read(root: &Path, relative: &str) -> Result<String, HistoryError> {
    std::fs::read_to_string(root.join(relative)).map_err(|source| HistoryError::Io {
        file: relative.to_owned(),
        source,
    })
}

/// The names in `relative`, sorted, so that every listing and report comes in one order.
pub(crate) fn entries(root: &Path, relative: &str) -> Result<Vec<String>, HistoryError> {
    let dir = root.join(relative);
    let listing = std::fs::read_dir(&dir).map_err(|source| HistoryError::Io {
        file: relative.to_owned(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|source| HistoryError::Io {
            file: relative.to_owned(),
            source,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// `v<N>.avsc` → N.
pub(crate) fn version_of(file_name: &str) -> Option<u32> {
    file_name
        .strip_prefix('v')?
        .strip_suffix(".avsc")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}
