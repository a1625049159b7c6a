//! What can be wrong with the `schemas/` directory itself, apart from the gate's verdict: every
//! loader and `freeze` report the same errors, each naming its file.

use saga_events::SchemaFileError;
use thiserror::Error;

/// What is wrong with the `schemas/` directory itself; each names the file.
#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("{file}: cannot be read")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    SchemaFile(#[from] SchemaFileError),
    #[error("{file}: not a version file; an event's versions are <service>/<Event>/v<N>.avsc")]
    BadFileName { file: String },
    #[error(
        "{event}: versions {found:?} on disk, v{missing} is missing (versions count 1, 2, … without gaps)"
    )]
    Gap {
        event: String,
        missing: u32,
        found: Vec<u32>,
    },
    #[error("{file}: defines record {found}, but its directory says {expected}")]
    NameMismatch {
        file: String,
        expected: String,
        found: String,
    },
    #[error(
        "{file}: a shipped version must stand alone, but it refers to shared types by name ({detail}); run `sagactl schemas freeze`"
    )]
    NotFrozen { file: String, detail: String },
    #[error("{file}:{line}: expected `<service>/<Event> v<older> v<newer> <reason>`, got `{text}`")]
    BadAcceptedBreak {
        file: String,
        line: usize,
        text: String,
    },
}
