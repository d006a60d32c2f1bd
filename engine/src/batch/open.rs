//! The batch a shard is filling, as pure data: the part of batching that runs per request.

use crate::config::RecordFormat;
use crate::ports::{RecordMeta, SealedBatch};

/// The batch a shard is filling: record bytes back to back, with their positions and keys.
/// Pure data, no I/O: the part of batching that runs per request.
pub struct OpenBatch {
    seq: u64,
    data: Vec<u8>,
    records: Vec<RecordMeta>,
    keys: String,
    records_max: usize,
    bytes_max: usize,
}

impl OpenBatch {
    pub fn new(records_max: usize, bytes_max: usize) -> Self {
        assert!(records_max > 0 && bytes_max > 0);
        OpenBatch {
            seq: 0,
            data: Vec::new(),
            records: Vec::new(),
            keys: String::new(),
            records_max,
            bytes_max,
        }
    }

    /// Numbers the (empty) batch `seq`: its sequence number once sealed.
    pub fn start(&mut self, seq: u64) {
        debug_assert!(self.is_empty());
        self.seq = seq;
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether a record of `bytes` fits without passing either bound.
    pub fn fits(&self, bytes: usize) -> bool {
        self.records.len() < self.records_max && self.data.len() + bytes <= self.bytes_max
    }

    /// Appends one encoded record. A record larger than `bytes_max` is still taken when the
    /// batch is empty: it travels alone rather than never.
    pub fn push(&mut self, record: &[u8], message_id: uuid::Uuid, campaign_id: &str) {
        let offset = self.data.len() as u32;
        self.data.extend_from_slice(record);
        let key_offset = self.keys.len() as u32;
        self.keys.push_str(campaign_id);
        self.records.push(RecordMeta {
            offset,
            len: record.len() as u32,
            message_id,
            key_offset,
            key_len: campaign_id.len() as u32,
        });
    }

    /// Takes the records out as batch `seq` of `shard`, leaving an empty batch whose buffers
    /// start at this batch's sizes.
    pub fn seal(&mut self, shard: usize, format: RecordFormat) -> SealedBatch {
        let records_cap = self.records.len().min(self.records_max);
        let data_cap = self.data.len();
        SealedBatch {
            shard,
            seq: self.seq,
            format,
            data: std::mem::replace(&mut self.data, Vec::with_capacity(data_cap)),
            records: std::mem::replace(&mut self.records, Vec::with_capacity(records_cap)),
            keys: std::mem::take(&mut self.keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_batches_hold_their_bounds_and_seal_what_they_hold() {
        let mut b = OpenBatch::new(3, 100);
        assert!(b.fits(100) && !b.fits(101));
        for i in 0..3u8 {
            assert!(b.fits(10));
            b.push(&[i; 10], uuid::Uuid::nil(), "212313");
        }
        assert!(!b.fits(1), "record bound");
        let sealed = b.seal(4, RecordFormat::Rkyv);
        assert!(b.is_empty());
        assert_eq!((sealed.shard, sealed.len()), (4, 3));
        assert_eq!(sealed.record(2), &[2u8; 10]);
        assert_eq!(sealed.campaign_id(1), "212313");
        b.push(&[9; 95], uuid::Uuid::nil(), "1");
        assert!(!b.fits(6), "byte bound");
        let mut lone = OpenBatch::new(3, 100);
        lone.push(&[0; 500], uuid::Uuid::nil(), "1");
        assert_eq!(
            lone.seal(0, RecordFormat::Rkyv).record(0).len(),
            500,
            "an oversized record travels alone"
        );
    }
}
