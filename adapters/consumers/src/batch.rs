//! What a handler takes and what it answers.

use std::sync::atomic::{AtomicU64, Ordering};

use beacon_kinesis::aggregate::{deaggregate, MAGIC};

/// One stream record, as Lambda hands it over or `GetRecords` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub data: Vec<u8>,
}

impl InRecord {
    /// The user records inside: the record itself, or each record of a KPL aggregate. `None`
    /// when the record looks like an aggregate but its checksum or framing is wrong.
    pub fn user_records(&self) -> Option<Vec<Vec<u8>>> {
        if self.data.starts_with(&MAGIC) {
            deaggregate(&self.data).map(|entries| entries.into_iter().map(|e| e.data).collect())
        } else {
            Some(vec![self.data.clone()])
        }
    }
}

/// How far a handler got with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Indexes of records that could not be decoded. Retrying cannot help them: a Lambda
    /// reports them (the mapping's retries and on-failure destination take over), a polling
    /// consumer writes them to its failure directory and goes on.
    pub undecodable: Vec<usize>,
    /// Index of the first record that could not be written (the store failed after retries):
    /// this record and every later one are to be handled again.
    pub failed_at: Option<usize>,
}

impl Outcome {
    /// The records to report as failed, in order: every undecodable one before `failed_at`,
    /// then `failed_at`. (Kinesis resumes from the lowest sequence number reported.)
    pub fn reported(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .undecodable
            .iter()
            .copied()
            .filter(|&i| !matches!(self.failed_at, Some(f) if i >= f))
            .collect();
        out.extend(self.failed_at);
        out
    }
}

/// What a handler counted since it started. Logged by the polling consumer every few seconds
/// and at exit, and by the Lambda after every batch.
#[derive(Debug, Default)]
pub struct Counters {
    /// Stream records handed to the handler (an aggregate counts once).
    pub records: AtomicU64,
    /// Items or changes written.
    pub written: AtomicU64,
    /// Changes not written because the store holds a newer version (updater only).
    pub stale: AtomicU64,
    /// Records that could not be decoded.
    pub undecodable: AtomicU64,
    /// Batches (or parts of one) given back to be retried because the store failed.
    pub write_failures: AtomicU64,
}

impl Counters {
    pub fn add(field: &AtomicU64, n: u64) {
        field.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(field: &AtomicU64) -> u64 {
        field.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "records {}, written {}, stale {}, undecodable {}, write failures {}",
            Self::get(&self.records),
            Self::get(&self.written),
            Self::get(&self.stale),
            Self::get(&self.undecodable),
            Self::get(&self.write_failures)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_records_stop_at_the_first_failed_write() {
        let o = Outcome {
            undecodable: vec![1, 4, 9],
            failed_at: Some(5),
        };
        assert_eq!(o.reported(), vec![1, 4, 5]);
        let o = Outcome {
            undecodable: vec![2],
            failed_at: None,
        };
        assert_eq!(o.reported(), vec![2]);
        assert!(Outcome::default().reported().is_empty());
    }

    #[test]
    fn a_damaged_aggregate_has_no_user_records() {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&[0u8; 20]);
        let r = InRecord {
            shard_id: "s".into(),
            sequence_number: "1".into(),
            data,
        };
        assert_eq!(r.user_records(), None);
        let plain = InRecord {
            data: b"x".to_vec(),
            ..r
        };
        assert_eq!(plain.user_records(), Some(vec![b"x".to_vec()]));
    }
}
