//! The engine's configuration: one struct, TOML-loadable, validated once at start-up.
//!
//! Every field names its unit last and states its default. `validate` turns every
//! out-of-range value into an error that names the field and the allowed range, so a
//! bad deployment fails at start with one readable line instead of misbehaving later.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Hard ceiling on shards: the channel mesh is a full mesh (n² channels), and no host this
/// engine targets has more cores than this.
pub const SHARDS_MAX: usize = 256;
/// Kinesis PutRecords accepts at most 500 records per call; a batch never exceeds one call.
pub const BATCH_RECORDS_LIMIT: usize = 500;
/// Kinesis PutRecords accepts at most 5 MiB per call on classic streams.
pub const BATCH_BYTES_LIMIT: usize = 5 << 20;
/// The longest campaign id the engine accepts; longer ids are answered 400.
pub const CAMPAIGN_ID_BYTES_MAX: usize = 128;

/// How a request for a campaign owned by another shard is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Forward the request to the owner shard through the channel mesh; the owner answers.
    Owner,
    /// The accepting shard reads the owner's L1 map directly and batches the event itself;
    /// only misses travel to the owner, which keeps single-flight per campaign.
    Local,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Owner => "owner",
            Routing::Local => "local",
        }
    }
}

/// How each event is encoded in the sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// beacon's own format: a format-version header followed by an rkyv archive.
    Rkyv,
    /// The reference's `TrackingEvent` protobuf, byte-compatible with its consumers.
    Protobuf,
}

/// What a request gets when its campaign is not cached and core data cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// 503 with Retry-After; no event.
    Reject,
    /// Accept: the event carries only the campaign id and is flagged `validated = false`.
    Accept,
}

/// When the embedded segment sink calls fdatasync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every sealed batch is written: nothing acknowledged by the sink is lost on power
    /// failure; costs one fdatasync per batch.
    Batch,
    /// Leave it to the kernel's writeback: survives a process crash, not a power failure.
    Never,
}

/// The engine's configuration. Field docs give unit and default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Address every shard listens on (SO_REUSEPORT). Default `0.0.0.0:8080`, the reference's port.
    pub listen: SocketAddr,
    /// Number of shards, one pinned glommio executor each. Default: the available cores. 1..=256.
    pub shards: Option<usize>,
    /// Pin shard i to the i-th available CPU. Default true.
    pub pin_shards: bool,
    /// Where the embedded sink writes its segment files. Default `./data`.
    pub data_dir: PathBuf,
    /// Campaign core data as a JSON array in the reference's format. Default: the three sample
    /// programs built into the binary (`deploy/local/campaigns.json`).
    pub campaigns: Option<PathBuf>,
    /// Generate this many synthetic campaigns (ids `1000000`..) in addition to the file, for
    /// benchmarks. Default 0.
    pub synthetic_campaigns: usize,
    /// `owner` or `local`; see `Routing`. Default `local` (BENCHMARKS.md has the comparison).
    pub routing: Routing,
    /// `rkyv` or `protobuf`. Default `rkyv`.
    pub record_format: RecordFormat,
    /// `reject` (503, default) or `accept` (event flagged unvalidated) for a request whose
    /// campaign is not cached while core data cannot be read. Cached campaigns, even past their
    /// TTL, are served either way.
    pub on_core_data_unavailable: OnUnavailable,

    /// L1 entries across all shards; each shard holds `l1_entries_max / shards`. Default 100,000,
    /// the reference's cache size. At the limit the CLOCK hand evicts an entry not read since
    /// its last pass.
    pub l1_entries_max: usize,
    /// Seconds after write an L1 entry is fresh. Default 600 (the reference's 10 minutes).
    pub l1_ttl_secs: u64,
    /// Seconds an "unknown id" answer is cached, so floods of unknown ids do not reach the core
    /// data store. Default 30.
    pub l1_negative_ttl_secs: u64,

    /// A batch is sealed at this many records. Default 500 (one PutRecords call). 1..=500.
    pub batch_records_max: usize,
    /// A batch is sealed before it would exceed this many bytes. Default 4 MiB. Up to 5 MiB.
    pub batch_bytes_max: usize,
    /// A non-empty batch is sealed at the latest this many milliseconds after its first record.
    /// Default 50.
    pub batch_linger_ms: u64,
    /// Sealed batches a shard may have queued for its sink before it answers 503. Default 64.
    pub sink_queue_batches_max: usize,
    /// Segment files roll over at this size. Default 64 MiB.
    pub segment_bytes_max: u64,
    /// `batch` or `never`. Default `batch`.
    pub fsync: FsyncPolicy,

    /// Open connections per shard; further connections are closed at once and counted.
    /// Default 10,000.
    pub connections_per_shard_max: usize,
    /// Largest request head (request line + headers) in bytes; larger ones get 431. Default 8192.
    pub header_bytes_max: usize,
    /// Longest request path in bytes; longer ones get 414. Default 1024.
    pub path_bytes_max: usize,
    /// Milliseconds a client has to send a complete request head. hyper starts this timer
    /// whenever it waits for a head, so it is also the keep-alive idle timeout. Default 10,000.
    pub header_read_timeout_ms: u64,
    /// Milliseconds to let in-flight requests finish on shutdown before connections are cut.
    /// Default 5,000.
    pub shutdown_grace_ms: u64,
    /// Capacity of each shard-to-shard channel (requests or replies in flight per peer).
    /// Default 1024.
    pub mesh_channel_capacity: usize,
    /// Bytes of io_uring registered buffer memory per shard (counts against `ulimit -l`).
    /// Default 512 KiB; the engine does no DMA file I/O that needs more.
    pub io_memory_bytes: usize,
    /// Microseconds a shard busy-polls before it parks when idle. Default 0 (see BENCHMARKS.md).
    pub spin_before_park_us: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: "0.0.0.0:8080".parse().expect("literal address"),
            shards: None,
            pin_shards: true,
            data_dir: PathBuf::from("data"),
            campaigns: None,
            synthetic_campaigns: 0,
            routing: Routing::Local,
            record_format: RecordFormat::Rkyv,
            on_core_data_unavailable: OnUnavailable::Reject,
            l1_entries_max: 100_000,
            l1_ttl_secs: 600,
            l1_negative_ttl_secs: 30,
            batch_records_max: 500,
            batch_bytes_max: 4 << 20,
            batch_linger_ms: 50,
            sink_queue_batches_max: 64,
            segment_bytes_max: 64 << 20,
            fsync: FsyncPolicy::Batch,
            connections_per_shard_max: 10_000,
            header_bytes_max: 8192,
            path_bytes_max: 1024,
            header_read_timeout_ms: 10_000,
            shutdown_grace_ms: 5_000,
            mesh_channel_capacity: 1024,
            io_memory_bytes: 512 << 10,
            spin_before_park_us: 0,
        }
    }
}

/// A field that failed validation: which one, what it was, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}` = {value}: {allowed}")]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

/// Collects the out-of-range fields of one adapter's config section (`[redis]`, `[kinesis]`),
/// each named as `section.field`, in the engine's wording.
pub struct RangeCheck {
    section: &'static str,
    errors: Vec<String>,
}

impl RangeCheck {
    pub fn new(section: &'static str) -> Self {
        RangeCheck {
            section,
            errors: Vec::new(),
        }
    }

    /// Records `field` = `value` unless it lies in `lo..=hi`.
    pub fn check(&mut self, field: &str, value: u64, lo: u64, hi: u64) {
        if value < lo || value > hi {
            let section = self.section;
            self.errors.push(format!(
                "config field `{section}.{field}` = {value}: must be between {lo} and {hi}"
            ));
        }
    }

    /// Records a problem `check` cannot express.
    pub fn fail(&mut self, field: &str, problem: impl std::fmt::Display) {
        let section = self.section;
        self.errors
            .push(format!("config field `{section}.{field}` {problem}"));
    }

    pub fn finish(self) -> Result<(), Vec<String>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

impl EngineConfig {
    /// The shard count in force: the configured one, else the available cores.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Checks every field against its allowed range and returns all failures at once.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut range = |field: &'static str, value: u64, lo: u64, hi: u64| {
            if value < lo || value > hi {
                errors.push(FieldError {
                    field,
                    value: value.to_string(),
                    allowed: format!("must be between {lo} and {hi}"),
                });
            }
        };
        range("shards", self.shard_count() as u64, 1, SHARDS_MAX as u64);
        range(
            "batch_records_max",
            self.batch_records_max as u64,
            1,
            BATCH_RECORDS_LIMIT as u64,
        );
        range(
            "batch_bytes_max",
            self.batch_bytes_max as u64,
            1024,
            BATCH_BYTES_LIMIT as u64,
        );
        range("batch_linger_ms", self.batch_linger_ms, 1, 60_000);
        range(
            "sink_queue_batches_max",
            self.sink_queue_batches_max as u64,
            1,
            65_536,
        );
        range(
            "segment_bytes_max",
            self.segment_bytes_max,
            1 << 20,
            1 << 40,
        );
        range(
            "l1_entries_max",
            self.l1_entries_max as u64,
            self.shard_count() as u64,
            100_000_000,
        );
        range("l1_ttl_secs", self.l1_ttl_secs, 1, 86_400 * 30);
        range("l1_negative_ttl_secs", self.l1_negative_ttl_secs, 0, 86_400);
        range(
            "connections_per_shard_max",
            self.connections_per_shard_max as u64,
            1,
            1_000_000,
        );
        // hyper's read buffer cannot be smaller than 8 KiB.
        range(
            "header_bytes_max",
            self.header_bytes_max as u64,
            8192,
            1 << 20,
        );
        range(
            "path_bytes_max",
            self.path_bytes_max as u64,
            16,
            self.header_bytes_max as u64,
        );
        range(
            "header_read_timeout_ms",
            self.header_read_timeout_ms,
            10,
            3_600_000,
        );
        range("shutdown_grace_ms", self.shutdown_grace_ms, 0, 600_000);
        range(
            "mesh_channel_capacity",
            self.mesh_channel_capacity as u64,
            1,
            1 << 20,
        );
        range(
            "io_memory_bytes",
            self.io_memory_bytes as u64,
            64 << 10,
            1 << 30,
        );
        range(
            "spin_before_park_us",
            self.spin_before_park_us,
            0,
            1_000_000,
        );
        range(
            "synthetic_campaigns",
            self.synthetic_campaigns as u64,
            0,
            100_000_000,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Entries each shard's L1 may hold.
    pub fn l1_entries_per_shard(&self) -> usize {
        (self.l1_entries_max / self.shard_count()).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        EngineConfig::default().validate().unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let cfg = EngineConfig {
            shards: Some(0),
            batch_records_max: 501,
            ..EngineConfig::default()
        };
        let errors = cfg.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert!(fields.contains(&"shards"), "{fields:?}");
        assert!(fields.contains(&"batch_records_max"), "{fields:?}");
        assert!(errors[0].to_string().contains("must be between"));
    }

    #[test]
    fn toml_rejects_unknown_fields() {
        let err = toml::from_str::<EngineConfig>("shardz = 2").unwrap_err();
        assert!(err.to_string().contains("shardz"), "{err}");
        let ok: EngineConfig = toml::from_str("shards = 2\nrouting = \"owner\"").unwrap();
        assert_eq!(ok.shards, Some(2));
        assert_eq!(ok.routing, Routing::Owner);
    }
}
