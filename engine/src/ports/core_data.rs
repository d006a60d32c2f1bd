//! The core data port: where an owner shard looks up a campaign its L1 does not hold, and how
//! changes are pushed into the L1.
//!
//! A `CoreDataSource` is shared by all shards and hands each shard its own `CoreDataLookup`
//! (so an adapter can give each shard its own channel to a sidecar) and, if the store pushes
//! changes, the stream of `CoreDataUpdate`s for the campaigns that shard owns.

use std::future::Future;
use std::pin::Pin;

use crate::model::Campaign;

/// Why a lookup produced no answer. An unknown campaign is not an error: it is `Ok(None)`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreDataError {
    /// The store did not answer within its timeout; a retry may help.
    #[error("core data lookup timed out")]
    Timeout,
    /// The store is unreachable; a retry after it recovers helps. The words say which link
    /// failed; the store's own error goes to the log and `/health/ready`, so that nothing is
    /// formatted per failed lookup while a store is down.
    #[error("core data store unavailable: {0}")]
    Unavailable(&'static str),
    /// The stored record cannot be read; a retry does not help until it is rewritten.
    #[error("malformed core data for campaign: {0}")]
    Malformed(String),
}

pub type LookupFuture = Pin<Box<dyn Future<Output = Result<Option<Campaign>, CoreDataError>>>>;

/// A change pushed by the core data store, for the shard that owns the campaign.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreDataUpdate {
    /// Insert or replace a campaign (unless the cache holds a newer `version`).
    Upsert(Campaign),
    /// The campaign is gone (unless the cache holds a newer `version`).
    Delete { id: String, version: Option<u64> },
    /// The push feed may have missed updates (it reconnected): revalidate every entry on its
    /// next lookup.
    Resync,
}

/// A shard's stream of pushed changes.
pub type UpdateStream = Pin<Box<dyn futures_lite::Stream<Item = CoreDataUpdate>>>;

/// How the store looks from the engine, for `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreDataStatus {
    /// Lookups can be answered.
    pub up: bool,
    /// What is wrong (or what is connected), in a few words.
    pub detail: String,
}

/// One shard's handle on the core data store. Futures are `!Send`: they run on the shard.
pub trait CoreDataLookup {
    fn lookup(&self, campaign_id: &str) -> LookupFuture;
}

/// Shared by every shard; creates each shard's lookup handle.
pub trait CoreDataSource: Send + Sync {
    fn for_shard(&self, shard: usize) -> Box<dyn CoreDataLookup>;
    /// Shard `shard`'s pushed changes, if the store pushes any. Called once per shard.
    fn updates(&self, _shard: usize) -> Option<UpdateStream> {
        None
    }
    fn status(&self) -> CoreDataStatus {
        CoreDataStatus {
            up: true,
            detail: String::new(),
        }
    }
    /// A short name for logs and `/health/ready`.
    fn name(&self) -> &'static str;
}
