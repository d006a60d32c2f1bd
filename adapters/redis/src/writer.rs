//! Writes core data the way the reference's updater does (hash, then `PUBLISH`), but in one
//! `MULTI`/`EXEC`, so no subscriber sees an announcement before the hash it announces. Used by
//! `beacon core-data load|put|delete`; it replaces the reference's unauthenticated `/cache/fill`
//! and never runs `FLUSHALL`.

use beacon_engine::model::Campaign;
use redis::aio::MultiplexedConnection;
use redis::RedisResult;

use crate::config::RedisConfig;
use crate::schema::{delete_payload, hash_fields, upsert_payload};

/// Connects for writing.
pub async fn connect(url: &str) -> RedisResult<MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// Replaces program `c`'s hash and announces it.
pub async fn put(
    conn: &mut MultiplexedConnection,
    cfg: &RedisConfig,
    c: &Campaign,
) -> RedisResult<()> {
    let key = cfg.key(&c.program_id);
    redis::pipe()
        .atomic()
        .del(&key)
        .ignore()
        .hset_multiple(&key, &hash_fields(c))
        .ignore()
        .publish(&cfg.channel, upsert_payload(c))
        .ignore()
        .query_async(conn)
        .await
}

/// Deletes program `id`'s hash and announces the deletion.
pub async fn delete(
    conn: &mut MultiplexedConnection,
    cfg: &RedisConfig,
    id: &str,
    version: Option<u64>,
) -> RedisResult<()> {
    redis::pipe()
        .atomic()
        .del(cfg.key(id))
        .ignore()
        .publish(&cfg.channel, delete_payload(id, version))
        .ignore()
        .query_async(conn)
        .await
}
