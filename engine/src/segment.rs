//! The embedded sink: append-only segment files, one directory per shard.
//!
//! Layout: `DATA_DIR/shard-<k>/<n>.seg`, `n` a zero-padded counter that starts after the
//! highest existing segment, so a restart never overwrites earlier data. A segment rolls over
//! once it reaches `segment_bytes_max`. Each record is framed as
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (format byte + payload) | u8 format | payload
//! ```
//!
//! with format 1 = rkyv (beacon's versioned record) and 2 = protobuf (`TrackingEvent`). The
//! CRC finds a torn final write after a crash: the reader stops at the first bad frame.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::BufferedFile;

use crate::config::{FsyncPolicy, RecordFormat};
use crate::event::{decode, DecodedEvent};
use crate::sink::{LocalBoxFuture, SealedBatch, ShardSink, Sink, SinkError};

/// Bytes of framing before each payload.
pub const FRAME_HEADER_BYTES: usize = 9;

fn format_byte(f: RecordFormat) -> u8 {
    match f {
        RecordFormat::Rkyv => 1,
        RecordFormat::Protobuf => 2,
    }
}

fn format_from_byte(b: u8) -> Option<RecordFormat> {
    match b {
        1 => Some(RecordFormat::Rkyv),
        2 => Some(RecordFormat::Protobuf),
        _ => None,
    }
}

/// The embedded sink's settings.
#[derive(Clone, Debug)]
pub struct SegmentSink {
    pub dir: PathBuf,
    pub segment_bytes_max: u64,
    pub fsync: FsyncPolicy,
}

impl Sink for SegmentSink {
    fn open(&self, shard: usize) -> LocalBoxFuture<'static, Result<Box<dyn ShardSink>, SinkError>> {
        let cfg = self.clone();
        Box::pin(async move {
            let dir = cfg.dir.join(format!("shard-{shard}"));
            std::fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            let next = segments_in(&dir)
                .map_err(|source| SinkError::Io {
                    what: format!("listing {}", dir.display()),
                    source,
                })?
                .last()
                .map(|(n, _)| n + 1)
                .unwrap_or(0);
            Ok(Box::new(ShardSegments {
                cfg,
                dir,
                next,
                file: None,
                pos: 0,
            }) as Box<dyn ShardSink>)
        })
    }

    fn name(&self) -> &'static str {
        "segment-files"
    }
}

struct ShardSegments {
    cfg: SegmentSink,
    dir: PathBuf,
    next: u64,
    file: Option<BufferedFile>,
    pos: u64,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(glommio::GlommioError<()>) -> SinkError {
    let what = what.into();
    move |e| SinkError::Io {
        what,
        source: e.into(),
    }
}

impl ShardSegments {
    async fn roll_if_needed(&mut self) -> Result<(), SinkError> {
        if self.file.is_some() && self.pos < self.cfg.segment_bytes_max {
            return Ok(());
        }
        if let Some(old) = self.file.take() {
            old.fdatasync().await.map_err(io_err("fdatasync"))?;
            old.close().await.map_err(io_err("close"))?;
        }
        let path = self.dir.join(format!("{:010}.seg", self.next));
        let file = BufferedFile::create(&path)
            .await
            .map_err(io_err(format!("creating {}", path.display())))?;
        self.next += 1;
        self.pos = 0;
        self.file = Some(file);
        Ok(())
    }
}

impl ShardSink for ShardSegments {
    fn write<'a>(
        &'a mut self,
        batch: &'a SealedBatch,
    ) -> LocalBoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.roll_if_needed().await?;
            let fmt = format_byte(batch.format);
            let mut buf = Vec::with_capacity(batch.data.len() + batch.len() * FRAME_HEADER_BYTES);
            for (_, payload) in batch.iter() {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&[fmt]);
                crc.update(payload);
                buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                buf.extend_from_slice(&crc.finalize().to_le_bytes());
                buf.push(fmt);
                buf.extend_from_slice(payload);
            }
            let len = buf.len() as u64;
            let file = self.file.as_ref().expect("rolled above");
            let written = file
                .write_at(buf, self.pos)
                .await
                .map_err(io_err("write"))?;
            if written as u64 != len {
                // A short write leaves a torn frame; start a fresh segment and retry the batch.
                self.file = None;
                return Err(SinkError::Io {
                    what: "write".into(),
                    source: io::Error::new(io::ErrorKind::WriteZero, "short write"),
                });
            }
            self.pos += len;
            if self.cfg.fsync == FsyncPolicy::Batch {
                file.fdatasync().await.map_err(io_err("fdatasync"))?;
            }
            Ok(())
        })
    }

    fn close(&mut self) -> LocalBoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            if let Some(file) = self.file.take() {
                file.fdatasync().await.map_err(io_err("fdatasync"))?;
                file.close().await.map_err(io_err("close"))?;
            }
            Ok(())
        })
    }
}

/// Segment files in `dir`, sorted by number.
pub fn segments_in(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found)
}

/// One problem found while reading segments back.
#[derive(Debug)]
pub struct ReadProblem {
    pub path: PathBuf,
    pub offset: u64,
    pub what: String,
}

/// Reads every record under a data directory (all shards, segments in order), calling `each`
/// with the decoded event. Returns the problems met: a torn tail ends its segment.
pub fn read_all(
    data_dir: &Path,
    mut each: impl FnMut(usize, DecodedEvent),
) -> io::Result<Vec<ReadProblem>> {
    let mut problems = Vec::new();
    let mut shards: Vec<(usize, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let path = entry?.path();
        let shard = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse().ok());
        if let Some(shard) = shard {
            shards.push((shard, path));
        }
    }
    shards.sort();
    for (shard, dir) in shards {
        for (_, path) in segments_in(&dir)? {
            let bytes = std::fs::read(&path)?;
            let mut at = 0usize;
            while at < bytes.len() {
                let problem = |what: &str| ReadProblem {
                    path: path.clone(),
                    offset: at as u64,
                    what: what.to_string(),
                };
                if bytes.len() - at < FRAME_HEADER_BYTES {
                    problems.push(problem("torn frame header at end of segment"));
                    break;
                }
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
                let fmt = bytes[at + 8];
                let start = at + FRAME_HEADER_BYTES;
                if bytes.len() - start < len {
                    problems.push(problem("torn record at end of segment"));
                    break;
                }
                let payload = &bytes[start..start + len];
                let mut h = crc32fast::Hasher::new();
                h.update(&[fmt]);
                h.update(payload);
                if h.finalize() != crc {
                    problems.push(problem("checksum mismatch; rest of segment skipped"));
                    break;
                }
                match format_from_byte(fmt).map(|f| decode(f, payload)) {
                    Some(Ok(event)) => each(shard, event),
                    Some(Err(e)) => problems.push(problem(&e.to_string())),
                    None => problems.push(problem(&format!("unknown record format {fmt}"))),
                }
                at = start + len;
            }
        }
    }
    Ok(problems)
}
