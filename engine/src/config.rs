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
/// The most records one batch may hold, whatever the sink: record positions in a batch are
/// `u32`s and a batch's index is allocated up front. A sink may take fewer (`BatchLimits`).
pub const BATCH_RECORDS_CEILING: usize = 1 << 16;
/// The most bytes one batch may hold, whatever the sink: record offsets are `u32`s.
pub const BATCH_BYTES_CEILING: usize = 1 << 30;
const _: () = assert!(BATCH_BYTES_CEILING <= u32::MAX as usize);
const _: () = assert!(BATCH_RECORDS_CEILING <= BATCH_BYTES_CEILING);
/// Registered io_uring memory per shard when `io_memory_bytes` is not set and the locked-memory
/// limit allows it.
pub const IO_MEMORY_DEFAULT_BYTES: usize = 512 << 10;
/// The least registered io_uring memory per shard beacon runs with.
pub const IO_MEMORY_MIN_BYTES: usize = 64 << 10;
const _: () = assert!(IO_MEMORY_MIN_BYTES <= IO_MEMORY_DEFAULT_BYTES);

/// Open client connections per shard when `connections_per_shard_max` is not set and the
/// open-files limit holds them.
pub const CONNECTIONS_DEFAULT: usize = 10_000;
/// Connections a shard takes beyond its cap to answer health checks and scrapes (one request
/// each, then closed); every other request on them gets 503.
pub const ADMIN_CONNECTIONS_PER_SHARD: usize = 16;
/// The longest campaign id the engine accepts; longer ids are answered 400.
pub const CAMPAIGN_ID_BYTES_MAX: usize = 128;

/// The barrier before a shard sleeps (`park_barrier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParkBarrier {
    /// A full fence of the parking thread (x86_64; elsewhere as `Membarrier`).
    Fence,
    /// glommio's own `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`.
    Membarrier,
}

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

impl RecordFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Rkyv => "rkyv",
            RecordFormat::Protobuf => "protobuf",
        }
    }
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

/// When a tracking request is answered, relative to its event reaching storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// As soon as the event is in the shard's open batch (the reference's behaviour). A crash
    /// (`kill -9`, OOM, power) loses what was answered but not yet written: the open batch
    /// (at most one `batch_linger_ms` window) and sealed batches waiting for the sink (at
    /// most `sink_queue_batches_max`; none while the sink keeps up).
    Accepted,
    /// Once the event's batch is written by the sink (segment files: written and, with
    /// `fsync = "batch"`, synced; Kinesis: in Kinesis or in the synced spool). No answered event is lost to a crash; the answer waits for
    /// one sink write (a batch is handed to the sink as soon as the sink is idle: group
    /// commit, not the linger).
    Durable,
}

impl Ack {
    pub fn as_str(self) -> &'static str {
        match self {
            Ack::Accepted => "accepted",
            Ack::Durable => "durable",
        }
    }
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
    /// An address of its own for `/metrics`, `/health/ready` and `/health/check` (every shard
    /// listens there too). Set, the public listener answers 404 to `/metrics` and
    /// `/health/ready` (`/health/check` stays, for a load balancer), so metrics and readiness
    /// are reachable only where this address is. Default: none, everything on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Number of shards, one pinned glommio executor each. Default: the available cores. 1..=256.
    pub shards: Option<usize>,
    /// Pin shard i to the i-th available CPU. Default true.
    pub pin_shards: bool,
    /// The engine's data directory: the embedded sink's segment files (`shard-<k>/`) or the
    /// Kinesis sink's spool (`spool/`). Default `./data`.
    pub data_dir: PathBuf,
    /// `owner` or `local`; see `Routing`. Default `local` (BENCHMARKS.md has the comparison).
    pub routing: Routing,
    /// `rkyv` or `protobuf`. Default `rkyv`.
    pub record_format: RecordFormat,
    /// `reject` (503, default) or `accept` (event flagged unvalidated) for a request whose
    /// campaign is not cached while core data cannot be read. Cached campaigns, even past their
    /// TTL, are served either way.
    pub on_core_data_unavailable: OnUnavailable,
    /// `accepted` (default) or `durable`: when a tracking request is answered; see `Ack` and
    /// README "Durability".
    pub ack: Ack,
    /// With `ack = "durable"`: milliseconds a request waits for its batch to be written
    /// before it is answered 503 (the event may still be written later; clients retry and
    /// consumers dedupe on `messageId`). Default 5,000.
    pub ack_timeout_ms: u64,

    /// L1 entries across all shards; each shard holds `l1_entries_max / shards`. Default 100,000,
    /// the reference's cache size. At the limit the CLOCK hand evicts an entry not read since
    /// its last pass.
    pub l1_entries_max: usize,
    /// Seconds after write an L1 entry is fresh. Default 600 (the reference's 10 minutes).
    pub l1_ttl_secs: u64,
    /// Seconds an "unknown id" answer is cached, so floods of unknown ids do not reach the core
    /// data store. Default 30.
    pub l1_negative_ttl_secs: u64,

    /// A batch is sealed at this many records. Default 500 (one Kinesis PutRecords call). At most
    /// what the sink takes in one write (Kinesis: 500).
    pub batch_records_max: usize,
    /// A batch is sealed before it would exceed this many bytes. Default 4 MiB. At most what the
    /// sink takes in one write (Kinesis: 5 MiB).
    pub batch_bytes_max: usize,
    /// A non-empty batch is sealed at the latest this many milliseconds after its first record.
    /// Default 50.
    pub batch_linger_ms: u64,
    /// Sealed batches a shard may have queued for its sink before it answers 503. Default 4:
    /// with `ack = "accepted"` this bounds what a crash can lose while the sink is behind.
    pub sink_queue_batches_max: usize,

    /// Open client connections per shard. Beyond it a shard still takes
    /// `ADMIN_CONNECTIONS_PER_SHARD` more, which answer `/health/*` and `/metrics` and 503 to
    /// anything else, then close; further ones are closed at once. All are counted. Default:
    /// 10,000, or what the open-files limit holds (one warning line). Set, the limit must hold
    /// it or the start stops with a line saying what to change.
    pub connections_per_shard_max: Option<usize>,
    /// Largest request head (request line + headers) in bytes; larger ones get 431. Default 8192.
    pub header_bytes_max: usize,
    /// Longest request path in bytes; longer ones get 414. Default 1024.
    pub path_bytes_max: usize,
    /// Proxies in front of beacon that append the address they got a request from to
    /// `X-Forwarded-For` (an ALB is one). The client's address is the entry this many places
    /// from the right; 0 ignores the header (beacon faces clients directly); a header with
    /// fewer entries, or one that is not an address there, falls back to the peer's address.
    /// Entries further left are the client's own word and never used. Default 1 (an ALB).
    pub trusted_proxy_hops: usize,
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
    /// Default: 512 KiB, or less when the locked-memory limit cannot hold that for every shard
    /// (at least 64 KiB; one warning line says what was chosen). Set, it is used as given and
    /// a limit too small for it stops the start with a line saying what to change.
    pub io_memory_bytes: Option<usize>,
    /// Microseconds a shard busy-polls before it parks when idle. Default 0 (see BENCHMARKS.md).
    pub spin_before_park_us: u64,
    /// Create the shards' io_uring rings with `IORING_SETUP_COOP_TASKRUN`, so that a completion
    /// never interrupts a running shard (a reschedule IPI) but waits for its next kernel entry.
    /// Default true; false is for comparison (BENCHMARKS.md). Needs Linux 5.19: an older kernel
    /// refuses the flag and the rings are made without it (one warning).
    pub io_uring_coop_taskrun: bool,
    /// The memory barrier a shard runs before it sleeps: `fence` (its own full fence, x86_64) or
    /// `membarrier` (glommio's process-wide barrier, an IPI to every other CPU running beacon).
    /// Default `fence`; `membarrier` is for comparison (BENCHMARKS.md). Other targets than
    /// x86_64 always use `membarrier` (`engine/src/sys/barrier.rs` says why).
    pub park_barrier: ParkBarrier,
    /// The `[tracking]` table: a section of its own in the file and the environment
    /// (`BEACON_TRACKING_*`), handed to the engine here by whoever loads the configuration.
    #[serde(skip)]
    pub tracking: TrackingConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: "0.0.0.0:8080".parse().expect("literal address"),
            admin_listen: None,
            shards: None,
            pin_shards: true,
            data_dir: PathBuf::from("data"),
            routing: Routing::Local,
            record_format: RecordFormat::Rkyv,
            on_core_data_unavailable: OnUnavailable::Reject,
            ack: Ack::Accepted,
            ack_timeout_ms: 5_000,
            l1_entries_max: 100_000,
            l1_ttl_secs: 600,
            l1_negative_ttl_secs: 30,
            batch_records_max: 500,
            batch_bytes_max: 4 << 20,
            batch_linger_ms: 50,
            sink_queue_batches_max: 4,
            connections_per_shard_max: None,
            header_bytes_max: 8192,
            path_bytes_max: 1024,
            trusted_proxy_hops: 1,
            header_read_timeout_ms: 10_000,
            shutdown_grace_ms: 5_000,
            mesh_channel_capacity: 1024,
            io_memory_bytes: None,
            spin_before_park_us: 0,
            io_uring_coop_taskrun: true,
            park_barrier: ParkBarrier::Fence,
            tracking: TrackingConfig::default(),
        }
    }
}

/// What an event keeps of the client's address (`[tracking] client_ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientIpMode {
    /// The address as seen (after `trusted_proxy_hops`).
    Full,
    /// IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48 (`2001:db8:1::`).
    Truncate,
    /// None.
    Drop,
}

/// What happens to an event whose user agent is a known crawler or bot (`[tracking] bots`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bots {
    /// Stored, with `bot: true`.
    Flag,
    /// Answered as usual, not stored, counted.
    Drop,
    /// Not checked.
    Keep,
}

/// `POST /events`, clicks, visitors, privacy and bots (`[tracking]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Largest `POST /events` body in bytes, after decompression; larger gets 413, and a gzip
    /// body stops inflating here (a decompression bomb costs no more than this). Default
    /// 65,536: the most a browser's `navigator.sendBeacon` queues, so no page needs more.
    pub body_bytes_max: usize,
    /// Most events in one `POST /events`; more gets 413 and nothing is taken. Default 100.
    pub events_per_request_max: usize,
    /// Largest `props` object of one event, in bytes of compact JSON; a larger one rejects
    /// that event (the others are taken). Default 4,096: the event stays a small record.
    pub props_bytes_max: usize,
    /// Milliseconds a client has to send a whole `POST /events` body once its head is in;
    /// slower gets 408. Default 10,000 (as `header_read_timeout_ms`).
    pub body_read_timeout_ms: u64,
    /// Origins whose pages may post events (CORS): exact origins (`https://shop.example`),
    /// `*.example.com` (any subdomain of it, any scheme), or `*` (any). Default empty: no CORS
    /// headers, so browsers refuse cross-origin posts (sendBeacon of `text/plain` still
    /// arrives: it needs no CORS).
    pub cors_origins: Vec<String>,
    /// Percent of a shard's sink queue (`sink_queue_batches_max`) filled at which `POST
    /// /events` gets 503 with `Retry-After`, while pixel and event GETs (which a browser never
    /// retries) are admitted until the queue is full. Default 75; 100 treats both alike.
    pub post_queue_high_water_percent: u64,
    /// `full`, `truncate` or `drop`: what every event keeps of the client's address (see
    /// `ClientIpMode`). Default `full`.
    pub client_ip: ClientIpMode,
    /// A request with `Sec-GPC: 1` or `DNT: 1` is still counted, but gets no visitor cookie and
    /// its event keeps neither visitor id nor client address. Default true.
    pub honor_privacy_signals: bool,
    /// Hosts a click (`GET /click/{id}?url=`) may redirect to besides each campaign's landing
    /// URL host: exact hosts or `*.example.com` (its subdomains). Default empty: clicks go to
    /// landing hosts only.
    pub redirect_domains: Vec<String>,
    /// Name of the first-party visitor cookie (e.g. `bid`); empty turns visitor ids off.
    /// Default empty.
    pub cookie_name: String,
    /// `Domain=` of the visitor cookie (e.g. `example.com`, so every subdomain shares it);
    /// empty: the host the request went to. Default empty.
    pub cookie_domain: String,
    /// Lifetime of the visitor cookie in days, renewed at most once a day. Default 365.
    pub cookie_max_age_days: u64,
    /// `flag`, `drop` or `keep`: what happens to the events of known crawlers and bots (user
    /// agent matched against the `isbot` list, the verdict cached per shard). Default `flag`.
    pub bots: Bots,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            body_bytes_max: 64 << 10,
            events_per_request_max: 100,
            props_bytes_max: 4 << 10,
            body_read_timeout_ms: 10_000,
            cors_origins: Vec::new(),
            post_queue_high_water_percent: 75,
            client_ip: ClientIpMode::Full,
            honor_privacy_signals: true,
            redirect_domains: Vec::new(),
            cookie_name: String::new(),
            cookie_domain: String::new(),
            cookie_max_age_days: 365,
            bots: Bots::Flag,
        }
    }
}

impl TrackingConfig {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut check = RangeCheck::new("tracking");
        check.check("body_bytes_max", self.body_bytes_max as u64, 2, 16 << 20);
        let events = self.events_per_request_max as u64;
        check.check("events_per_request_max", events, 1, 10_000);
        check.check("props_bytes_max", self.props_bytes_max as u64, 2, 1 << 20);
        let body_ms = self.body_read_timeout_ms;
        check.check("body_read_timeout_ms", body_ms, 10, 3_600_000);
        let high = self.post_queue_high_water_percent;
        check.check("post_queue_high_water_percent", high, 1, 100);
        check.check("cookie_max_age_days", self.cookie_max_age_days, 1, 3650);
        let token = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        if !token(&self.cookie_name) {
            check.fail(
                "cookie_name",
                format_args!("{:?}", self.cookie_name),
                "letters, digits, _ - . only",
            );
        }
        if !token(&self.cookie_domain) {
            check.fail(
                "cookie_domain",
                format_args!("{:?}", self.cookie_domain),
                "a domain (`example.com`)",
            );
        }
        for domain in &self.redirect_domains {
            if let Err(why) = crate::model::click::check_domain_pattern(domain) {
                check.fail("redirect_domains", format_args!("{domain:?}"), why);
            }
        }
        for origin in &self.cors_origins {
            if let Err(why) = crate::http::check_origin_pattern(origin) {
                check.fail("cors_origins", format_args!("{origin:?}"), why);
            }
        }
        check.finish()
    }
}

/// The embedded sink's settings (`[segments]`): append-only segment files under `data_dir`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentsConfig {
    /// Segment files roll over at this size. Default 64 MiB.
    pub segment_bytes_max: u64,
    /// `batch` or `never`. Default `batch`.
    pub fsync: FsyncPolicy,
}

impl Default for SegmentsConfig {
    fn default() -> Self {
        SegmentsConfig {
            segment_bytes_max: 64 << 20,
            fsync: FsyncPolicy::Batch,
        }
    }
}

impl SegmentsConfig {
    /// Whether a finished segment write survives a crash (what `ack = "durable"` needs); if
    /// not, why, with the fix.
    pub fn durable_writes(&self) -> Result<(), &'static str> {
        match self.fsync {
            FsyncPolicy::Batch => Ok(()),
            FsyncPolicy::Never => Err(
                "segments.fsync = \"never\" leaves written batches in the page cache; set fsync = \"batch\"",
            ),
        }
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut check = RangeCheck::new("segments");
        check.check(
            "segment_bytes_max",
            self.segment_bytes_max,
            1 << 20,
            1 << 40,
        );
        check.finish()
    }
}

/// The embedded core data's settings (`[campaigns]`), used when no Redis is configured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// Campaign core data as a JSON array in the reference's format. Default: the three sample
    /// programs built into the binary (`deploy/local/campaigns.json`).
    pub file: Option<PathBuf>,
    /// Generate this many synthetic campaigns (ids `1000000`..) in addition to the file, for
    /// benchmarks. Default 0.
    pub synthetic: usize,
}

impl CampaignsConfig {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut check = RangeCheck::new("campaigns");
        check.check("synthetic", self.synthetic as u64, 0, 100_000_000);
        check.finish()
    }
}

/// A field that failed validation: which one (`section.field`, or just `field` in
/// `[engine]`), what it was, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}` = {value}: {allowed}")]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub allowed: String,
}

/// How a config field is named in messages: `[engine]`'s fields bare, others as
/// `section.field`.
pub fn field_name(section: &str, field: &str) -> String {
    match section {
        "engine" => field.to_string(),
        _ => format!("{section}.{field}"),
    }
}

/// Collects the out-of-range fields of one config section, so that every bad field is
/// reported in one run. Used by the engine's sections and by every adapter's.
pub struct RangeCheck {
    section: &'static str,
    errors: Vec<FieldError>,
}

impl RangeCheck {
    /// Fields of `[section]`; `"engine"` names its fields without a prefix.
    pub fn new(section: &'static str) -> Self {
        RangeCheck {
            section,
            errors: Vec::new(),
        }
    }

    fn name(&self, field: &str) -> String {
        field_name(self.section, field)
    }

    /// Records `field` = `value` unless it lies in `lo..=hi`.
    pub fn check(&mut self, field: &str, value: u64, lo: u64, hi: u64) {
        if value < lo || value > hi {
            self.fail(field, value, format_args!("must be between {lo} and {hi}"));
        }
    }

    /// Records a problem `check` cannot express: `field` = `value` is not `allowed`.
    pub fn fail(
        &mut self,
        field: &str,
        value: impl std::fmt::Display,
        allowed: impl std::fmt::Display,
    ) {
        self.errors.push(FieldError {
            field: self.name(field),
            value: value.to_string(),
            allowed: allowed.to_string(),
        });
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// The most one batch may hold for the sink to take it in one write (a Kinesis PutRecords
/// call takes 500 records and 5 MiB). Each sink states its own; the engine seals batches
/// within them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub records_max: usize,
    pub bytes_max: usize,
}

impl BatchLimits {
    /// What the engine itself can hold in one batch.
    pub const CEILING: BatchLimits = BatchLimits {
        records_max: BATCH_RECORDS_CEILING,
        bytes_max: BATCH_BYTES_CEILING,
    };
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
        self.validate_for_sink(BatchLimits::CEILING)
    }

    /// `validate`, with the batch bounds also within what the sink takes in one write.
    pub fn validate_for_sink(&self, limits: BatchLimits) -> Result<(), Vec<FieldError>> {
        let limits = BatchLimits {
            records_max: limits.records_max.min(BATCH_RECORDS_CEILING),
            bytes_max: limits.bytes_max.min(BATCH_BYTES_CEILING),
        };
        let mut check = RangeCheck::new("engine");
        // A bound taken from another field uses that field clamped into its own range, so a
        // bad value is blamed once, on itself, never on a field the user left alone.
        let shards = self.shard_count() as u64;
        check.check("shards", shards, 1, SHARDS_MAX as u64);
        let shards = shards.clamp(1, SHARDS_MAX as u64);
        self.check_batch_limits(&mut check, limits);
        check.check("batch_linger_ms", self.batch_linger_ms, 1, 60_000);
        let queue = self.sink_queue_batches_max as u64;
        check.check("sink_queue_batches_max", queue, 1, 65_536);
        let l1 = self.l1_entries_max as u64;
        check.check("l1_entries_max", l1, shards, 100_000_000);
        check.check("l1_ttl_secs", self.l1_ttl_secs, 1, 86_400 * 30);
        check.check("l1_negative_ttl_secs", self.l1_negative_ttl_secs, 0, 86_400);
        if let Some(conns) = self.connections_per_shard_max {
            check.check("connections_per_shard_max", conns as u64, 1, 1_000_000);
        }
        // hyper's read buffer cannot be smaller than 8 KiB.
        let head = self.header_bytes_max as u64;
        check.check("header_bytes_max", head, 8192, 1 << 20);
        let head = head.clamp(8192, 1 << 20);
        check.check("path_bytes_max", self.path_bytes_max as u64, 16, head);
        let hops = self.trusted_proxy_hops as u64;
        check.check("trusted_proxy_hops", hops, 0, 16);
        let header_ms = self.header_read_timeout_ms;
        check.check("header_read_timeout_ms", header_ms, 10, 3_600_000);
        check.check("shutdown_grace_ms", self.shutdown_grace_ms, 0, 600_000);
        check.check("ack_timeout_ms", self.ack_timeout_ms, 10, 600_000);
        let mesh = self.mesh_channel_capacity as u64;
        check.check("mesh_channel_capacity", mesh, 1, 1 << 20);
        if let Some(io) = self.io_memory_bytes {
            check.check(
                "io_memory_bytes",
                io as u64,
                IO_MEMORY_MIN_BYTES as u64,
                1 << 30,
            );
        }
        if let Some(admin) = self.admin_listen {
            if admin.port() != 0 && admin.port() == self.listen.port() {
                check.fail(
                    "admin_listen",
                    format_args!("\"{admin}\""),
                    format_args!("must use another port than listen ({})", self.listen),
                );
            }
        }
        check.check(
            "spin_before_park_us",
            self.spin_before_park_us,
            0,
            1_000_000,
        );
        let mut errors = check.finish().err().unwrap_or_default();
        errors.extend(self.tracking.validate().err().unwrap_or_default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_batch_limits(&self, check: &mut RangeCheck, limits: BatchLimits) {
        let records = self.batch_records_max as u64;
        check.check("batch_records_max", records, 1, limits.records_max as u64);
        let bytes = self.batch_bytes_max as u64;
        check.check("batch_bytes_max", bytes, 1024, limits.bytes_max as u64);
    }

    /// Open client connections per shard: the configured cap, else the default (the server
    /// fills in what the open-files limit holds before the shards start).
    pub fn connection_cap(&self) -> usize {
        self.connections_per_shard_max
            .unwrap_or(CONNECTIONS_DEFAULT)
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
            batch_records_max: BATCH_RECORDS_CEILING + 1,
            ..EngineConfig::default()
        };
        let errors = cfg.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"shards"), "{fields:?}");
        assert!(fields.contains(&"batch_records_max"), "{fields:?}");
        assert!(errors[0].to_string().contains("must be between"));
    }

    #[test]
    fn a_sink_bounds_the_batch() {
        let kinesis_like = BatchLimits {
            records_max: 500,
            bytes_max: 5 << 20,
        };
        let cfg = EngineConfig {
            batch_records_max: 501,
            ..EngineConfig::default()
        };
        cfg.validate().unwrap();
        let errors = cfg.validate_for_sink(kinesis_like).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "batch_records_max");
        assert!(
            errors[0].allowed.contains("between 1 and 500"),
            "{errors:?}"
        );
        EngineConfig::default()
            .validate_for_sink(kinesis_like)
            .unwrap();
    }

    #[test]
    fn sections_prefix_their_fields() {
        let seg = SegmentsConfig {
            segment_bytes_max: 1,
            ..SegmentsConfig::default()
        };
        let errors = seg.validate().unwrap_err();
        assert_eq!(errors[0].field, "segments.segment_bytes_max");
        let mut check = RangeCheck::new("kinesis");
        check.fail("stream", "\"a b\"", "a stream name is 1-128 characters");
        let e = check.finish().unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "config field `kinesis.stream` = \"a b\": a stream name is 1-128 characters"
        );
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
