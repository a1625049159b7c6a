//! `sagactl`: what an operator of the saga needs at hand.
//!
//! ```text
//! sagactl topics [--groups]                        topics, partitions, end offsets, group lag;
//!                                                   members and the partitions each owns
//! sagactl tail order.events --from-beginning       records decoded from Avro into JSON
//! sagactl saga <order_id>                          one order's events across all topics
//! sagactl replay <order_id>                        its records in fold order, the state after each
//! sagactl history rebuild                          the read side rebuilt, checked equal, switched
//! sagactl stuck --older-than 10s                   sagas not ended: what each waits for, parked messages
//! sagactl bench --orders 1000 --concurrency 32     throughput and latency of whole sagas
//! sagactl schemas check                            the compatibility gate of every event's versions
//! sagactl outbox list                              outbox rows a broker refused for good
//! sagactl workflows --waiting                      workflow instances and what each waits for
//! ```

fn main() -> anyhow::Result<()> {
    sagactl::cli::main()
}
