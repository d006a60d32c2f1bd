//! A handler as a long-running consumer that polls the stream itself (`ListShards`,
//! `GetShardIterator`, `GetRecords`), for local stacks and for users who run consumers on ECS
//! rather than as Lambdas.
//!
//! State lives in `state_dir`:
//! - `<stream>.checkpoint.json`: the stream it belongs to (its ARN and creation time) and, for
//!   each shard, the sequence number of the last record fully handled, written (temporary file,
//!   fsync, rename) after every batch; a restart resumes after it, so a record is handled at
//!   least once and, the handlers being idempotent, stored once. A checkpoint of another stream
//!   of the same name (the stream was deleted and created again: a stack replaced, a local
//!   stack restarted), or one whose sequence numbers the stream refuses, is set aside (renamed
//!   `<stream>.checkpoint.json.set-aside-<unix time>`, one warning naming it) and every shard
//!   starts at `start` (`--from`): a consumer under a supervisor must not restart into the same
//!   error forever;
//! - `<stream>.failed/<shard>-<sequence number>.bin`: every record the handler could not decode,
//!   as it was read (the polling consumer's failure destination), after which the consumer goes
//!   on past it.
//!
//! A record the store could not take (after the handler's retries) is handled again, from that
//! record on, after a growing delay: the consumer never skips what it could not write.
//!
//! Shards are read round robin; the shard list is read again every 30 s, so shards created by
//! resharding are picked up (a child shard is read as soon as it is listed; for events, whose
//! items are keyed by message id, that order does not matter; for core-data changes, versions
//! decide).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use backon::BackoffBuilder;
use beacon_kinesis::reader::{describe, list_shards, StartAt};

use crate::batch::InRecord;
use crate::Handler;

/// Settings of a polling consumer.
#[derive(Clone, Debug)]
pub struct PollConfig {
    pub stream: String,
    /// Where checkpoints and undecodable records go.
    pub state_dir: PathBuf,
    /// Where a shard without a checkpoint starts.
    pub start: StartAt,
    /// Milliseconds between polls when no shard had anything new. Kinesis allows 5
    /// `GetRecords` a second per shard, shared by every consumer of the stream.
    pub idle_ms: u64,
    /// Records per `GetRecords` call (at most 10,000).
    pub records_max: i32,
    /// Seconds between two lines of counts in the log.
    pub report_every_secs: u64,
    /// Stop once every shard is read to its end (nothing new and nothing behind the tip), as
    /// a backfill or a re-run does; otherwise run until `stop`.
    pub stop_at_end: bool,
}

impl PollConfig {
    pub fn new(stream: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        PollConfig {
            stream: stream.into(),
            state_dir: state_dir.into(),
            start: StartAt::TrimHorizon,
            idle_ms: 250,
            records_max: 1_000,
            report_every_secs: 10,
            stop_at_end: false,
        }
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.state_dir
            .join(format!("{}.checkpoint.json", self.stream))
    }

    fn failed_dir(&self) -> PathBuf {
        self.state_dir.join(format!("{}.failed", self.stream))
    }
}

/// Which stream a checkpoint belongs to: a stream deleted and created again under the same
/// name is another stream, whose sequence numbers the old ones are not.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamIdentity {
    pub arn: String,
    /// The stream's creation time, seconds since the epoch.
    pub created_secs: i64,
}

/// The checkpoint file: the stream's identity, and the last record handled per shard. Files
/// written before the identity was kept hold the shard map alone.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum CheckpointFile {
    Identified {
        stream: StreamIdentity,
        shards: BTreeMap<String, String>,
    },
    Plain(BTreeMap<String, String>),
}

/// The last record handled, per shard, of the stream `identity`.
#[derive(Debug, Default)]
struct Checkpoints {
    path: PathBuf,
    identity: Option<StreamIdentity>,
    done: BTreeMap<String, String>,
}

impl Checkpoints {
    fn load(path: PathBuf) -> Result<Checkpoints, String> {
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a checkpoint file ({e}); move it away to start over",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                CheckpointFile::Plain(BTreeMap::new())
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let (identity, done) = match file {
            CheckpointFile::Identified { stream, shards } => (Some(stream), shards),
            CheckpointFile::Plain(shards) => (None, shards),
        };
        Ok(Checkpoints {
            path,
            identity,
            done,
        })
    }

    /// Renames the file out of the way (`…set-aside-<unix time>`) and starts afresh for
    /// `identity`; the new name.
    fn set_aside(&mut self, identity: StreamIdentity) -> Result<PathBuf, String> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = self.path.clone().into_os_string();
        aside.push(format!(".set-aside-{secs}"));
        let aside = PathBuf::from(aside);
        if self.path.exists() {
            std::fs::rename(&self.path, &aside)
                .map_err(|e| format!("cannot rename {}: {e}", self.path.display()))?;
        }
        self.identity = Some(identity);
        self.done.clear();
        Ok(aside)
    }

    fn save(&self) -> Result<(), String> {
        let tmp = self.path.with_extension("json.tmp");
        let file = match &self.identity {
            Some(stream) => CheckpointFile::Identified {
                stream: stream.clone(),
                shards: self.done.clone(),
            },
            None => CheckpointFile::Plain(self.done.clone()),
        };
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(&file)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

struct Cursor {
    shard_id: String,
    iterator: Option<String>,
    /// Open the shard again before the next read (its checkpoint was set aside).
    reopen: bool,
    /// The last read found nothing and nothing behind the tip (or the shard is closed).
    at_end: bool,
}

struct Poller<'a, H: Handler> {
    client: &'a Client,
    handler: &'a H,
    cfg: &'a PollConfig,
    stop: &'a AtomicBool,
    checkpoints: Checkpoints,
    /// The stream being read, as `DescribeStreamSummary` tells it.
    identity: StreamIdentity,
    cursors: Vec<Cursor>,
}

/// Runs `handler` on `cfg.stream` until `stop` is set; then saves the checkpoints and returns.
/// Fails only on what it cannot go on without: the stream's shard list, the state directory.
pub async fn run(
    client: &Client,
    handler: &impl Handler,
    cfg: &PollConfig,
    stop: &AtomicBool,
) -> Result<(), String> {
    std::fs::create_dir_all(cfg.failed_dir())
        .map_err(|e| format!("cannot create {}: {e}", cfg.failed_dir().display()))?;
    let identity = stream_identity(client, &cfg.stream).await?;
    let mut p = Poller {
        client,
        handler,
        cfg,
        stop,
        checkpoints: Checkpoints::load(cfg.checkpoint_path())?,
        identity,
        cursors: Vec::new(),
    };
    match p.checkpoints.identity.clone() {
        Some(held) if held != p.identity => {
            let why = format!(
                "it is of another stream named {} ({} created at {}; now {} created at {}): \
                 the stream was deleted and created again",
                cfg.stream, held.arn, held.created_secs, p.identity.arn, p.identity.created_secs
            );
            p.set_checkpoints_aside(&why)?;
        }
        Some(_) => {}
        None => p.checkpoints.identity = Some(p.identity.clone()),
    }
    p.refresh_shards().await?;
    tracing::info!(
        stream = %cfg.stream,
        shards = p.cursors.len(),
        checkpoints = %cfg.checkpoint_path().display(),
        "consuming"
    );
    let mut listed = Instant::now();
    let mut reported = Instant::now();
    let mut last_totals = handler.counters().to_string();
    while !stop.load(Ordering::Relaxed) {
        let mut new = 0;
        for i in 0..p.cursors.len() {
            new += p.poll_shard(i).await?;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if listed.elapsed() > Duration::from_secs(30) {
            if let Err(e) = p.refresh_shards().await {
                tracing::warn!(stream = %cfg.stream, error = %e, "cannot list shards; keeping the old list");
            }
            listed = Instant::now();
        }
        if reported.elapsed() > Duration::from_secs(cfg.report_every_secs) {
            // Only when something happened since the last line: an idle consumer stays quiet.
            let totals = handler.counters().to_string();
            if totals != last_totals {
                tracing::info!(stream = %cfg.stream, totals = %totals, "progress");
                last_totals = totals;
            }
            reported = Instant::now();
        }
        if cfg.stop_at_end && p.cursors.iter().all(|c| c.at_end || c.iterator.is_none()) {
            break;
        }
        if new == 0 {
            sleep_unless_stopped(Duration::from_millis(cfg.idle_ms), stop).await;
        }
    }
    p.checkpoints.save()?;
    tracing::info!(stream = %cfg.stream, totals = %handler.counters(), "stopped; checkpoints saved");
    Ok(())
}

async fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(50))).await;
    }
}

/// The stream's ARN and creation time.
async fn stream_identity(client: &Client, stream: &str) -> Result<StreamIdentity, String> {
    let out = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| format!("DescribeStreamSummary on {stream}: {}", describe(&e)))?;
    let summary = out
        .stream_description_summary()
        .ok_or_else(|| format!("DescribeStreamSummary on {stream}: no description"))?;
    Ok(StreamIdentity {
        arn: summary.stream_arn().to_string(),
        created_secs: summary.stream_creation_timestamp().secs(),
    })
}

impl<H: Handler> Poller<'_, H> {
    /// Sets the checkpoint file aside with one warning saying `why` and where every shard
    /// starts now.
    fn set_checkpoints_aside(&mut self, why: &str) -> Result<(), String> {
        let aside = self.checkpoints.set_aside(self.identity.clone())?;
        let from = match self.cfg.start {
            StartAt::TrimHorizon => "trim-horizon",
            StartAt::Latest => "latest",
        };
        tracing::warn!(
            stream = %self.cfg.stream,
            set_aside_as = %aside.display(),
            from,
            "checkpoint set aside: {why}; every shard starts at --from {from}"
        );
        self.checkpoints.save()
    }

    /// Adds a cursor for every shard not yet known.
    async fn refresh_shards(&mut self) -> Result<(), String> {
        let ids = list_shards(self.client, &self.cfg.stream)
            .await
            .map_err(|e| format!("ListShards on {}: {e}", self.cfg.stream))?;
        for id in ids {
            if !self.cursors.iter().any(|c| c.shard_id == id) {
                let iterator = self.open_or_set_aside(&id).await?;
                self.cursors.push(Cursor {
                    shard_id: id,
                    iterator,
                    reopen: false,
                    at_end: false,
                });
            }
        }
        Ok(())
    }

    /// An iterator just after the shard's checkpoint, or at `cfg.start` without one; the inner
    /// error says why the stream refused the checkpoint.
    async fn open(&self, shard_id: &str) -> Result<Result<Option<String>, String>, String> {
        let mut call = self
            .client
            .get_shard_iterator()
            .stream_name(&self.cfg.stream)
            .shard_id(shard_id);
        call = match self.checkpoints.done.get(shard_id) {
            Some(seq) => call
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => call.shard_iterator_type(match self.cfg.start {
                StartAt::TrimHorizon => ShardIteratorType::TrimHorizon,
                StartAt::Latest => ShardIteratorType::Latest,
            }),
        };
        match call.send().await {
            Ok(out) => Ok(Ok(out.shard_iterator)),
            // A sequence number this stream did not hand out: the checkpoint is of an earlier
            // stream of the same name (one created in the same second as this one, so that
            // its identity looked the same).
            Err(e)
                if self.checkpoints.done.contains_key(shard_id)
                    && e.as_service_error()
                        .is_some_and(|s| s.is_invalid_argument_exception()) =>
            {
                Ok(Err(format!(
                    "the stream refuses its sequence number for {shard_id} ({})",
                    describe(&e)
                )))
            }
            Err(e) => Err(format!(
                "GetShardIterator on {} {shard_id}: {}",
                self.cfg.stream,
                describe(&e)
            )),
        }
    }

    /// An iterator as `open` gives it; a checkpoint the stream refuses is set aside (for every
    /// shard) and the shard opened again at `start`.
    async fn open_or_set_aside(&mut self, shard_id: &str) -> Result<Option<String>, String> {
        match self.open(shard_id).await? {
            Ok(iterator) => Ok(iterator),
            Err(why) => {
                self.set_checkpoints_aside(&why)?;
                for c in &mut self.cursors {
                    c.iterator = None;
                    c.reopen = true;
                }
                self.open(shard_id).await?.map_err(|why| {
                    format!("GetShardIterator on {} {shard_id}: {why}", self.cfg.stream)
                })
            }
        }
    }

    /// Reads one page of shard `i` and handles it; the number of records read.
    async fn poll_shard(&mut self, i: usize) -> Result<usize, String> {
        if std::mem::take(&mut self.cursors[i].reopen) {
            let id = self.cursors[i].shard_id.clone();
            self.cursors[i].iterator = self.open_or_set_aside(&id).await?;
        }
        let Some(iterator) = self.cursors[i].iterator.clone() else {
            return Ok(0);
        };
        let shard_id = self.cursors[i].shard_id.clone();
        let page = match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(self.cfg.records_max)
            .send()
            .await
        {
            Ok(page) => page,
            Err(e) => {
                let expired = e
                    .as_service_error()
                    .is_some_and(|s| s.is_expired_iterator_exception());
                tracing::warn!(stream = %self.cfg.stream, shard = %shard_id, error = %describe(&e), "GetRecords failed");
                if expired {
                    self.cursors[i].iterator = self.open_or_set_aside(&shard_id).await?;
                } else {
                    sleep_unless_stopped(Duration::from_secs(1), self.stop).await;
                }
                return Ok(0);
            }
        };
        let records: Vec<InRecord> = page
            .records()
            .iter()
            .map(|r| InRecord {
                shard_id: shard_id.clone(),
                sequence_number: r.sequence_number().to_string(),
                data: r.data().as_ref().to_vec(),
            })
            .collect();
        self.cursors[i].at_end =
            records.is_empty() && page.millis_behind_latest().unwrap_or(0) == 0;
        let all_done = self.handle(&records).await?;
        if all_done {
            self.cursors[i].iterator = page.next_shard_iterator;
        } else {
            // Stopped in the middle of the page: start after the checkpoint next time.
            self.cursors[i].iterator = None;
        }
        Ok(records.len())
    }

    /// Handles `records` until every one is written or set aside, or the consumer stops; the
    /// checkpoint follows. True when the whole page was handled.
    async fn handle(&mut self, records: &[InRecord]) -> Result<bool, String> {
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        let mut from = 0;
        while from < records.len() {
            let rest = &records[from..];
            let outcome = self.handler.handle(rest).await;
            let done = outcome.failed_at.unwrap_or(rest.len());
            for &u in outcome.undecodable.iter().filter(|&&u| u < done) {
                self.set_aside(&rest[u])?;
            }
            if done > 0 {
                let last = &rest[done - 1];
                self.checkpoints
                    .done
                    .insert(last.shard_id.clone(), last.sequence_number.clone());
                self.checkpoints.save()?;
            }
            from += done;
            if from < records.len() {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let delay = backoff.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!(
                    stream = %self.cfg.stream,
                    sequence_number = %records[from].sequence_number,
                    retry_in_ms = delay.as_millis() as u64,
                    "records not stored; handling them again"
                );
                sleep_unless_stopped(delay, self.stop).await;
            }
        }
        Ok(true)
    }

    /// Writes an undecodable record to the failure directory.
    fn set_aside(&self, r: &InRecord) -> Result<(), String> {
        let path = failed_path(&self.cfg.failed_dir(), r);
        std::fs::write(&path, &r.data)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tracing::error!(
            shard = %r.shard_id,
            sequence_number = %r.sequence_number,
            file = %path.display(),
            "undecodable record set aside"
        );
        Ok(())
    }
}

fn failed_path(dir: &Path, r: &InRecord) -> PathBuf {
    dir.join(format!("{}-{}.bin", r.shard_id, r.sequence_number))
}
