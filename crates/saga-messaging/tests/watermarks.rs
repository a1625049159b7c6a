//! The partition reader's watermarks of many partitions at once, against the real broker: the
//! same answer as asking partition by partition, and an error, not a gap, for a partition the
//! broker does not know.

mod common;

use common::*;
use saga_events::Service;
use saga_messaging::Headers;
use saga_messaging::inspect::reader::PartitionReader;

#[tokio::test]
async fn watermarks_of_many_partitions_agree_with_each_partition_asked_alone() -> anyhow::Result<()>
{
    let iso = Isolated::new(3).await?;
    let orders = iso.topics.events(Service::Order);
    let payments = iso.topics.events(Service::Payment);
    // Records on some partitions only: 2, 0, 5 on one topic; 0, 1, 0 on the other.
    for (topic, partition, count) in [(&orders, 0, 2), (&orders, 2, 5), (&payments, 1, 1)] {
        for n in 0..count {
            produce_raw(
                &iso,
                topic,
                partition,
                &format!("key-{n}"),
                b"a record",
                &Headers::new(),
            )
            .await?;
        }
    }
    let kafka = iso.kafka.clone();
    let (orders, payments) = (orders.clone(), payments.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let reader = PartitionReader::new(&kafka)?;
        let partitions: Vec<(String, i32)> = [&orders, &payments]
            .into_iter()
            .flat_map(|topic| (0..3).map(move |p| (topic.clone(), p)))
            .collect();
        let all = reader.watermarks_of(&partitions)?;
        assert_eq!(
            all.len(),
            6,
            "every partition asked for is answered: {all:?}"
        );
        for (topic, partition) in &partitions {
            assert_eq!(
                all[&(topic.clone(), *partition)],
                reader.watermarks(topic, *partition)?,
                "{topic}[{partition}]"
            );
        }
        let highs: Vec<i64> = partitions.iter().map(|key| all[key].1).collect();
        assert_eq!(highs, [2, 0, 5, 0, 1, 0]);

        let unknown = reader.watermarks_of(&[(orders.clone(), 0), (orders.clone(), 7)]);
        assert!(
            unknown.is_err(),
            "a partition the broker does not know fails the call: {unknown:?}"
        );
        Ok(())
    })
    .await??;
    Ok(())
}
