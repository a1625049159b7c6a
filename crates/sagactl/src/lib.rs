//! The operator CLI's commands, as a library so that the fault tests can use `audit` as their
//! oracle without going through a shell.

pub mod audit;
pub mod bench;
pub mod cli;
pub mod databases;
pub mod dlq;
pub mod history;
pub mod outbox;
pub mod output;
pub mod replay;
pub mod saga;
pub mod schemas;
pub mod stuck;
pub mod tail;
pub mod topics;
pub mod workflows;

use saga_events::{EventCodec, TopicNames};
use saga_messaging::KafkaSettings;

/// What every command needs to reach the system.
#[derive(Debug)]
pub struct Context {
    pub kafka: KafkaSettings,
    pub codec: EventCodec,
    pub topics: TopicNames,
    pub json: bool,
}
