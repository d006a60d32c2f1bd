//! KPL aggregation: many user records in one Kinesis record, readable by the standard KCL and
//! Lambda deaggregators.
//!
//! An aggregated record is `F3 89 9A C2` (magic), a protobuf `AggregatedRecord`, and the MD5 of
//! that protobuf. Kinesis routes a record by one hash key, so user records are grouped by the
//! shard their own key maps to (`MD5(partition key)` as a 128-bit big-endian number, looked up
//! in the stream's hash-key ranges), and each aggregate is sent with an explicit hash key inside
//! that shard's range: every user record lands on the shard it would have without aggregation,
//! which is what deaggregators that check shard ranges after a reshard expect.

use md5::{Digest, Md5};

use crate::record::Entry;

/// The KPL's magic prefix.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Bytes of the MD5 trailer.
const DIGEST_BYTES: usize = 16;
/// Protobuf bytes a user record costs beyond its data and key: tags, lengths, indexes.
const PER_RECORD_OVERHEAD_BYTES: usize = 16;

#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
}

/// `MD5(partition key)` read as a big-endian 128-bit number: where Kinesis puts the key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The open shards of a stream and the hash-key range each one takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardMap {
    /// (first hash key, last hash key, shard id), sorted by first key.
    ranges: Vec<(u128, u128, String)>,
}

impl ShardMap {
    pub fn new(mut ranges: Vec<(u128, u128, String)>) -> ShardMap {
        ranges.sort();
        ShardMap { ranges }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The shard whose range holds `hash`.
    pub fn shard_for(&self, hash: u128) -> Option<&(u128, u128, String)> {
        let i = self.ranges.partition_point(|(start, _, _)| *start <= hash);
        self.ranges[..i].last().filter(|(_, end, _)| hash <= *end)
    }
}

/// One aggregated Kinesis record and the user records inside it.
#[derive(Debug)]
pub struct Aggregate {
    pub data: Vec<u8>,
    pub partition_key: String,
    pub explicit_hash_key: String,
    pub shard_id: String,
    pub entries: Vec<Entry>,
}

/// Groups `entries` by destination shard into aggregates of at most `bytes_max` bytes (data
/// plus partition key, as Kinesis counts a record). A user record too large to share an
/// aggregate travels alone, still in the aggregated format.
pub fn aggregate(entries: Vec<Entry>, map: &ShardMap, bytes_max: usize) -> Vec<Aggregate> {
    let mut groups: Vec<(usize, Vec<Entry>)> = Vec::new();
    for e in entries {
        let shard = map
            .shard_for(hash_key(&e.partition_key))
            .map(|s| {
                map.ranges
                    .iter()
                    .position(|r| r == s)
                    .expect("from the map")
            })
            .unwrap_or(0);
        match groups.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, group)) => group.push(e),
            None => groups.push((shard, vec![e])),
        }
    }
    let mut out = Vec::new();
    for (shard, group) in groups {
        let (first, _, shard_id) =
            map.ranges
                .get(shard)
                .cloned()
                .unwrap_or((0, u128::MAX, String::new()));
        let mut current: Vec<Entry> = Vec::new();
        let mut size = MAGIC.len() + DIGEST_BYTES;
        for e in group {
            let cost = e.data.len() + 2 * e.partition_key.len() + PER_RECORD_OVERHEAD_BYTES;
            if !current.is_empty() && size + cost > bytes_max {
                out.push(seal(std::mem::take(&mut current), first, &shard_id));
                size = MAGIC.len() + DIGEST_BYTES;
            }
            size += cost;
            current.push(e);
        }
        if !current.is_empty() {
            out.push(seal(current, first, &shard_id));
        }
    }
    out
}

fn seal(entries: Vec<Entry>, shard_first_key: u128, shard_id: &str) -> Aggregate {
    let mut keys: Vec<String> = Vec::new();
    let records = entries
        .iter()
        .map(|e| {
            let index = match keys.iter().position(|k| *k == e.partition_key) {
                Some(i) => i,
                None => {
                    keys.push(e.partition_key.clone());
                    keys.len() - 1
                }
            };
            Record {
                partition_key_index: index as u64,
                explicit_hash_key_index: None,
                data: e.data.clone(),
            }
        })
        .collect();
    let message = AggregatedRecord {
        partition_key_table: keys,
        explicit_hash_key_table: Vec::new(),
        records,
    };
    let body = prost::Message::encode_to_vec(&message);
    let mut data = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_BYTES);
    data.extend_from_slice(&MAGIC);
    data.extend_from_slice(&body);
    data.extend_from_slice(&Md5::digest(&body));
    // The first user record's own hash key if it is in the shard (it is, by grouping), so the
    // aggregate goes where that record would have gone alone.
    let first_hash = hash_key(&entries[0].partition_key);
    let explicit = if first_hash >= shard_first_key {
        first_hash
    } else {
        shard_first_key
    };
    Aggregate {
        data,
        partition_key: entries[0].partition_key.clone(),
        explicit_hash_key: explicit.to_string(),
        shard_id: shard_id.to_string(),
        entries,
    }
}

/// Reads an aggregated record back (the inverse of `seal`), for tests and tools.
pub fn deaggregate(data: &[u8]) -> Option<Vec<Entry>> {
    let body = data.strip_prefix(&MAGIC)?;
    let (body, digest) = body.split_at(body.len().checked_sub(DIGEST_BYTES)?);
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    let message: AggregatedRecord = prost::Message::decode(body).ok()?;
    message
        .records
        .into_iter()
        .map(|r| {
            Some(Entry {
                partition_key: message
                    .partition_key_table
                    .get(r.partition_key_index as usize)?
                    .clone(),
                data: r.data,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_shards() -> ShardMap {
        let half = u128::MAX / 2;
        ShardMap::new(vec![
            (half + 1, u128::MAX, "shardId-1".into()),
            (0, half, "shardId-0".into()),
        ])
    }

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                partition_key: format!("key-{i}"),
                data: format!("payload-{i}").into_bytes(),
            })
            .collect()
    }

    #[test]
    fn hash_keys_are_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn shard_lookup_covers_the_whole_range() {
        let map = two_shards();
        assert_eq!(map.shard_for(0).unwrap().2, "shardId-0");
        assert_eq!(map.shard_for(u128::MAX / 2).unwrap().2, "shardId-0");
        assert_eq!(map.shard_for(u128::MAX / 2 + 1).unwrap().2, "shardId-1");
        assert_eq!(map.shard_for(u128::MAX).unwrap().2, "shardId-1");
    }

    #[test]
    fn aggregates_round_trip_per_shard_and_respect_the_size_bound() {
        let map = two_shards();
        let input = entries(1000);
        let aggregates = aggregate(input.clone(), &map, 4096);
        assert!(aggregates.len() > 2, "split by size");
        let mut back = Vec::new();
        for a in &aggregates {
            assert!(
                a.data.len() + a.partition_key.len() <= 4096,
                "{}",
                a.data.len()
            );
            let inside = deaggregate(&a.data).unwrap();
            assert_eq!(inside, a.entries);
            let ehk: u128 = a.explicit_hash_key.parse().unwrap();
            assert_eq!(map.shard_for(ehk).unwrap().2, a.shard_id);
            for e in &inside {
                assert_eq!(
                    map.shard_for(hash_key(&e.partition_key)).unwrap().2,
                    a.shard_id,
                    "grouped by shard"
                );
            }
            back.extend(inside);
        }
        back.sort_by(|a, b| a.partition_key.cmp(&b.partition_key));
        let mut want = input;
        want.sort_by(|a, b| a.partition_key.cmp(&b.partition_key));
        assert_eq!(back, want);
        let mut corrupt = aggregates[0].data.clone();
        corrupt[10] ^= 1;
        assert!(deaggregate(&corrupt).is_none());
    }
}
