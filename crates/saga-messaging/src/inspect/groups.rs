//! Who holds what in a consumer group: its members and the partitions each owns, as the group
//! coordinator reports them. Replicas of a service share its group; this is how an operator (and
//! the replica tests) see that every partition has an owner and which replica it is.
//!
//! The coordinator hands out each member's assignment as opaque bytes in the consumer protocol's
//! format (version, then per topic its name and partitions, then user data); they are decoded
//! here. Members are named by their member id, which for a static member starts with its
//! `group.instance.id` (`CONSUMER_INSTANCE_ID`, e.g. `payment-2`).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::kafka::KafkaSettings;

/// One member of a group and what it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// Each topic's partitions, sorted (the assignment may list a topic more than once).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

impl Member {
    /// The partitions of `topic` this member owns.
    pub fn partitions_of(&self, topic: &str) -> Vec<i32> {
        self.assignment.get(topic).cloned().unwrap_or_default()
    }
}

/// A group's state (`Stable`, `PreparingRebalance`, `Empty`, …) and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembers {
    pub state: String,
    pub members: Vec<Member>,
}

/// Asks the group coordinator for `group`'s members and their assignments. Blocking.
pub fn members(kafka: &KafkaSettings, group: &str) -> Result<GroupMembers, KafkaError> {
    let client: BaseConsumer = kafka.probe_config().create()?;
    let list = client.fetch_group_list(Some(group), Duration::from_secs(10))?;
    let Some(found) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(GroupMembers {
            state: "Dead".to_owned(),
            members: Vec::new(),
        });
    };
    let mut members: Vec<Member> = found
        .members()
        .iter()
        .map(|m| Member {
            member_id: m.id().to_owned(),
            client_id: m.client_id().to_owned(),
            host: m.client_host().to_owned(),
            assignment: m.assignment().map(decode_assignment).unwrap_or_default(),
        })
        .collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    Ok(GroupMembers {
        state: found.state().to_owned(),
        members,
    })
}

/// Decodes a consumer-protocol assignment; what does not parse is left out (a member of a
/// group that is not a consumer group, or bytes cut short, own nothing that can be named).
fn decode_assignment(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    let mut input = Input(bytes);
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let parsed = (|| -> Option<()> {
        let _version = input.i16()?;
        for _ in 0..input.i32()?.max(0) {
            let length = usize::try_from(input.i16()?).ok()?;
            let name = String::from_utf8_lossy(input.take(length)?).into_owned();
            let count = input.i32()?.max(0);
            let partitions = (0..count)
                .map(|_| input.i32())
                .collect::<Option<Vec<i32>>>()?;
            topics.entry(name).or_default().extend(partitions);
        }
        Some(())
    })();
    if parsed.is_none() {
        topics.clear();
    }
    for partitions in topics.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    topics
}

/// Big-endian reads off the front of a byte slice.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 3i16.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            bytes.extend((name.len() as i16).to_be_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                bytes.extend(p.to_be_bytes());
            }
        }
        // User data (the sticky assignor's), which is not ours to read.
        bytes.extend(4i32.to_be_bytes());
        bytes.extend([1, 2, 3, 4]);
        bytes
    }

    #[test]
    fn an_assignment_names_each_topic_and_its_partitions_once() {
        let bytes = assignment(&[
            ("order.events", &[3, 0]),
            ("payment.retry", &[1]),
            ("order.events", &[5]),
        ]);
        assert_eq!(
            decode_assignment(&bytes),
            BTreeMap::from([
                ("order.events".to_owned(), vec![0, 3, 5]),
                ("payment.retry".to_owned(), vec![1]),
            ])
        );
    }

    #[test]
    fn bytes_cut_short_name_nothing() {
        let bytes = assignment(&[("order.events", &[0, 3])]);
        assert!(decode_assignment(&bytes[..bytes.len() - 12]).is_empty());
        assert!(decode_assignment(&[]).is_empty());
    }
}
