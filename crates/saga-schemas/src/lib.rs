//! The schema tooling: what the CLI (`sagactl schemas`) and the tests need to read and judge
//! `schemas/`, and what no service needs at run time. A service registers and reads the
//! schemas compiled into `saga-events`; only a person changing an event, and the checks that
//! stand in for them, look at every version on disk. Kept apart so that the gate, the diffs and
//! the catalogue can grow without a service building them, and services never depend on this
//! crate.
//!
//! - [`SchemaHistory`]: every version of every event, read from `schemas/`;
//! - [`SchemaHistory::breaks`] and [`SchemaHistory::upcast_gaps`]: the gate, whether each
//!   version reads and is read by every earlier one of its major, and each major is upcast;
//! - [`diff`] and [`freeze`]: what changed between two versions, and shipped versions made to
//!   stand alone;
//! - [`render`]: the event catalogue, generated from the history and `deploy/topics.conf`.

mod accepted;
mod asyncapi;
mod diff;
mod error;
mod files;
mod freeze;
mod gate;
mod history;
mod markdown;
mod topics_conf;

pub use accepted::{ACCEPTED_BREAKS_FILE, AcceptedBreak};
pub use asyncapi::{Catalogue, document, render};
pub use diff::diff;
pub use error::HistoryError;
pub use freeze::freeze;
pub use gate::{Break, Direction, REQUIRED_LEVEL, incompatibility};
pub use history::{EventHistory, SchemaHistory, SchemaVersion};
pub use markdown::markdown;
pub use topics_conf::{Topic, read_topics};
