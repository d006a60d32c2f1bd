//! The embedded sink: append-only segment files, one directory per shard.
//!
//! Layout: `DATA_DIR/shard-<k>/<n>.seg`, `n` a zero-padded counter that starts after the
//! highest existing segment, so a restart never overwrites earlier data. A segment rolls over
//! once it reaches `segment_bytes_max`. The next segment is created (empty) when the current one
//! is, so that rolling over needs no descriptor; a clean close removes it, and the next start
//! removes one a crash left. Each record is framed as
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (format byte + payload) | u8 format | payload
//! ```
//!
//! (`frame`'s framing with the format byte as an uncounted tag), with format 1 = rkyv
//! (beacon's versioned record) and 2 = protobuf (`TrackingEvent`). The CRC finds a torn final
//! write after a crash: the reader stops at the first bad frame.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::BufferedFile;

use super::frame::{put_frame, read_frame, FrameError, FRAME_HEADER_BYTES};
use crate::config::{BatchLimits, FsyncPolicy, RecordFormat, SegmentsConfig};
use crate::model::{decode, DecodedEvent};
use crate::ports::{LocalBoxFuture, SealedBatch, ShardSink, Sink, SinkError};

/// The format byte before each payload, in the body of its frame but not in its length.
const FORMAT_TAG_BYTES: usize = 1;

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

/// The embedded sink: segment files under `dir`, one directory per shard.
#[derive(Clone, Debug)]
pub struct SegmentSink {
    pub dir: PathBuf,
    pub cfg: SegmentsConfig,
}

impl SegmentSink {
    /// A segment file takes any batch the engine can build.
    pub const BATCH_LIMITS: BatchLimits = BatchLimits::CEILING;
}

impl Sink for SegmentSink {
    fn open(&self, shard: usize) -> LocalBoxFuture<'static, Result<Box<dyn ShardSink>, SinkError>> {
        let dir = self.dir.join(format!("shard-{shard}"));
        let cfg = self.cfg.clone();
        Box::pin(async move {
            std::fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            let listing = |source| SinkError::Io {
                what: format!("listing {}", dir.display()),
                source,
            };
            let mut segments = segments_in(&dir).map_err(listing)?;
            // The spare a crash left behind (empty): its number is the next one again.
            while let Some((_, path)) = segments.last() {
                if std::fs::metadata(path).map_err(listing)?.len() > 0 {
                    break;
                }
                std::fs::remove_file(path).map_err(listing)?;
                segments.pop();
            }
            let next = segments.last().map(|(n, _)| n + 1).unwrap_or(0);
            Ok(Box::new(ShardSegments {
                cfg,
                dir,
                next,
                file: None,
                pos: 0,
                spare: None,
            }) as Box<dyn ShardSink>)
        })
    }

    fn name(&self) -> &'static str {
        "segment-files"
    }

    fn batch_limits(&self) -> BatchLimits {
        Self::BATCH_LIMITS
    }

    fn durable_writes(&self) -> Result<(), String> {
        self.cfg.durable_writes().map_err(String::from)
    }
}

struct ShardSegments {
    cfg: SegmentsConfig,
    dir: PathBuf,
    next: u64,
    file: Option<BufferedFile>,
    pos: u64,
    /// The segment after `file`, created when `file` was: rolling over takes no new descriptor,
    /// so a process out of descriptors (connections took them) still writes its events.
    spare: Option<(PathBuf, BufferedFile)>,
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
        let (_, file) = match self.spare.take() {
            Some(spare) => spare,
            None => self.create().await?,
        };
        self.pos = 0;
        self.file = Some(file);
        // The next one now, while there are descriptors; if there are none, the next roll
        // creates its file itself.
        match self.create().await {
            Ok(spare) => self.spare = Some(spare),
            Err(e) => tracing::warn!(error = %e, "no spare segment file: the next roll opens one"),
        }
        Ok(())
    }

    /// Creates segment number `next`, and counts it.
    async fn create(&mut self) -> Result<(PathBuf, BufferedFile), SinkError> {
        let path = self.dir.join(format!("{:010}.seg", self.next));
        let file = BufferedFile::create(&path)
            .await
            .map_err(io_err(format!("creating {}", path.display())))?;
        self.next += 1;
        Ok((path, file))
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
            let frame = FRAME_HEADER_BYTES + FORMAT_TAG_BYTES;
            let mut buf = Vec::with_capacity(batch.data.len() + batch.len() * frame);
            for (_, payload) in batch.iter() {
                put_frame(&mut buf, FORMAT_TAG_BYTES, &[&[fmt], payload]);
            }
            let len = buf.len() as u64;
            let file = self.file.as_ref().expect("rolled above");
            let written = file
                .write_at(buf, self.pos)
                .await
                .map_err(io_err("write"))?;
            if written as u64 != len {
                // A short write (the disk is full) leaves part of the batch in the file: cut it
                // off again, so that the retry writes the whole batch once, in the same place,
                // and no reader ever sees its first records twice or a torn frame in between.
                // If even that fails, a fresh segment takes the retry and the cut-off part
                // reads as a torn tail.
                if file.truncate(self.pos).await.is_err() {
                    self.file = None;
                }
                return Err(SinkError::Io {
                    what: "write".into(),
                    source: io::Error::new(
                        io::ErrorKind::StorageFull,
                        format!("short write: {written} of {len} bytes (is the disk full?)"),
                    ),
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
            if let Some((path, spare)) = self.spare.take() {
                spare.close().await.map_err(io_err("close"))?;
                std::fs::remove_file(&path).map_err(|source| SinkError::Io {
                    what: format!("removing the unused {}", path.display()),
                    source,
                })?;
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

/// The largest record a frame may hold for resynchronisation to consider it: events are a few
/// hundred bytes (a request head is at most 1 MiB).
const RECORD_BYTES_MAX: usize = 1 << 20;

/// A torn tail is one interrupted write: at most one batch's frames. Anything longer that does
/// not parse is damage.
const TORN_TAIL_BYTES_MAX: usize = 64 << 20;

/// Where the next frame that checks out (plausible length, known format tag, matching CRC)
/// starts, scanning from `from`.
fn next_intact_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let header = FRAME_HEADER_BYTES + FORMAT_TAG_BYTES;
    (from..bytes.len().saturating_sub(header)).find(|&p| {
        let len = u32::from_le_bytes(bytes[p..p + 4].try_into().expect("4 bytes")) as usize;
        len <= RECORD_BYTES_MAX
            && p + header + len <= bytes.len()
            && format_from_byte(bytes[p + FRAME_HEADER_BYTES]).is_some()
            && read_frame(bytes, p, FORMAT_TAG_BYTES).is_ok()
    })
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
            read_segment(
                &bytes,
                |event| each(shard, event),
                |offset, what| {
                    problems.push(ReadProblem {
                        path: path.clone(),
                        offset,
                        what,
                    })
                },
            );
        }
    }
    Ok(problems)
}

/// Reads one segment file's bytes: `each` gets every record that decodes, `problem` the offset
/// and description of everything else. A torn tail ends the file; damage in the middle is
/// skipped to the next frame that checks out.
pub fn read_segment(
    bytes: &[u8],
    mut each: impl FnMut(DecodedEvent),
    mut problem: impl FnMut(u64, String),
) {
    let mut at = 0usize;
    while at < bytes.len() {
        let (body, next) = match read_frame(bytes, at, FORMAT_TAG_BYTES) {
            Ok(frame) => frame,
            Err(e) => match next_intact_frame(bytes, at + 1) {
                // Damage in the middle: skip to the next frame that checks out.
                Some(resume) => {
                    problem(
                        at as u64,
                        format!(
                            "damaged record ({}): {} bytes skipped to the next intact record",
                            e.as_str(),
                            resume - at
                        ),
                    );
                    at = resume;
                    continue;
                }
                None if e == FrameError::Torn && at + TORN_TAIL_BYTES_MAX >= bytes.len() => {
                    problem(at as u64, e.as_str().to_string());
                    return;
                }
                None => {
                    problem(
                        at as u64,
                        format!(
                            "damaged record ({}): the last {} bytes of the file hold no intact record",
                            e.as_str(),
                            bytes.len() - at
                        ),
                    );
                    return;
                }
            },
        };
        let (fmt, payload) = (body[0], &body[FORMAT_TAG_BYTES..]);
        match format_from_byte(fmt).map(|f| decode(f, payload)) {
            Some(Ok(event)) => each(event),
            Some(Err(e)) => problem(at as u64, e.to_string()),
            None => problem(at as u64, format!("unknown record format {fmt}")),
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::OpenBatch;
    use crate::model::{Campaign, Event};

    fn batch(n: usize) -> (SealedBatch, Vec<uuid::Uuid>) {
        let campaign = Campaign::unvalidated("212313");
        let mut open = OpenBatch::new(n, 1 << 20);
        let mut ids = Vec::new();
        for _ in 0..n {
            let event = Event {
                message_id: uuid::Uuid::new_v4(),
                campaign: &campaign,
                user_agent: "t",
                received_at_ms: 1,
                client_ip: "127.0.0.1",
                trace_id: "t",
                validated: true,
                route: crate::model::EventRoute::Pixel,
                bot: false,
                extras: crate::model::EventExtras::NONE,
            };
            let mut record = Vec::new();
            event.encode_into(RecordFormat::Rkyv, &mut record);
            open.push(&record, event.message_id, "212313");
            ids.push(event.message_id);
        }
        (open.seal(0, RecordFormat::Rkyv), ids)
    }

    #[test]
    fn written_batches_read_back_and_a_torn_tail_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SegmentSink {
            dir: dir.path().to_path_buf(),
            cfg: SegmentsConfig::default(),
        };
        let (first, mut ids) = batch(3);
        let (second, more) = batch(2);
        ids.extend(more);
        crate::test_executor().run(async {
            let mut shard = sink.open(0).await.unwrap();
            shard.write(&first).await.unwrap();
            shard.write(&second).await.unwrap();
            shard.close().await.unwrap();
        });
        let mut read = Vec::new();
        let problems = read_all(dir.path(), |_, e| read.push(e.message_id())).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let want: Vec<String> = ids.iter().map(|i| i.hyphenated().to_string()).collect();
        assert_eq!(read, want);

        // Cut the last frame short, as a crash during a write would.
        let (_, path) = segments_in(&dir.path().join("shard-0")).unwrap().remove(0);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        let mut read = 0;
        let problems = read_all(dir.path(), |_, _| read += 1).unwrap();
        assert_eq!(read, 4);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("torn"), "{problems:?}");
    }

    #[test]
    fn the_spare_segment_is_gone_after_a_close_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let shard_dir = dir.path().join("shard-0");
        let sink = SegmentSink {
            dir: dir.path().to_path_buf(),
            cfg: SegmentsConfig::default(),
        };
        let names = || -> Vec<(u64, u64)> {
            segments_in(&shard_dir)
                .unwrap()
                .into_iter()
                .map(|(n, p)| (n, std::fs::metadata(p).unwrap().len()))
                .collect()
        };
        crate::test_executor().run(async {
            let mut shard = sink.open(0).await.unwrap();
            shard.write(&batch(3).0).await.unwrap();
            assert_eq!(names().len(), 2, "the written segment and its spare");
            assert_eq!(names()[1].1, 0, "the spare is empty");
            shard.close().await.unwrap();
        });
        assert_eq!(names().len(), 1, "a close removes the spare");
        crate::test_executor().run(async {
            let mut shard = sink.open(0).await.unwrap();
            shard.write(&batch(3).0).await.unwrap();
            // A crash: no close.
            std::mem::forget(shard);
        });
        assert_eq!(
            names().iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        crate::test_executor().run(async {
            let mut shard = sink.open(0).await.unwrap();
            shard.write(&batch(3).0).await.unwrap();
            shard.close().await.unwrap();
        });
        let files = names();
        assert_eq!(files.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(files.iter().all(|(_, len)| *len > 0), "{files:?}");
        let mut read = 0;
        assert!(read_all(dir.path(), |_, _| read += 1).unwrap().is_empty());
        assert_eq!(read, 9);
    }

    #[test]
    fn damage_in_the_middle_skips_to_the_next_intact_record() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SegmentSink {
            dir: dir.path().to_path_buf(),
            cfg: SegmentsConfig::default(),
        };
        let (all, ids) = batch(100);
        crate::test_executor().run(async {
            let mut shard = sink.open(0).await.unwrap();
            shard.write(&all).await.unwrap();
            shard.close().await.unwrap();
        });
        let (_, path) = segments_in(&dir.path().join("shard-0")).unwrap().remove(0);
        let clean = std::fs::read(&path).unwrap();
        let frame = clean.len() / 100;
        for (what, at) in [
            ("a body byte", 10 * frame + 20),
            ("a length byte", 10 * frame + 1),
        ] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x55;
            std::fs::write(&path, &bytes).unwrap();
            let mut read = Vec::new();
            let problems = read_all(dir.path(), |_, e| read.push(e.message_id())).unwrap();
            assert_eq!(read.len(), 99, "{what}: every other record is read");
            assert!(!read.contains(&ids[10].hyphenated().to_string()), "{what}");
            assert_eq!(problems.len(), 1, "{what}: {problems:?}");
            assert!(
                problems[0].what.contains(&format!("{frame} bytes skipped")),
                "{what}: {problems:?}"
            );
            assert_eq!(problems[0].offset as usize, 10 * frame, "{what}");
        }
    }
}
