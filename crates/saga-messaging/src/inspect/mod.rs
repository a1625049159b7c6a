//! Reading back what is on the broker and inspecting who consumes it, beside the per-message path
//! rather than in it: the consumer, the outbox and the relay handle each record as it goes by,
//! while these look at topics and groups from outside, after the fact. The relay's recovery reads
//! a partition back (what reached the broker before a crash?); the operator CLI and the tests read
//! topics and ask the group coordinator who owns which partition. None of it runs for a message
//! a service handles.
//!
//! - [`reader`]: one partition read by explicit assignment, and a group's committed offsets;
//! - [`groups`]: a consumer group's members and the partitions each owns;
//! - [`dead_letters`]: dead letters read back, chosen, and redriven or skipped.

pub mod dead_letters;
pub mod groups;
pub mod reader;
