//! The schema history for the commands that need it whole, or every problem with it as one
//! error. A module of its own because `diff`, `freeze` and `asyncapi` all report the same way.

use std::path::Path;

use saga_schemas::{HistoryError, SchemaHistory};

/// What is wrong with a schemas directory, one error a line, as one error.
pub(super) fn invalid(dir: &Path, errors: &[HistoryError]) -> anyhow::Error {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| format!("  {}", saga_messaging::error::error_chain(e)))
        .collect();
    anyhow::anyhow!(
        "{} is not a valid schema history:\n{}",
        dir.display(),
        lines.join("\n")
    )
}

/// The schema history under `dir`, or every problem with it.
pub fn load(dir: &Path) -> anyhow::Result<SchemaHistory> {
    SchemaHistory::load(dir).map_err(|errors| invalid(dir, &errors))
}
