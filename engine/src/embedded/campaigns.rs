//! Core data held in memory: a JSON file in the reference's format, or the reference's three
//! sample programs built into the binary. The default source when no Redis is configured.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::synthetic::synthetic_campaigns;
use crate::config::CampaignsConfig;
use crate::model::Campaign;
use crate::ports::{CoreDataLookup, CoreDataSource, LookupFuture};

/// The three sample programs of the reference (also `deploy/local/campaigns.json`).
pub const SAMPLE_CAMPAIGNS_JSON: &str = include_str!("samples.json");

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

    /// The campaigns `[campaigns]` asks for: its file (or the samples) plus its synthetic ones.
    pub fn from_config(cfg: &CampaignsConfig) -> Result<Self, LoadError> {
        let base = match &cfg.file {
            Some(path) => Self::from_file(path)?,
            None => Self::samples(),
        };
        Ok(base.with_synthetic(cfg.synthetic))
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
