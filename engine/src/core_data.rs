//! The core data port: where an owner shard looks up a campaign its L1 does not hold, and how
//! changes are pushed into the L1.
//!
//! A `CoreDataSource` is shared by all shards and hands each shard its own `CoreDataLookup`
//! (so an adapter can give each shard its own channel to a sidecar) and, if the store pushes
//! changes, the stream of `CoreDataUpdate`s for the campaigns that shard owns. The embedded
//! source serves campaigns from a JSON file in the reference's format; it is the default when
//! no Redis is configured.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::campaign::Campaign;

/// The three sample programs of the reference, as shipped in `deploy/local/campaigns.json`.
pub const SAMPLE_CAMPAIGNS_JSON: &str = include_str!("../../deploy/local/campaigns.json");

/// Why a lookup produced no answer. An unknown campaign is not an error: it is `Ok(None)`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CoreDataError {
    /// The store did not answer within its timeout; a retry may help.
    #[error("core data lookup timed out")]
    Timeout,
    /// The store is unreachable; a retry after it recovers helps.
    #[error("core data store unavailable: {0}")]
    Unavailable(String),
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

/// Campaigns held in memory, loaded from the reference's JSON format.
#[derive(Clone, Default)]
pub struct EmbeddedCoreData {
    campaigns: Arc<HashMap<String, Campaign>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read campaigns file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "campaigns file {path} is not a JSON array of programs in the reference's format: {source}"
    )]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl EmbeddedCoreData {
    /// Parses a JSON array of programs (`programId`, `programName`, `checksum`, `customerId`,
    /// `customerName`, `valid`).
    pub fn from_json(json: &str, origin: &str) -> Result<Self, LoadError> {
        let list: Vec<Campaign> =
            serde_json::from_str(json).map_err(|source| LoadError::Parse {
                path: origin.to_string(),
                source,
            })?;
        Ok(Self::from_campaigns(list))
    }

    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let json = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&json, &path.display().to_string())
    }

    pub fn samples() -> Self {
        Self::from_json(SAMPLE_CAMPAIGNS_JSON, "built-in samples").expect("shipped samples parse")
    }

    pub fn from_campaigns(list: impl IntoIterator<Item = Campaign>) -> Self {
        let campaigns = list
            .into_iter()
            .map(|c| (c.program_id.clone(), c))
            .collect();
        EmbeddedCoreData {
            campaigns: Arc::new(campaigns),
        }
    }

    /// Adds `count` synthetic valid campaigns with ids `1000000`, `1000001`, ... for benchmarks.
    pub fn with_synthetic(self, count: usize) -> Self {
        let mut all: Vec<Campaign> = self.campaigns.values().cloned().collect();
        all.extend(synthetic_campaigns(count));
        Self::from_campaigns(all)
    }

    pub fn len(&self) -> usize {
        self.campaigns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.campaigns.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Campaign> {
        self.campaigns.get(id)
    }
}

/// First id of the synthetic campaigns.
pub const SYNTHETIC_ID_FIRST: u64 = 1_000_000;

/// `count` valid campaigns with ids from `SYNTHETIC_ID_FIRST`, as a benchmark's data set.
pub fn synthetic_campaigns(count: usize) -> impl Iterator<Item = Campaign> {
    (0..count as u64).map(|i| {
        let id = SYNTHETIC_ID_FIRST + i;
        Campaign {
            program_id: id.to_string(),
            program_name: format!("program{id}"),
            checksum: (id % 1000).to_string(),
            customer_id: (i % 100_000) as i32 + 1,
            customer_name: format!("Customer{}", i % 100_000 + 1),
            valid: true,
            version: None,
        }
    })
}

impl CoreDataSource for EmbeddedCoreData {
    fn for_shard(&self, _shard: usize) -> Box<dyn CoreDataLookup> {
        Box::new(self.clone())
    }
    fn name(&self) -> &'static str {
        "embedded"
    }
}

impl CoreDataLookup for EmbeddedCoreData {
    fn lookup(&self, campaign_id: &str) -> LookupFuture {
        let found = self.campaigns.get(campaign_id).cloned();
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_the_references() {
        let data = EmbeddedCoreData::samples();
        assert_eq!(data.len(), 3);
        let p2 = data.get("212313").unwrap();
        assert_eq!(p2.program_name, "program2");
        assert_eq!(p2.checksum, "124");
        assert_eq!(p2.customer_id, 9124);
        assert_eq!(p2.customer_name, "Customer2");
        assert!(p2.valid);
    }

    #[test]
    fn synthetic_ids_follow_the_samples() {
        let data = EmbeddedCoreData::samples().with_synthetic(10);
        assert_eq!(data.len(), 13);
        assert!(data.get("1000009").is_some());
        assert!(data.get("1000010").is_none());
    }

    #[test]
    fn bad_file_names_the_format() {
        let err = EmbeddedCoreData::from_json("{}", "x.json").err().unwrap();
        assert!(err.to_string().contains("x.json"), "{err}");
        assert!(err.to_string().contains("reference's format"), "{err}");
    }
}
