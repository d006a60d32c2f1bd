//! The per-shard L1 cache of campaign core data.
//!
//! Each shard owns one `L1Map` (a papaya map, lock-free for readers on any shard) and is its
//! only writer through `L1Owner`, which keeps the eviction ring and the in-flight loads. In
//! `local` routing other shards read the owner's map directly and send only misses to the owner,
//! so single-flight and eviction stay single-threaded.
//!
//! - Expiry after write: positive entries are fresh for `l1_ttl_secs`, negative ("unknown id")
//!   entries for `l1_negative_ttl_secs`.
//! - Stale-while-revalidate: a positive entry past its TTL that was read since the CLOCK hand last
//!   passed it ("hot") is served while one background refresh runs.
//! - Generation: `invalidate_all` bumps the generation; entries written before it are reloaded
//!   on their next lookup (used when a push feed may have missed updates).
//! - Pushed updates (`apply`): an upsert or delete carrying a `version` older than the entry's is
//!   ignored; a delete leaves a negative entry (a tombstone) so an older upsert arriving later
//!   cannot bring the campaign back. A load that was in flight when an update arrived does not
//!   overwrite it.
//! - Core data down: a load that fails falls back to the expired entry, if any ("stale" serve).
//! - Eviction: CLOCK (second chance). At capacity the hand walks the ring, clearing `visited`
//!   bits, and evicts the first entry not read since the last pass.

mod map;
mod owner;

use std::sync::Arc;

use crate::model::Campaign;
use crate::ports::CoreDataError;

pub use map::{L1Map, Probe};
pub use owner::{Applied, L1Owner};

/// What loading a campaign gave: the campaign, `None` for an unknown id, or why core data
/// could not answer. The one result type of every load, on the owner and across the mesh.
pub type LoadResult = Result<Option<Arc<Campaign>>, CoreDataError>;

/// What a lookup found, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Outcome {
    /// A fresh positive entry.
    Hit,
    /// No entry: loaded from core data.
    Miss,
    /// An entry past its TTL (or written before the last invalidation), reloaded.
    Expired,
    /// A fresh negative entry: the id is known to be unknown.
    Negative,
    /// A hot entry past its TTL, served while a background refresh runs.
    Stale,
}

impl L1Outcome {
    pub const ALL: [L1Outcome; 5] = [
        L1Outcome::Hit,
        L1Outcome::Miss,
        L1Outcome::Expired,
        L1Outcome::Negative,
        L1Outcome::Stale,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            L1Outcome::Hit => "hit",
            L1Outcome::Miss => "miss",
            L1Outcome::Expired => "expired",
            L1Outcome::Negative => "negative",
            L1Outcome::Stale => "stale",
        }
    }
}
