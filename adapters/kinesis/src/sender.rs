//! The sidecar's side: turns jobs into PutRecords calls and retries what fails.
//!
//! A job is up to one engine batch of records. It is cut into calls of at most
//! `records_per_call_max` records and `bytes_per_call_max` bytes. After a call, only the records
//! whose result entry carries an error code are sent again (matched by index); a call that fails
//! whole (throttled, 5xx, timed out, unreachable) is sent again whole. Delays between attempts
//! grow exponentially to `retry_max_ms`, with full jitter. At `record_ttl_ms`, or when the shard
//! asks (shutdown), whatever is still undelivered goes back to the shard to be spooled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use futures_channel::oneshot;

use crate::config::KinesisConfig;
use crate::metrics::KinesisMetrics;
use crate::Entry;

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
    pub last_error: Arc<std::sync::Mutex<String>>,
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

/// Cuts `entries` into calls within the per-call limits.
pub(crate) fn calls(entries: Vec<Entry>, records_max: usize, bytes_max: usize) -> Vec<Vec<Entry>> {
    let mut calls = Vec::new();
    let mut current: Vec<Entry> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = e.data.len() + e.partition_key.len();
        if !current.is_empty() && (current.len() == records_max || bytes + size > bytes_max) {
            calls.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(e);
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
        entries: Vec<Entry>,
        deadline: Instant,
        give_up: &AtomicBool,
        give_up_now: &tokio::sync::Notify,
    ) -> Vec<Entry> {
        let mut undelivered = Vec::new();
        for mut call in calls(
            entries,
            self.cfg.records_per_call_max,
            self.cfg.bytes_per_call_max,
        ) {
            let mut delays = self.cfg.retry_delays();
            loop {
                call = self.put_records(call).await;
                if call.is_empty() {
                    break;
                }
                if give_up.load(Ordering::Acquire) || Instant::now() >= deadline {
                    undelivered.append(&mut call);
                    break;
                }
                self.metrics.retries.inc();
                let delay = delays.next().unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))) => {}
                    _ = give_up_now.notified() => {}
                }
            }
        }
        undelivered
    }

    /// One PutRecords call; returns the entries that failed.
    async fn put_records(&self, call: Vec<Entry>) -> Vec<Entry> {
        let request: Vec<PutRecordsRequestEntry> = call
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(e.data.clone()))
                    .partition_key(&e.partition_key)
                    .build()
                    .expect("data and partition key are set")
            })
            .collect();
        let bytes: usize = call.iter().map(|e| e.data.len()).sum();
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
                let code = e
                    .as_service_error()
                    .and_then(|s| s.meta().code())
                    .unwrap_or("unreachable")
                    .to_string();
                self.failed_call(
                    &code,
                    &aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
                );
                return call;
            }
            Err(_) => {
                self.failed_call("timeout", "PutRecords timed out");
                return call;
            }
        };
        self.metrics.calls.with_label_values(&["ok"]).inc();
        self.metrics.records_per_call.observe(call.len() as f64);
        let results = response.records();
        let mut failed = Vec::new();
        let mut delivered_bytes = bytes;
        for (i, entry) in call.into_iter().enumerate() {
            match results.get(i).and_then(|r| r.error_code()) {
                Some(code) => {
                    self.metrics.failed_records.with_label_values(&[code]).inc();
                    delivered_bytes -= entry.data.len();
                    failed.push(entry);
                }
                None if i < results.len() => {}
                // A response shorter than the request: treat the missing entries as failed.
                None => {
                    self.metrics
                        .failed_records
                        .with_label_values(&["missing"])
                        .inc();
                    delivered_bytes -= entry.data.len();
                    failed.push(entry);
                }
            }
        }
        let delivered = results.len().saturating_sub(failed.len()) as u64;
        self.metrics.records_sent.inc_by(delivered);
        self.metrics.bytes_sent.inc_by(delivered_bytes as u64);
        if failed.is_empty() {
            self.healthy.store(true, Ordering::Release);
        }
        failed
    }

    fn failed_call(&self, code: &str, detail: &str) {
        self.metrics.calls.with_label_values(&["failed"]).inc();
        self.metrics.failed_calls.with_label_values(&[code]).inc();
        self.healthy.store(false, Ordering::Release);
        *self.last_error.lock().expect("not poisoned") = format!("PutRecords: {detail}");
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

    #[test]
    fn calls_respect_both_limits() {
        let cut = calls((0..1200).map(|_| entry(9)).collect(), 500, 1 << 20);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        let cut = calls((0..10).map(|_| entry(99)).collect(), 500, 350);
        assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        assert!(calls(Vec::new(), 500, 100).is_empty());
    }
}
