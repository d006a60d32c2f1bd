//! One module per command.

pub mod config;
pub mod consume;
pub mod core_data;
pub mod health;
pub mod serve;
pub mod tail;

use crate::config::Config;

/// Warns about the reference's variables that have no effect in this configuration.
fn warn_unused_reference_env(cfg: &Config) {
    if cfg.kinesis.stream.is_none() && std::env::var_os("REGION").is_some() {
        tracing::warn!("REGION is set without a Kinesis stream; it is ignored");
    }
    if cfg.redis.url.is_none() && std::env::var_os("REDIS_PORT").is_some() {
        tracing::warn!("REDIS_PORT is set without REDIS_HOST; it is ignored");
    }
}
