//! `beacon config check`: validates the configuration and prints the effective values.

use anyhow::{Context, Result};
use beacon_engine::embedded::EmbeddedCoreData;

use crate::config::{render, Config};

pub fn check(cfg: Config) -> Result<()> {
    crate::log::init(&cfg.log)?;
    super::warn_unused_reference_env(&cfg);
    if cfg.redis.url.is_none() {
        EmbeddedCoreData::from_config(&cfg.campaigns).context("campaigns")?;
    }
    print!("{}", render(&cfg)?);
    eprintln!(
        "beacon: config ok ({} shards, routing {}, core data {})",
        cfg.engine.shard_count(),
        cfg.engine.routing.as_str(),
        if cfg.redis.url.is_some() {
            "redis"
        } else {
            "embedded"
        }
    );
    Ok(())
}
