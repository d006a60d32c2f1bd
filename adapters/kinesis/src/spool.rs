//! The per-shard spool: records Kinesis could not take in time, on disk, replayed in order.
//!
//! One file per spooled batch, `<dir>/<seq>.<records>.spool` (the record count in the name, so
//! that a spool's records are known without reading it; files named `<seq>.spool`, as earlier
//! versions wrote them, are counted once when the spool opens), written with glommio's DMA
//! stream writer and synced before the batch counts as spooled; files are replayed oldest
//! first and deleted once Kinesis has taken every record in them. Each record is framed as
//!
//! ```text
//! u32 LE length of the rest | u32 LE CRC-32 of the rest | u16 LE key length | key | data
//! ```
//!
//! (the engine's record framing, `beacon_engine::embedded::put_frame`, with no uncounted tag).
//!
//! Dead-lettered records (ones Kinesis can never take) use the same framing in
//! `<dir>/dead-letter/<seq>.dead`; nothing reads those back: they are for an operator.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};

use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};

use beacon_engine::embedded::{self, put_frame, read_frame};

use crate::record::Entry;

/// Bytes of a record's frame header: the engine's framing and the key's length.
const FRAME_HEADER_BYTES: usize = embedded::FRAME_HEADER_BYTES + KEY_LEN_BYTES;
/// Bytes of the key's length, at the start of each frame's body.
const KEY_LEN_BYTES: usize = 2;
/// Buffer of the DMA stream writer.
const WRITE_BUFFER_BYTES: usize = 128 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool full: {bytes} bytes of {max} (spool_bytes_max)")]
    Full { bytes: u64, max: u64 },
    #[error("spool I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool file {path} is corrupt at byte {offset}")]
    Corrupt { path: PathBuf, offset: usize },
}

fn io_err(path: &Path) -> impl FnOnce(glommio::GlommioError<()>) -> SpoolError + '_ {
    move |e| SpoolError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| FRAME_HEADER_BYTES + e.partition_key.len() + e.data.len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for e in entries {
        let key = e.partition_key.as_bytes();
        let key_len = u16::try_from(key.len()).expect("partition keys are at most 256 bytes");
        put_frame(&mut out, 0, &[&key_len.to_le_bytes(), key, &e.data]);
    }
    out
}

/// The entries in `bytes`, or the offset of the first frame that does not read back.
pub fn decode(bytes: &[u8]) -> Result<Vec<Entry>, usize> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (body, next) = read_frame(bytes, at, 0).map_err(|_| at)?;
        let (len, rest) = body.split_at_checked(KEY_LEN_BYTES).ok_or(at)?;
        let key_len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let (key, data) = rest.split_at_checked(key_len).ok_or(at)?;
        entries.push(Entry {
            partition_key: String::from_utf8(key.to_vec()).map_err(|_| at)?,
            data: data.to_vec(),
        });
        at = next;
    }
    Ok(entries)
}

/// Writes `bytes` to a new file at `path` and syncs it.
async fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let file = DmaFile::create(path).await.map_err(io_err(path))?;
    let mut writer = DmaStreamWriterBuilder::new(file)
        .with_buffer_size(WRITE_BUFFER_BYTES)
        .build();
    let io = |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    };
    writer.write_all(bytes).await.map_err(io)?;
    // close() syncs the data and trims the file to what was written.
    writer.close().await.map_err(io)?;
    Ok(())
}

/// A numbered file: `<seq><ext>` or `<seq>.<records><ext>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Numbered {
    seq: u64,
    bytes: u64,
    /// From the name; `None` for a file named without its count.
    records: Option<u64>,
}

/// `name` as a numbered file with `ext`: its sequence number and record count, if named so.
fn parse_name(name: &str, ext: &str) -> Option<(u64, Option<u64>)> {
    let stem = name.strip_suffix(ext)?;
    match stem.split_once('.') {
        Some((seq, records)) => Some((seq.parse().ok()?, Some(records.parse().ok()?))),
        None => Some((stem.parse().ok()?, None)),
    }
}

/// Numbered files with `ext` in `dir`, oldest first.
fn numbered_files(dir: &Path, ext: &str) -> io::Result<Vec<Numbered>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some((seq, records)) = name.to_str().and_then(|n| parse_name(n, ext)) {
            let bytes = entry.metadata()?.len();
            found.push(Numbered {
                seq,
                bytes,
                records,
            });
        }
    }
    found.sort();
    Ok(found)
}

/// Records in the spool file at `path`, read whole (only for files named without their count).
fn count_records(path: &Path) -> Result<u64, SpoolError> {
    let bytes = std::fs::read(path).map_err(|source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let entries = decode(&bytes).map_err(|offset| SpoolError::Corrupt {
        path: path.to_path_buf(),
        offset,
    })?;
    Ok(entries.len() as u64)
}

pub struct Spool {
    dir: PathBuf,
    /// (sequence number, bytes, records) of each spooled batch, oldest first.
    files: VecDeque<(u64, u64, u64)>,
    bytes: u64,
    records: u64,
    max: u64,
    next_seq: u64,
    next_dead: u64,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir`, picking up files left by an earlier run.
    pub fn open(dir: &Path, max: u64) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir.join("dead-letter")).map_err(err)?;
        let mut files = VecDeque::new();
        for f in numbered_files(dir, ".spool").map_err(err)? {
            let records = match f.records {
                Some(n) => n,
                None => count_records(&dir.join(format!("{:010}.spool", f.seq)))?,
            };
            files.push_back((f.seq, f.bytes, records));
        }
        let next_dead = numbered_files(&dir.join("dead-letter"), ".dead")
            .map_err(err)?
            .last()
            .map_or(0, |f| f.seq + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            bytes: files.iter().map(|f| f.1).sum(),
            records: files.iter().map(|f| f.2).sum(),
            next_seq: files.back().map_or(0, |f| f.0 + 1),
            files,
            max,
            next_dead,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records held, over every spooled batch.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Where the spool lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u64, records: u64) -> PathBuf {
        let named = self.dir.join(format!("{seq:010}.{records}.spool"));
        match named.exists() {
            true => named,
            // A file from an earlier version, named without its count.
            false => self.dir.join(format!("{seq:010}.spool")),
        }
    }

    /// Appends `entries` as one batch, durably. Refuses when the spool would pass its bound.
    pub async fn push(&mut self, entries: &[Entry]) -> Result<(), SpoolError> {
        let bytes = encode(entries);
        if self.bytes + bytes.len() as u64 > self.max {
            return Err(SpoolError::Full {
                bytes: self.bytes,
                max: self.max,
            });
        }
        let seq = self.next_seq;
        let records = entries.len() as u64;
        let path = self.dir.join(format!("{seq:010}.{records}.spool"));
        write_file(&path, &bytes).await?;
        self.next_seq += 1;
        self.bytes += bytes.len() as u64;
        self.records += records;
        self.files.push_back((seq, bytes.len() as u64, records));
        Ok(())
    }

    /// Appends records that were already accepted and came back undelivered: these may pass the
    /// bound (refusing them would lose them); only new batches are refused at the bound.
    pub async fn push_over_bound(&mut self, entries: &[Entry]) -> Result<(), SpoolError> {
        let max = self.max;
        self.max = u64::MAX;
        let pushed = self.push(entries).await;
        self.max = max;
        pushed
    }

    /// The oldest spooled batch and its sequence number.
    pub async fn front(&self) -> Result<Option<(u64, Vec<Entry>)>, SpoolError> {
        let Some(&(seq, size, records)) = self.files.front() else {
            return Ok(None);
        };
        let path = self.path(seq, records);
        let file = DmaFile::open(&path).await.map_err(io_err(&path))?;
        let read = file.read_at(0, size as usize).await.map_err(io_err(&path));
        let _ = file.close().await;
        let read = read?;
        let entries = decode(&read).map_err(|offset| SpoolError::Corrupt { path, offset })?;
        Ok(Some((seq, entries)))
    }

    /// Drops batch `seq` (the front) once Kinesis has taken it.
    pub fn pop(&mut self, seq: u64) -> Result<(), SpoolError> {
        if let Some(pos) = self.files.iter().position(|f| f.0 == seq) {
            let (_, size, records) = self.files.remove(pos).expect("found");
            self.bytes -= size;
            self.records -= records;
            let path = self.path(seq, records);
            std::fs::remove_file(&path).map_err(|source| SpoolError::Io { path, source })?;
        }
        Ok(())
    }

    /// Writes records that can never be sent to a dead-letter file.
    pub async fn dead_letter(&mut self, entries: &[Entry]) -> Result<(), SpoolError> {
        let path = self
            .dir
            .join("dead-letter")
            .join(format!("{:010}.dead", self.next_dead));
        self.next_dead += 1;
        write_file(&path, &encode(entries)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize, tag: u8) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                partition_key: format!("key-{i}"),
                data: vec![tag; 10 + i],
            })
            .collect()
    }

    #[test]
    fn frames_round_trip_and_corruption_is_found() {
        let e = entries(5, 7);
        let bytes = encode(&e);
        assert_eq!(decode(&bytes).unwrap(), e);
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert!(decode(&bad).is_err());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn spool_is_bounded_ordered_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(256 << 10)
            .make()
            .unwrap()
            .run(async move {
                let mut spool = Spool::open(&path, 4096).unwrap();
                spool.push(&entries(3, 1)).await.unwrap();
                spool.push(&entries(2, 2)).await.unwrap();
                assert!(matches!(
                    spool.push(&entries(200, 3)).await,
                    Err(SpoolError::Full { .. })
                ));
                let held = spool.bytes();
                drop(spool);

                // A file an earlier version wrote, named without its count, is counted.
                std::fs::write(path.join("0000000002.spool"), encode(&entries(4, 4))).unwrap();
                let mut spool = Spool::open(&path, 8192).unwrap();
                assert_eq!(spool.records(), 3 + 2 + 4);
                assert!(spool.bytes() > held);
                let (seq, first) = spool.front().await.unwrap().unwrap();
                assert_eq!(first, entries(3, 1));
                spool.pop(seq).unwrap();
                let (seq, second) = spool.front().await.unwrap().unwrap();
                assert_eq!(second, entries(2, 2));
                spool.pop(seq).unwrap();
                let (seq, third) = spool.front().await.unwrap().unwrap();
                assert_eq!(third, entries(4, 4));
                spool.pop(seq).unwrap();
                assert!(spool.is_empty());
                assert_eq!((spool.bytes(), spool.records()), (0, 0));
                assert_eq!(
                    std::fs::read_dir(&path).unwrap().count(),
                    1,
                    "only dead-letter/"
                );
                spool.dead_letter(&entries(1, 9)).await.unwrap();
                assert!(path.join("dead-letter/0000000000.dead").exists());
            });
    }
}
