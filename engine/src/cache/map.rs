//! A shard's L1 map: papaya, readable from every shard without locks; only its owner writes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3Builder;

use super::L1Outcome;
use crate::model::Campaign;

/// One cached answer: a campaign, or the fact that the id is unknown.
pub(super) struct Cached {
    pub(super) campaign: Option<Arc<Campaign>>,
    /// The version of the campaign, or of the delete that left this negative entry.
    pub(super) version: Option<u64>,
    pub(super) written_at_ms: u64,
    pub(super) generation: u64,
    pub(super) visited: AtomicBool,
    pub(super) refreshing: AtomicBool,
}

/// The result of probing the map without touching core data.
pub enum Probe {
    /// Serve this answer (`None` = unknown id). The outcome is `Hit`, `Negative` or `Stale`;
    /// with `Stale` the caller must ask the owner to refresh.
    Ready(Option<Arc<Campaign>>, L1Outcome),
    /// No usable answer; the owner must load it. The outcome is `Miss` or `Expired`; `stale` is
    /// the expired campaign, to serve if the load fails.
    Load {
        outcome: L1Outcome,
        stale: Option<Arc<Campaign>>,
    },
}

/// A shard's map, readable from every shard.
pub struct L1Map {
    pub(super) map: papaya::HashMap<Box<str>, Cached, Xxh3Builder>,
    ttl_ms: u64,
    negative_ttl_ms: u64,
    pub(super) generation: AtomicU64,
}

impl L1Map {
    pub fn new(capacity: usize, ttl_secs: u64, negative_ttl_secs: u64) -> Self {
        assert!(capacity > 0, "an L1 of zero entries is a bug");
        // A random seed, so clients cannot pick campaign ids that collide on purpose.
        let seed = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
        L1Map {
            map: papaya::HashMap::builder()
                .capacity(capacity)
                .hasher(Xxh3Builder::new().with_seed(seed))
                .build(),
            ttl_ms: ttl_secs * 1000,
            negative_ttl_ms: negative_ttl_secs * 1000,
            generation: AtomicU64::new(0),
        }
    }

    /// Looks `id` up as of `now`. Never blocks, never loads.
    pub fn probe(&self, id: &str, now: u64) -> Probe {
        let guard = self.map.guard();
        let Some(entry) = self.map.get(id, &guard) else {
            return Probe::Load {
                outcome: L1Outcome::Miss,
                stale: None,
            };
        };
        if !entry.visited.load(Ordering::Relaxed) {
            entry.visited.store(true, Ordering::Relaxed);
        }
        let age = now.saturating_sub(entry.written_at_ms);
        let current = entry.generation == self.generation.load(Ordering::Acquire);
        match &entry.campaign {
            None if current && age < self.negative_ttl_ms => {
                Probe::Ready(None, L1Outcome::Negative)
            }
            None => Probe::Load {
                outcome: L1Outcome::Expired,
                stale: None,
            },
            Some(c) if current && age < self.ttl_ms => {
                Probe::Ready(Some(c.clone()), L1Outcome::Hit)
            }
            Some(c) if current => {
                // Past its TTL but read recently enough to still hold its `visited` bit: serve
                // it once more while exactly one refresh (the CAS winner's) runs.
                if entry.refreshing.load(Ordering::Relaxed)
                    || entry
                        .refreshing
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    Probe::Ready(Some(c.clone()), L1Outcome::Stale)
                } else {
                    Probe::Load {
                        outcome: L1Outcome::Expired,
                        stale: Some(c.clone()),
                    }
                }
            }
            Some(c) => Probe::Load {
                outcome: L1Outcome::Expired,
                stale: Some(c.clone()),
            },
        }
    }

    /// Marks every entry for revalidation on its next lookup.
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
