//! The sidecar's side: turns jobs into PutRecords calls and retries what fails.
//!
//! A job is up to one engine batch of records. With `aggregation`, its records are first packed
//! into KPL aggregates per destination shard (`aggregate`). The records (or aggregates) are cut
//! into calls of at most `records_per_call_max` records and `bytes_per_call_max` bytes. After a
//! call, only the records whose result entry carries an error code are sent again (matched by
//! index); a call that fails whole (throttled, 5xx, timed out, unreachable) is sent again whole.
//! Delays between attempts grow exponentially to `retry_max_ms`, with full jitter. At
//! `record_ttl_ms`, or when the shard asks (shutdown), whatever is still undelivered goes back to
//! the shard to be spooled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use futures_channel::oneshot;

use crate::aggregate::{aggregate, Aggregate, ShardMap};
use crate::config::KinesisConfig;
use crate::metrics::KinesisMetrics;
use crate::record::Entry;

pub(crate) struct Job {
    pub entries: Vec<Entry>,
    pub deadline: Instant,
    /// Set by the shard at shutdown: stop retrying and hand everything back.
    pub give_up: Arc<AtomicBool>,
    pub give_up_now: Arc<tokio::sync::Notify>,
    pub reply: oneshot::Sender<Vec<Entry>>,
}

/// Shared by the sender tasks.
pub(crate) struct Sender {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub cfg: KinesisConfig,
    pub metrics: KinesisMetrics,
    /// False while calls fail; for `/health/ready`.
    pub healthy: Arc<AtomicBool>,
    /// What the log says of the calls: failing after a run or a share of failed calls,
    /// recovered after a quiet period, a summary while failing (never a line per call).
    pub outage: beacon_engine::Outage,
    pub last_error: Arc<std::sync::Mutex<String>>,
    /// The stream's open shards, for aggregation; reloaded when stale.
    pub shard_map: tokio::sync::Mutex<Option<(ShardMap, Instant)>>,
    pub shard_map_stale: AtomicBool,
}

/// How long a shard map is trusted before it is reloaded anyway (to notice a reshard even
/// while every record still lands where expected).
const SHARD_MAP_MAX_AGE: Duration = Duration::from_secs(60);

/// What one PutRecords entry carries: a user record, or an aggregate of them.
enum Unit {
    Plain(Entry),
    Aggregated(Aggregate),
}

impl Unit {
    fn data(&self) -> &[u8] {
        match self {
            Unit::Plain(e) => &e.data,
            Unit::Aggregated(a) => &a.data,
        }
    }

    fn partition_key(&self) -> &str {
        match self {
            Unit::Plain(e) => &e.partition_key,
            Unit::Aggregated(a) => &a.partition_key,
        }
    }

    fn size(&self) -> usize {
        self.data().len() + self.partition_key().len()
    }

    fn user_records(&self) -> usize {
        match self {
            Unit::Plain(_) => 1,
            Unit::Aggregated(a) => a.entries.len(),
        }
    }

    fn into_entries(self) -> Vec<Entry> {
        match self {
            Unit::Plain(e) => vec![e],
            Unit::Aggregated(a) => a.entries,
        }
    }
}

pub(crate) async fn serve(sender: Arc<Sender>, jobs: async_channel::Receiver<Job>) {
    while let Ok(job) = jobs.recv().await {
        let sender = sender.clone();
        tokio::spawn(async move {
            let reply = job.reply;
            let undelivered = sender
                .deliver(job.entries, job.deadline, &job.give_up, &job.give_up_now)
                .await;
            let _ = reply.send(undelivered);
        });
    }
}

/// Cuts `units` into calls within the per-call limits.
fn calls<T>(
    units: Vec<T>,
    size: impl Fn(&T) -> usize,
    records_max: usize,
    bytes_max: usize,
) -> Vec<Vec<T>> {
    let mut calls = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut bytes = 0;
    for u in units {
        let n = size(&u);
        if !current.is_empty() && (current.len() == records_max || bytes + n > bytes_max) {
            calls.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += n;
        current.push(u);
    }
    if !current.is_empty() {
        calls.push(current);
    }
    calls
}

impl Sender {
    /// Delivers `entries`; returns those it could not deliver in time.
    async fn deliver(
        &self,
        mut pending: Vec<Entry>,
        deadline: Instant,
        give_up: &AtomicBool,
        give_up_now: &tokio::sync::Notify,
    ) -> Vec<Entry> {
        let mut delays = self.cfg.retry_delays();
        loop {
            let mut failed = Vec::new();
            match self.units(std::mem::take(&mut pending)).await {
                Ok(units) => {
                    let cut = calls(
                        units,
                        Unit::size,
                        self.cfg.records_per_call_max,
                        self.cfg.bytes_per_call_max,
                    );
                    for call in cut {
                        failed.extend(
                            self.put_records(call)
                                .await
                                .into_iter()
                                .flat_map(Unit::into_entries),
                        );
                    }
                }
                Err(entries) => failed = entries,
            }
            pending = failed;
            if pending.is_empty() {
                return pending;
            }
            if give_up.load(Ordering::Acquire) || Instant::now() >= deadline {
                self.outage
                    .note("records handed back to spool", "", pending.len() as u64);
                return pending;
            }
            self.metrics.retries.inc();
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))) => {}
                _ = give_up_now.notified() => {}
            }
        }
    }

    /// Plain records, or aggregates per destination shard (which needs the shard map; without
    /// one the entries come back as the error, to be retried).
    async fn units(&self, entries: Vec<Entry>) -> Result<Vec<Unit>, Vec<Entry>> {
        if !self.cfg.aggregation {
            return Ok(entries.into_iter().map(Unit::Plain).collect());
        }
        let mut cached = self.shard_map.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < SHARD_MAP_MAX_AGE);
        if !fresh || self.shard_map_stale.swap(false, Ordering::AcqRel) {
            match self.list_shards().await {
                Ok(map) => *cached = Some((map, Instant::now())),
                Err(e) => {
                    self.failed_call("ListShards", &e);
                    if cached.is_none() {
                        return Err(entries);
                    }
                }
            }
        }
        let (map, _) = cached.as_ref().expect("loaded above");
        let aggregates = aggregate(entries, map, self.cfg.record_bytes_max);
        self.metrics.aggregates.inc_by(aggregates.len() as u64);
        Ok(aggregates.into_iter().map(Unit::Aggregated).collect())
    }

    /// The stream's open shards and their hash-key ranges.
    async fn list_shards(&self) -> Result<ShardMap, String> {
        let mut ranges = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let request = match &next {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let page = tokio::time::timeout(
                Duration::from_millis(self.cfg.call_timeout_ms),
                request.send(),
            )
            .await
            .map_err(|_| "ListShards timed out".to_string())?
            .map_err(|e| {
                let (code, message) = error_code_and_message(&e);
                format!("{code}: {message}")
            })?;
            for shard in page.shards() {
                let open = shard
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none();
                let range = shard.hash_key_range();
                let parsed = range.and_then(|r| {
                    Some((
                        r.starting_hash_key().parse().ok()?,
                        r.ending_hash_key().parse().ok()?,
                    ))
                });
                if let (true, Some((start, end))) = (open, parsed) {
                    ranges.push((start, end, shard.shard_id().to_string()));
                }
            }
            match page.next_token {
                Some(token) => next = Some(token),
                None => break,
            }
        }
        if ranges.is_empty() {
            return Err(format!("stream {} has no open shards", self.stream));
        }
        Ok(ShardMap::new(ranges))
    }

    /// One PutRecords call; returns the units that failed.
    async fn put_records(&self, call: Vec<Unit>) -> Vec<Unit> {
        let request: Vec<PutRecordsRequestEntry> = call
            .iter()
            .map(|u| {
                let mut entry = PutRecordsRequestEntry::builder()
                    .data(Blob::new(u.data().to_vec()))
                    .partition_key(u.partition_key());
                if let Unit::Aggregated(a) = u {
                    entry = entry.explicit_hash_key(&a.explicit_hash_key);
                }
                entry.build().expect("data and partition key are set")
            })
            .collect();
        let started = Instant::now();
        let sent = tokio::time::timeout(
            Duration::from_millis(self.cfg.call_timeout_ms),
            self.client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(request))
                .send(),
        )
        .await;
        self.metrics
            .call_seconds
            .observe(started.elapsed().as_secs_f64());
        let response = match sent {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let (code, message) = error_code_and_message(&e);
                self.failed_call(&code, &message);
                return call;
            }
            Err(_) => {
                self.failed_call("timeout", "PutRecords timed out");
                return call;
            }
        };
        self.metrics.calls.with_label_values(&["ok"]).inc();
        self.metrics.records_per_call.observe(call.len() as f64);
        let failed = self.failed_units(call, response.records());
        let line = match response.records().iter().find_map(|r| r.error_code()) {
            // Records refused inside a call that went through: Kinesis is throttling.
            Some(code) => self.outage.failed(code),
            None => {
                self.healthy.store(true, Ordering::Release);
                self.outage.ok()
            }
        };
        self.log(line);
        failed
    }

    /// The units of `call` that PutRecords' per-record `results` report failed (or leave
    /// out); counts what was sent and what failed.
    fn failed_units(&self, call: Vec<Unit>, results: &[PutRecordsResultEntry]) -> Vec<Unit> {
        let mut failed = Vec::new();
        for (i, unit) in call.into_iter().enumerate() {
            match results.get(i) {
                Some(r) if r.error_code().is_none() => {
                    self.metrics.records_sent.inc_by(unit.user_records() as u64);
                    self.metrics.bytes_sent.inc_by(unit.data().len() as u64);
                    if let (Unit::Aggregated(a), Some(landed)) = (&unit, r.shard_id()) {
                        if landed != a.shard_id {
                            // The stream was resharded: reload the map before the next aggregate.
                            self.shard_map_stale.store(true, Ordering::Release);
                        }
                    }
                }
                Some(r) => {
                    let code = r.error_code().unwrap_or("unknown");
                    self.refused(code, unit.user_records());
                    failed.push(unit);
                }
                // A response shorter than the request: treat the missing entries as failed.
                None => {
                    self.refused("missing", unit.user_records());
                    failed.push(unit);
                }
            }
        }
        failed
    }

    fn refused(&self, code: &str, records: usize) {
        self.metrics
            .failed_records
            .with_label_values(&[code])
            .inc_by(records as u64);
        self.outage.note("records refused", code, records as u64);
    }

    fn failed_call(&self, code: &str, detail: &str) {
        self.metrics.calls.with_label_values(&["failed"]).inc();
        self.metrics.failed_calls.with_label_values(&[code]).inc();
        self.healthy.store(false, Ordering::Release);
        *self.last_error.lock().expect("not poisoned") = format!("{code}: {detail}");
        self.log(self.outage.failed(&format!("{code}: {detail}")));
    }

    fn log(&self, line: Option<beacon_engine::OutageLine>) {
        if let Some(line) = line {
            beacon_engine::log_outage!(
                target: "beacon::kinesis",
                line,
                failing: "Kinesis calls failing; records are retried and spooled",
                still: "Kinesis calls still failing",
                recovered: "Kinesis calls succeed again";
                stream = %self.stream
            );
        }
    }
}

/// An AWS error as its code and message (`ResourceNotFoundException`, "Stream x not found"),
/// rather than the SDK's nested debug text; errors that never reached the service (DNS,
/// refused connections, TLS) are named by their outermost cause.
pub(crate) fn error_code_and_message<E, R>(
    e: &aws_sdk_kinesis::error::SdkError<E, R>,
) -> (String, String)
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_kinesis::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let meta = s.err();
            let code = meta.code().unwrap_or("ServiceError").to_string();
            let message = meta.message().unwrap_or("no message").to_string();
            (code, message)
        }
        SdkError::TimeoutError(_) => ("timeout".into(), "the call timed out".into()),
        SdkError::DispatchFailure(d) => {
            let why = if d.is_io() {
                "I/O error"
            } else if d.is_timeout() {
                "timed out"
            } else {
                "could not send"
            };
            let cause = std::error::Error::source(e)
                .map(|c| c.to_string())
                .unwrap_or_default();
            ("unreachable".into(), format!("{why}: {cause}"))
        }
        other => ("unreachable".into(), other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            partition_key: "k".into(),
            data: vec![0; n],
        }
    }

    fn size(e: &Entry) -> usize {
        e.data.len() + e.partition_key.len()
    }

    #[test]
    fn calls_respect_both_limits() {
        let cut = calls((0..1200).map(|_| entry(9)).collect(), size, 500, 1 << 20);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        let cut = calls((0..10).map(|_| entry(99)).collect(), size, 500, 350);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        assert!(calls(Vec::<Entry>::new(), size, 500, 100).is_empty());
    }
}
