//! The Kinesis sink's configuration (`[kinesis]`, `BEACON_KINESIS_*`, the reference's
//! `EVENT_STREAM` and `REGION`).

use beacon_engine::ports::BatchLimits;
use beacon_engine::{FieldError, RangeCheck};
use serde::{Deserialize, Serialize};

/// Records one PutRecords call takes at most (the service's limit).
pub const PUT_RECORDS_RECORDS_MAX: usize = 500;
/// Bytes one PutRecords call takes at most on a classic stream: data and partition keys.
pub const PUT_RECORDS_BYTES_MAX: usize = 5 << 20;
/// Bytes one record takes at most on a classic stream: data and partition key.
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// The largest `bytes_per_call_max` accepted: streams with raised limits take 10 MiB a call.
const BYTES_PER_CALL_CEILING: usize = 10 << 20;

/// What the engine may put in one batch for this sink: one batch is one PutRecords call's worth.
pub const BATCH_LIMITS: BatchLimits = BatchLimits {
    records_max: PUT_RECORDS_RECORDS_MAX,
    bytes_max: PUT_RECORDS_BYTES_MAX,
};

const _: () = assert!(RECORD_BYTES_MAX <= PUT_RECORDS_BYTES_MAX);
const _: () = assert!(PUT_RECORDS_BYTES_MAX <= BYTES_PER_CALL_CEILING);
const _: () = assert!(BATCH_LIMITS.records_max <= BatchLimits::CEILING.records_max);
const _: () = assert!(BATCH_LIMITS.bytes_max <= BatchLimits::CEILING.bytes_max);

/// Which value becomes each record's partition key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKey {
    /// The event's message id (as the reference): an even spread over Kinesis shards, so a hot
    /// campaign cannot make a hot Kinesis shard.
    MessageId,
    /// The campaign id: every event of a campaign on one Kinesis shard, in order (set
    /// `calls_in_flight_per_shard_max = 1` for strict order across retries).
    CampaignId,
}

/// Kinesis sink settings. Field docs give unit and default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KinesisConfig {
    /// Stream name. No default: without it (and without `EVENT_STREAM`) events go to the
    /// embedded segment files.
    pub stream: Option<String>,
    /// Endpoint URL for a local implementation of the Kinesis API (kinesalite). Default: AWS's.
    pub endpoint: Option<String>,
    /// AWS region. Default: the standard chain (`AWS_REGION`, profile, IMDS); `REGION` works too.
    pub region: Option<String>,
    /// `message_id` (default) or `campaign_id`.
    pub partition_key: PartitionKey,
    /// Records per PutRecords call. Default 500, the service limit.
    pub records_per_call_max: usize,
    /// Bytes per PutRecords call (data and partition keys). Default 5 MiB, the classic limit.
    pub bytes_per_call_max: usize,
    /// Bytes per record (data and partition key); larger records are dead-lettered.
    /// Default 1 MiB, the classic limit.
    pub record_bytes_max: usize,
    /// PutRecords calls in flight per engine shard. Default 4.
    pub calls_in_flight_per_shard_max: usize,
    /// Record bytes handed to the sidecar and not yet delivered, per engine shard; past it,
    /// batches wait `spool_after_ms` and then go to the spool. Default 16 MiB.
    pub bytes_in_flight_per_shard_max: usize,
    /// Milliseconds a batch may wait for room in flight before it is spooled. Default 200.
    pub spool_after_ms: u64,
    /// Milliseconds the sidecar keeps retrying a record before handing it back to be spooled.
    /// Default 10,000.
    pub record_ttl_ms: u64,
    /// First retry delay in milliseconds; doubles up to `retry_max_ms`, each delay drawn
    /// uniformly from zero to that (full jitter). Default 50.
    pub retry_min_ms: u64,
    /// Longest retry delay in milliseconds. Default 2,000.
    pub retry_max_ms: u64,
    /// Milliseconds one PutRecords call may take. Default 5,000.
    pub call_timeout_ms: u64,
    /// Bytes of spool per engine shard; when full the engine answers 503. Default 1 GiB.
    pub spool_bytes_max: u64,
    /// Milliseconds a stop spends sending what is in flight and what the spool holds, in order,
    /// while Kinesis takes records. What is left after it stays in the spool, and the process
    /// names the count and the directory and exits 3 (on an instance whose disk goes away those
    /// events would be lost). Default 20,000: within ECS's default 30 s stop timeout with the
    /// engine's 5 s `shutdown_grace_ms`.
    pub shutdown_flush_ms: u64,
    /// Pack many events into each Kinesis record in the KPL format, per destination shard
    /// (standard KCL and Lambda deaggregators read them). Default false.
    pub aggregation: bool,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        KinesisConfig {
            stream: None,
            endpoint: None,
            region: None,
            partition_key: PartitionKey::MessageId,
            records_per_call_max: PUT_RECORDS_RECORDS_MAX,
            bytes_per_call_max: PUT_RECORDS_BYTES_MAX,
            record_bytes_max: RECORD_BYTES_MAX,
            calls_in_flight_per_shard_max: 4,
            bytes_in_flight_per_shard_max: 16 << 20,
            spool_after_ms: 200,
            record_ttl_ms: 10_000,
            retry_min_ms: 50,
            retry_max_ms: 2_000,
            call_timeout_ms: 5_000,
            spool_bytes_max: 1 << 30,
            shutdown_flush_ms: 20_000,
            aggregation: false,
        }
    }
}

impl KinesisConfig {
    /// Every out-of-range field, named, with what is allowed.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut check = RangeCheck::new("kinesis");
        let records = self.records_per_call_max as u64;
        check.check(
            "records_per_call_max",
            records,
            1,
            PUT_RECORDS_RECORDS_MAX as u64,
        );
        let bytes = self.bytes_per_call_max as u64;
        check.check(
            "bytes_per_call_max",
            bytes,
            1024,
            BYTES_PER_CALL_CEILING as u64,
        );
        check.check(
            "record_bytes_max",
            self.record_bytes_max as u64,
            256,
            self.bytes_per_call_max as u64,
        );
        check.check(
            "calls_in_flight_per_shard_max",
            self.calls_in_flight_per_shard_max as u64,
            1,
            256,
        );
        check.check(
            "bytes_in_flight_per_shard_max",
            self.bytes_in_flight_per_shard_max as u64,
            64 << 10,
            1 << 34,
        );
        check.check("spool_after_ms", self.spool_after_ms, 0, 60_000);
        check.check("record_ttl_ms", self.record_ttl_ms, 100, 86_400_000);
        check.check("retry_min_ms", self.retry_min_ms, 1, 60_000);
        check.check(
            "retry_max_ms",
            self.retry_max_ms,
            self.retry_min_ms,
            600_000,
        );
        check.check("call_timeout_ms", self.call_timeout_ms, 10, 600_000);
        check.check("spool_bytes_max", self.spool_bytes_max, 1 << 20, 1 << 44);
        check.check("shutdown_flush_ms", self.shutdown_flush_ms, 0, 600_000);
        if let Some(s) = &self.stream {
            let ok = (1..=128).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                check.fail(
                    "stream",
                    format_args!("{s:?}"),
                    "a stream name is 1-128 characters of A-Z a-z 0-9 _ . -",
                );
            }
        }
        check.finish()
    }

    /// Capped exponential delays with full jitter: the n-th is uniform in [0, min(max, min·2ⁿ)].
    #[cfg(feature = "sink")]
    pub(crate) fn retry_delays(&self) -> impl Iterator<Item = std::time::Duration> {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(self.retry_min_ms))
            .with_max_delay(std::time::Duration::from_millis(self.retry_max_ms))
            .without_max_times()
            .build()
            .map(|cap| cap.mul_f64(fastrand::f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_service_limits_and_valid() {
        let cfg = KinesisConfig::default();
        assert_eq!(cfg.records_per_call_max, 500);
        assert_eq!(cfg.bytes_per_call_max, 5 << 20);
        assert_eq!(cfg.record_bytes_max, 1 << 20);
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let cfg = KinesisConfig {
            records_per_call_max: 501,
            stream: Some("no spaces".into()),
            ..KinesisConfig::default()
        };
        let e: Vec<String> = cfg
            .validate()
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let e = e.join("\n");
        assert!(
            e.contains("kinesis.records_per_call_max") && e.contains("kinesis.stream"),
            "{e}"
        );
    }

    #[test]
    fn retry_delays_are_capped_and_jittered() {
        let cfg = KinesisConfig {
            retry_min_ms: 10,
            retry_max_ms: 80,
            ..KinesisConfig::default()
        };
        let delays: Vec<_> = cfg.retry_delays().take(200).collect();
        assert_eq!(delays.len(), 200, "never gives up by itself");
        assert!(delays.iter().all(|d| d.as_millis() <= 80));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "jittered");
    }
}
