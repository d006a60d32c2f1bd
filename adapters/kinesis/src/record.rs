//! One record on its way to Kinesis.

/// A record as PutRecords takes it: the partition key and the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub partition_key: String,
    pub data: Vec<u8>,
}
