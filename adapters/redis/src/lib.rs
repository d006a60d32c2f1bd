//! # beacon-redis
//!
//! Campaign core data in Redis, in the reference's layout, for beacon's engine.
//!
//! # Layout
//!
//! | module | part |
//! |---|---|
//! | `config` | `RedisConfig`: URL, key prefix, channel, timeouts, queue bounds |
//! | `schema` | the reference's hash and channel payload <-> `Campaign` / `CoreDataUpdate` |
//! | `source` | `RedisCoreData`, the engine's `CoreDataSource`: shards send lookups to the sidecar |
//! | `lookup` | on the sidecar: `HGETALL <prefix><id>` for each lookup, reconnecting as needed |
//! | `subscriber` | on the sidecar: `SUBSCRIBE`, resync on every (re)connect, PING, backoff |
//! | `writer` | `HSET` + `PUBLISH` in one `MULTI`/`EXEC`, for `beacon core-data …` |
//! | `metrics` | the adapter's Prometheus families |
//!
//! Every Redis connection lives on the sidecar thread's tokio runtime. Shards reach it only
//! through bounded channels: a lookup is a message with a oneshot reply, bounded on the shard
//! side by `timeout_ms`; pushed changes come back through one bounded channel per shard.

pub mod config;
#[cfg(feature = "client")]
mod lookup;
#[cfg(feature = "client")]
pub mod metrics;
pub mod schema;
#[cfg(feature = "client")]
mod sidecar;
#[cfg(feature = "client")]
pub mod source;
#[cfg(feature = "client")]
mod subscriber;
#[cfg(feature = "client")]
pub mod writer;

pub use config::RedisConfig;
#[cfg(feature = "client")]
pub use source::RedisCoreData;
