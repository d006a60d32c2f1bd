//! `beacon tail`: events as JSON lines, in order. From a data directory (shard and segment
//! order) or from a Kinesis stream (shard by shard, KPL aggregates opened, rkyv or protobuf
//! records decoded). Problems (a torn tail, a damaged frame, a record that does not decode)
//! go to standard error, and the command then exits non-zero after printing everything that
//! could be read.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use beacon_engine::config::RecordFormat;
use beacon_engine::embedded::read_all;
use beacon_engine::model::{decode, decode_auto, DecodedEvent};
use beacon_kinesis::reader::{self, StartAt};

use crate::cli::TailArgs;

pub fn run(args: &TailArgs) -> Result<()> {
    match (&args.dir, &args.kinesis_stream) {
        (Some(dir), None) => run_dir(dir),
        (None, Some(stream)) => run_stream(args, stream),
        _ => bail!("pass either a data directory or --kinesis-stream NAME"),
    }
}

/// Writes JSON lines to standard output, and stops quietly when the reader goes away
/// (`beacon tail … | head`).
struct Lines<W: Write> {
    out: W,
    closed: bool,
}

impl<W: Write> Lines<W> {
    fn new(out: W) -> Self {
        Lines { out, closed: false }
    }

    /// False once standard output is gone.
    fn put(&mut self, event: &DecodedEvent) -> std::io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let written = serde_json::to_writer(&mut self.out, event)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        self.check(written)
    }

    fn flush(&mut self) -> std::io::Result<bool> {
        let flushed = self.out.flush();
        self.check(flushed)
    }

    fn check(&mut self, r: std::io::Result<()>) -> std::io::Result<bool> {
        match r {
            Ok(()) => Ok(!self.closed),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

fn run_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass the engine's --data-dir",
            dir.display()
        );
    }
    check_holds_beacon_data(dir)?;
    let mut lines = Lines::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let mut write_err = None;
    let problems = read_all(dir, |_, event| {
        if write_err.is_none() {
            if let Err(e) = lines.put(&event) {
                write_err = Some(e);
            }
        }
    })
    .with_context(|| format!("cannot read {}", dir.display()))?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    lines.flush()?;
    for p in &problems {
        eprintln!(
            "beacon tail: {} at byte {}: {}",
            p.path.display(),
            p.offset,
            p.what
        );
    }
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in {} (above); every readable record was printed",
            problems.len(),
            dir.display()
        );
    }
    Ok(())
}

/// A record's event, in the format asked for or (`auto`) whichever it is.
fn decode_any(format: &str, bytes: &[u8]) -> Result<DecodedEvent, String> {
    match format {
        "rkyv" => decode(RecordFormat::Rkyv, bytes),
        "protobuf" => decode(RecordFormat::Protobuf, bytes),
        _ => decode_auto(bytes),
    }
    .map_err(|e| e.to_string())
}

fn run_stream(args: &TailArgs, stream: &str) -> Result<()> {
    let start = match args.from.as_str() {
        "latest" => StartAt::Latest,
        _ => StartAt::TrimHorizon,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime for the AWS SDK")?;
    let mut lines = Lines::new(std::io::BufWriter::new(std::io::stdout().lock()));
    let mut write_err = None;
    let problems = std::cell::Cell::new(0usize);
    let client = runtime
        .block_on(reader::client(
            args.kinesis_endpoint.as_deref(),
            args.region.as_deref(),
        ))
        .map_err(|e| anyhow::anyhow!("cannot read Kinesis stream {stream}: {e}"))?;
    let result = runtime.block_on(async {
        reader::read(
            &client,
            stream,
            start,
            args.follow,
            |record| match decode_any(&args.record_format, &record.data) {
                Ok(event) => {
                    let more = match lines.put(&event) {
                        Ok(more) => more,
                        Err(e) => {
                            write_err = Some(e);
                            false
                        }
                    };
                    // Followers see each record at once, not when a buffer fills.
                    more && (!args.follow || lines.flush().unwrap_or(false))
                }
                Err(why) => {
                    problems.set(problems.get() + 1);
                    let sub = record
                        .sub_index
                        .map(|i| format!(" (user record {i})"))
                        .unwrap_or_default();
                    eprintln!(
                        "beacon tail: {} sequence number {}{sub}: {why}",
                        record.shard_id, record.sequence_number
                    );
                    true
                }
            },
            |bad| {
                problems.set(problems.get() + 1);
                eprintln!(
                    "beacon tail: {} sequence number {}: starts like a KPL aggregate but its \
                     checksum or protobuf is damaged",
                    bad.shard_id, bad.sequence_number
                );
            },
        )
        .await
    });
    if let Some(e) = write_err {
        return Err(e.into());
    }
    lines.flush()?;
    result.with_context(|| {
        let at = args
            .kinesis_endpoint
            .as_deref()
            .unwrap_or("the region's endpoint");
        format!("cannot read Kinesis stream {stream} at {at}")
    })?;
    let problems = problems.get();
    if problems > 0 {
        bail!("{problems} record(s) of {stream} could not be decoded (above); every other one was printed");
    }
    Ok(())
}

/// Refuses a directory that is not an engine's data directory (a shard's folder, an empty
/// folder, some other directory), which would otherwise print nothing and look like success.
fn check_holds_beacon_data(dir: &Path) -> Result<()> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|n| n.starts_with("shard-")) {
        return Ok(());
    }
    if names.iter().any(|n| n.ends_with(".seg")) {
        bail!(
            "{} is one shard's folder; pass the data directory above it (the engine's --data-dir)",
            dir.display()
        );
    }
    bail!(
        "{} holds no beacon data: expected shard-<k>/ folders of segment files, as the engine's \
         --data-dir holds when events go to segment files",
        dir.display()
    )
}
