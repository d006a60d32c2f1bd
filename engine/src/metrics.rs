//! Every metric the engine exports, defined in one place.
//!
//! Families are registered once in a shared `prometheus::Registry`; each shard resolves its own
//! labelled children at start (`ShardMetrics`), so the request path pays one uncontended atomic
//! add per counter and never hashes label values.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::cache::L1Outcome;
use crate::model::{BadId, Route};
use crate::sys::CpuClocks;

/// Statuses the engine itself answers with; anything else is counted as "other".
const STATUSES: [u16; 13] = [
    200, 204, 400, 403, 404, 405, 408, 413, 414, 415, 431, 503, 500,
];

/// Why an event was refused after its id passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The campaign's `valid` flag is false.
    Invalid,
    /// The sink is behind and the shard's queue is full.
    Backpressure,
    /// Core data could not be read and the engine is configured to reject.
    Unavailable,
    /// `ack = "durable"`: the event's batch was not written within `ack_timeout_ms` (answered
    /// 503; the event may still be written).
    AckTimeout,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Invalid,
        Refusal::Backpressure,
        Refusal::Unavailable,
        Refusal::AckTimeout,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Backpressure => "backpressure",
            Refusal::Unavailable => "unavailable",
            Refusal::AckTimeout => "ack_timeout",
        }
    }
}

/// What became of a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClickOutcome {
    /// Redirected, its event taken.
    Redirected,
    /// 400: its target is not allowed; no redirect.
    Refused,
    /// Redirected, but its event could not be taken (the sink's queue was full).
    Unrecorded,
}

impl ClickOutcome {
    pub const ALL: [ClickOutcome; 3] = [
        ClickOutcome::Redirected,
        ClickOutcome::Refused,
        ClickOutcome::Unrecorded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ClickOutcome::Redirected => "redirected",
            ClickOutcome::Refused => "refused",
            ClickOutcome::Unrecorded => "unrecorded",
        }
    }
}

/// What the bot check did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BotAction {
    Flagged,
    Dropped,
}

/// Why a request was answered 4xx before any lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRequest {
    Id(BadId),
    PathTooLong,
    Method,
    /// hyper answered 431: the request head was over `header_bytes_max`.
    HeadTooLarge,
    /// hyper answered 400 (or closed): the bytes were not an HTTP/1 request.
    Malformed,
    /// `POST /events`: the body is not JSON (or not UTF-8, or empty); nothing taken.
    BodyNotJson,
    /// `POST /events`: the body (inflated) is over `tracking.body_bytes_max`.
    BodyTooLarge,
    /// `POST /events`: more events than `tracking.events_per_request_max`.
    TooManyEvents,
    /// `POST /events`: the body did not arrive within `tracking.body_read_timeout_ms`.
    BodyTimeout,
    /// `POST /events`: a `Content-Type` other than JSON, text or NDJSON.
    MediaType,
    /// `POST /events`: a `Content-Encoding` other than gzip, or a corrupt gzip body.
    ContentEncoding,
}

impl BadRequest {
    pub const ALL: [BadRequest; 13] = [
        BadRequest::Id(BadId::Empty),
        BadRequest::Id(BadId::TooLong),
        BadRequest::Id(BadId::BadChar),
        BadRequest::PathTooLong,
        BadRequest::Method,
        BadRequest::HeadTooLarge,
        BadRequest::Malformed,
        BadRequest::BodyNotJson,
        BadRequest::BodyTooLarge,
        BadRequest::TooManyEvents,
        BadRequest::BodyTimeout,
        BadRequest::MediaType,
        BadRequest::ContentEncoding,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            BadRequest::Id(b) => b.as_str(),
            BadRequest::PathTooLong => "path_too_long",
            BadRequest::Method => "method",
            BadRequest::HeadTooLarge => "head_too_large",
            BadRequest::Malformed => "malformed",
            BadRequest::BodyNotJson => "body_not_json",
            BadRequest::BodyTooLarge => "body_too_large",
            BadRequest::TooManyEvents => "too_many_events",
            BadRequest::BodyTimeout => "body_timeout",
            BadRequest::MediaType => "media_type",
            BadRequest::ContentEncoding => "content_encoding",
        }
    }
}

/// The metric families, shared by all shards.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Process and per-thread CPU clocks; threads register themselves as they start.
    pub cpu: CpuClocks,
    requests: IntCounterVec,
    latency: HistogramVec,
    l1: IntCounterVec,
    forwarded: IntCounterVec,
    batches: IntCounterVec,
    accepted: IntCounterVec,
    written: IntCounterVec,
    refused: IntCounterVec,
    bad: IntCounterVec,
    conns: IntGaugeVec,
    conns_refused: IntCounterVec,
    l1_entries: IntGaugeVec,
    accept_errors: IntCounterVec,
    queue: IntGaugeVec,
    queue_full: IntCounterVec,
    sink_errors: IntCounterVec,
    shard_up: IntGaugeVec,
    unvalidated: IntCounterVec,
    updates: IntCounterVec,
    event_bytes: IntCounterVec,
    posted: IntCounterVec,
    posts_shed: IntCounterVec,
    privacy_signals: IntCounterVec,
    clicks: IntCounterVec,
    cookies_set: IntCounterVec,
    bots: IntCounterVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    r.register(Box::new(m.clone()))
        .expect("metric names are unique");
    m
}

impl Metrics {
    /// Registers the engine's families in a new registry.
    pub fn new() -> Self {
        Self::in_registry(Registry::new())
    }

    /// Registers the engine's families in `r` (shared with adapters), the standard process
    /// metrics (memory, open fds, whole CPU seconds) and the precise CPU clocks (`cpu`) from
    /// which a capacity plan reads CPU per request.
    pub fn in_registry(r: Registry) -> Self {
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once per registry");
        let cpu = CpuClocks::new();
        r.register(Box::new(cpu.clone()))
            .expect("registered once per registry");
        r.register(Box::new(crate::sys::ParkBarriersCollector::new()))
            .expect("registered once per registry");
        r.register(Box::new(crate::sys::RingsCollector::new()))
            .expect("registered once per registry");
        let c = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let g = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Metrics {
            cpu,
            requests: c("beacon_requests_total", "HTTP requests answered, by route, status and shard", &["route", "status", "shard"]),
            latency: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "beacon_request_duration_seconds",
                        "Time from request head parsed to response ready, tracking routes",
                    )
                    .buckets(vec![
                        0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
                        0.025, 0.05, 0.1, 0.25,
                    ]),
                    &["route", "shard"],
                )
                .expect("valid metric"),
            ),
            l1: c("beacon_l1_lookups_total", "L1 lookups by outcome and by the shard whose map was read (the campaign's owner)", &["outcome", "shard"]),
            forwarded: c("beacon_forwarded_total", "Requests (owner routing) or misses (local routing) sent to the owner shard, by sending shard", &["kind", "shard"]),
            batches: c("beacon_batches_sealed_total", "Batches sealed", &["shard"]),
            accepted: c("beacon_events_accepted_total", "Events accepted into a batch (the client got 200/204)", &["shard"]),
            written: c("beacon_events_written_total", "Events the sink has taken responsibility for", &["shard"]),
            refused: c("beacon_events_refused_total", "Requests for a known campaign that produced no event, by reason", &["reason", "shard"]),
            bad: c("beacon_bad_requests_total", "Requests refused before lookup, by reason", &["reason", "shard"]),
            conns: g("beacon_connections_open", "Open client connections", &["shard"]),
            conns_refused: c("beacon_connections_refused_total", "Connections over connections_per_shard_max: served health and metrics only, or closed at once", &["shard"]),
            l1_entries: g("beacon_l1_entries", "Campaigns (and unknown ids) in the shard's L1, sampled every 100 ms", &["shard"]),
            accept_errors: c("beacon_accept_errors_total", "Failed accepts (e.g. out of file descriptors)", &["shard"]),
            queue: g("beacon_sink_queue_batches", "Sealed batches waiting for or being written by the sink", &["shard"]),
            queue_full: c("beacon_sink_queue_full_total", "Seals refused because the sink queue was full", &["shard"]),
            sink_errors: c("beacon_sink_errors_total", "Failed sink writes (each is retried)", &["shard"]),
            shard_up: g("beacon_shard_up", "1 while the shard serves", &["shard"]),
            unvalidated: c("beacon_events_unvalidated_total", "Events accepted without core data (on_core_data_unavailable = accept)", &["shard"]),
            updates: c("beacon_core_data_updates_total", "Pushed core data changes, by result (ignored: the cache held a newer version)", &["result", "shard"]),
            event_bytes: c("beacon_event_bytes_total", "Encoded bytes of the events accepted into batches (bytes per event = this / events accepted)", &["shard"]),
            posted: c("beacon_posted_events_total", "Events in POST /events bodies, by outcome: accepted into a batch, or rejected alone (listed in the answer)", &["outcome", "shard"]),
            posts_shed: c("beacon_posts_shed_total", "POST /events answered 503 because the sink queue passed tracking.post_queue_high_water_percent (GETs are still admitted)", &["shard"]),
            privacy_signals: c("beacon_privacy_signal_requests_total", "Tracking requests with Sec-GPC: 1 or DNT: 1 (honor_privacy_signals: their events keep no client address)", &["shard"]),
            clicks: c("beacon_clicks_total", "Clicks by outcome: redirected (event taken), refused (target not allowed: 400, no redirect), unrecorded (redirected, but the sink queue was full)", &["outcome", "shard"]),
            cookies_set: c("beacon_visitor_cookies_set_total", "Set-Cookie answers of the visitor cookie: new ids and daily renewals", &["kind", "shard"]),
            bots: c("beacon_bot_events_total", "Events of known crawlers and bots: flagged (stored with bot: true) or dropped (answered, not stored)", &["action", "shard"]),
            registry: r,
        }
    }

    /// Resolves shard `shard`'s children.
    pub fn for_shard(&self, shard: usize) -> ShardMetrics {
        let s = shard.to_string();
        let s = s.as_str();
        ShardMetrics {
            requests: Route::ALL
                .iter()
                .map(|route| {
                    STATUSES
                        .iter()
                        .map(|st| {
                            self.requests
                                .with_label_values(&[route.as_str(), &st.to_string(), s])
                        })
                        .chain(std::iter::once(self.requests.with_label_values(&[
                            route.as_str(),
                            "other",
                            s,
                        ])))
                        .collect()
                })
                .collect(),
            latency: [Route::Event, Route::Pixel, Route::Events, Route::Click]
                .iter()
                .map(|r| self.latency.with_label_values(&[r.as_str(), s]))
                .collect(),
            l1: L1Outcome::ALL
                .iter()
                .map(|o| self.l1.with_label_values(&[o.as_str(), s]))
                .collect(),
            forwarded_requests: self.forwarded.with_label_values(&["request", s]),
            forwarded_misses: self.forwarded.with_label_values(&["miss", s]),
            batches_sealed: self.batches.with_label_values(&[s]),
            events_accepted: self.accepted.with_label_values(&[s]),
            events_written: self.written.with_label_values(&[s]),
            refused: Refusal::ALL
                .iter()
                .map(|r| self.refused.with_label_values(&[r.as_str(), s]))
                .collect(),
            bad: BadRequest::ALL
                .iter()
                .map(|b| self.bad.with_label_values(&[b.as_str(), s]))
                .collect(),
            connections_open: self.conns.with_label_values(&[s]),
            connections_refused: self.conns_refused.with_label_values(&[s]),
            accept_errors: self.accept_errors.with_label_values(&[s]),
            l1_entries: self.l1_entries.with_label_values(&[s]),
            sink_queue_batches: self.queue.with_label_values(&[s]),
            sink_queue_full: self.queue_full.with_label_values(&[s]),
            sink_errors: self.sink_errors.with_label_values(&[s]),
            shard_up: self.shard_up.with_label_values(&[s]),
            unvalidated: self.unvalidated.with_label_values(&[s]),
            updates_applied: self.updates.with_label_values(&["applied", s]),
            updates_ignored: self.updates.with_label_values(&["ignored", s]),
            event_bytes: self.event_bytes.with_label_values(&[s]),
            posted_accepted: self.posted.with_label_values(&["accepted", s]),
            posted_rejected: self.posted.with_label_values(&["rejected", s]),
            posts_shed: self.posts_shed.with_label_values(&[s]),
            privacy_signals: self.privacy_signals.with_label_values(&[s]),
            clicks: ClickOutcome::ALL
                .iter()
                .map(|o| self.clicks.with_label_values(&[o.as_str(), s]))
                .collect(),
            cookies_new: self.cookies_set.with_label_values(&["new", s]),
            cookies_renewed: self.cookies_set.with_label_values(&["renewed", s]),
            bots_flagged: self.bots.with_label_values(&["flagged", s]),
            bots_dropped: self.bots.with_label_values(&["dropped", s]),
        }
    }

    /// Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &self.registry.gather(),
            &mut out,
        )
        .expect("encoding to memory cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One shard's resolved metric children.
pub struct ShardMetrics {
    requests: Vec<Vec<IntCounter>>,
    latency: Vec<Histogram>,
    l1: Vec<IntCounter>,
    pub forwarded_requests: IntCounter,
    pub forwarded_misses: IntCounter,
    pub batches_sealed: IntCounter,
    pub events_accepted: IntCounter,
    pub events_written: IntCounter,
    refused: Vec<IntCounter>,
    bad: Vec<IntCounter>,
    pub connections_open: IntGauge,
    pub connections_refused: IntCounter,
    pub accept_errors: IntCounter,
    pub l1_entries: IntGauge,
    pub sink_queue_batches: IntGauge,
    pub sink_queue_full: IntCounter,
    pub sink_errors: IntCounter,
    pub shard_up: IntGauge,
    pub unvalidated: IntCounter,
    pub updates_applied: IntCounter,
    pub updates_ignored: IntCounter,
    pub event_bytes: IntCounter,
    posted_accepted: IntCounter,
    posted_rejected: IntCounter,
    pub posts_shed: IntCounter,
    pub privacy_signals: IntCounter,
    clicks: Vec<IntCounter>,
    pub cookies_new: IntCounter,
    pub cookies_renewed: IntCounter,
    bots_flagged: IntCounter,
    bots_dropped: IntCounter,
}

impl ShardMetrics {
    pub fn request(&self, route: Route, status: u16) {
        let r = Route::ALL
            .iter()
            .position(|x| *x == route)
            .unwrap_or(Route::ALL.len() - 1);
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len());
        self.requests[r][s].inc();
    }

    pub fn latency(&self, route: Route, seconds: f64) {
        match route {
            Route::Event => self.latency[0].observe(seconds),
            Route::Pixel => self.latency[1].observe(seconds),
            Route::Events => self.latency[2].observe(seconds),
            Route::Click => self.latency[3].observe(seconds),
            _ => {}
        }
    }

    /// Counts an L1 lookup; call on the metrics of the shard whose map was read.
    pub fn l1(&self, outcome: L1Outcome) {
        let i = L1Outcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(0);
        self.l1[i].inc();
    }

    pub fn click(&self, outcome: ClickOutcome) {
        let i = ClickOutcome::ALL
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(0);
        self.clicks[i].inc();
    }

    pub fn bot(&self, action: BotAction) {
        match action {
            BotAction::Flagged => self.bots_flagged.inc(),
            BotAction::Dropped => self.bots_dropped.inc(),
        }
    }

    /// Counts the events of one `POST /events`.
    pub fn posted(&self, accepted: usize, rejected: usize) {
        self.posted_accepted.inc_by(accepted as u64);
        self.posted_rejected.inc_by(rejected as u64);
    }

    pub fn refused(&self, why: Refusal) {
        let i = Refusal::ALL.iter().position(|x| *x == why).unwrap_or(0);
        self.refused[i].inc();
    }

    pub fn bad(&self, why: BadRequest) {
        let i = BadRequest::ALL.iter().position(|x| *x == why).unwrap_or(0);
        self.bad[i].inc();
    }
}
