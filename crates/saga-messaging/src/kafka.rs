//! Every Kafka client the saga creates is configured here, and nowhere else: the relay's
//! producer, the services' consumers, the readers of tools and relay recovery, and the probe
//! behind `/readyz`. Each setting that differs from librdkafka's default says why.

use rdkafka::ClientConfig;

/// The largest record the retry and dead-letter topics take (`max.message.bytes` in
/// `deploy/topics.conf` and the Strimzi topics): twice the broker's default for the event
/// topics, so that any record an event topic took is forwarded whole, its bytes intact, with
/// the headers that say what became of it.
pub const MAX_FORWARDED_BYTES: usize = 2 * 1024 * 1024;

/// Where the broker is, how to authenticate, and how every client of it is tuned.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// Extra client properties applied to every client (security settings: `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`).
    pub common: Vec<(String, String)>,
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            common: Vec::new(),
        }
    }

    /// Reads `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME` and
    /// `KAFKA_SASL_PASSWORD`, all unset by default (plaintext, no authentication: the local
    /// stack).
    pub fn with_security_from_env(mut self) -> Self {
        for (variable, property) in [
            ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
            ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
            ("KAFKA_SASL_USERNAME", "sasl.username"),
            ("KAFKA_SASL_PASSWORD", "sasl.password"),
        ] {
            if let Ok(value) = std::env::var(variable)
                && !value.is_empty()
            {
                self.common.push((property.to_owned(), value));
            }
        }
        self
    }

    fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.common {
            config.set(key, value);
        }
        config
    }

    /// The outbox relay's producer.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            // No duplicates or reordering from the producer's own retries; acks from every
            // in-sync replica before a row counts as published.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // How long a record may wait for the broker: long enough to ride out a broker
            // restart or failover. A record that times out fails its batch; the relay starts
            // over and recovers from what actually reached the broker, so nothing is lost. (If
            // later records of the same partition got through meanwhile, the failed one is sent
            // after them: consumers take a late event as they take any late reply.)
            .set("message.timeout.ms", "300000")
            // Its requests, counted on `/metrics` (`crate::requests`), every second.
            .set("statistics.interval.ms", "1000")
            // The relay hands over a whole batch at once and waits for its acks; records queued
            // while a request is in flight are batched anyway, so waiting to fill batches (the
            // default 5 ms) only adds latency to every hop of the saga.
            .set("linger.ms", "0")
            // Records are partitioned by the relay itself (`partition_for`); this is the Java
            // clients' choice too, should anything else produce with the same keys.
            .set("partitioner", "murmur2_random")
            // librdkafka refuses, before any broker sees it, a record above 1,000,000 bytes: less
            // than the broker's own default for the event topics, so a record taken there could
            // not be forwarded to retry or dead-letter, and the relay would stop on it. The
            // topics' own limits are the ones that count; this only has to exceed them (it also
            // bounds a whole request, hence the room for framing).
            .set(
                "message.max.bytes",
                (MAX_FORWARDED_BYTES + 64 * 1024).to_string(),
            );
        config
    }

    /// A consumer in `group` that commits only offsets stored after the message's transaction
    /// committed (at-least-once delivery, effectively-once effects through the inbox).
    /// `instance` makes it a static member (`group.instance.id`), so that a restart within the
    /// session timeout gets its partitions back without a rebalance of the whole group.
    pub fn consumer_config(&self, group: &str, instance: Option<&str>) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            // Offsets are stored by the consumer after each transaction commits, and librdkafka
            // commits what was stored every second (and on revocation and shutdown).
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // A dead member is noticed after 10 s; the saga's deadlines are set well above it.
            .set("session.timeout.ms", "10000")
            // Partitions move one at a time between members instead of every member stopping.
            .set("partition.assignment.strategy", "cooperative-sticky")
            // A fetch returns as soon as one record is there (fetch.min.bytes 1); fetch.wait.max.ms
            // only bounds how long an idle fetch waits, so latency does not depend on it.
            .set("fetch.wait.max.ms", "500")
            // Prefetch at most 16 MiB (default 64 MiB): enough for thousands of records per
            // partition, and it keeps a service's memory small.
            .set("queued.max.messages.kbytes", "16384")
            // Each partition's lag and fetch state, and the requests made, every second (metrics
            // and readiness).
            .set("statistics.interval.ms", "1000");
        if let Some(instance) = instance {
            config.set("group.instance.id", instance);
        }
        config
    }

    /// A consumer that reads by explicit assignment only: tools, tests and the relay's recovery.
    pub fn reader_config(&self) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", "saga-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        config
    }

    /// The read side's projector: it reads every partition of the event topics by explicit
    /// assignment and keeps its positions in its own database, committed with the rows they
    /// cover, so it never commits offsets to the broker.
    pub fn projector_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Unlike the services' consumers, the projector lets records gather: the broker
            // answers a fetch once 64 KiB are there or 50 ms have passed. It reads every
            // partition of the event topics, and librdkafka sends each fetch whole (no fetch
            // sessions), so a fetch for every few records was an eighth of the broker's
            // requests at 100 sagas/s. The read side is eventually consistent (`?wait_ms=` waits
            // for it); 50 ms more behind buys fewer, larger batches. At most 16 MiB are
            // prefetched.
            .set("fetch.min.bytes", "65536")
            .set("fetch.wait.max.ms", "50")
            .set("queued.max.messages.kbytes", "16384")
            // Its requests, counted on `/metrics` (`crate::requests`), every second.
            .set("statistics.interval.ms", "1000");
        config
    }

    /// A client that only asks for metadata: what `/readyz` uses to see the broker.
    pub fn probe_config(&self) -> ClientConfig {
        let mut config = self.base();
        config.set("socket.timeout.ms", "2000");
        config
    }
}

/// The partition Kafka's Java clients (and librdkafka's `murmur2_random`) choose for `key`.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    let positive = murmur2(key) & 0x7fff_ffff;
    positive % partitions
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Vectors from Kafka's own UtilsTest.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn partitions_are_never_negative() {
        for key in ["21", "foobar", "order-1", ""] {
            let p = partition_for(key.as_bytes(), 6);
            assert!((0..6).contains(&p), "{key} -> {p}");
        }
    }
}
