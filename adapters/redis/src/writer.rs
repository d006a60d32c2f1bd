//! Writes core data the way the reference's updater does (hash, then `PUBLISH`), but as one
//! server-side script, so no subscriber sees an announcement before the hash it announces, and
//! a change carrying a `version` older than the one Redis holds is not written at all. Used by
//! `beacon core-data load|put|delete` and by the core-data updater (`beacon consume
//! core-data`, the Lambda); it replaces the reference's unauthenticated `/cache/fill` and never
//! runs `FLUSHALL`.
//!
//! A versioned delete leaves a tombstone (`beacon:deleted:<key>`, holding the version, for
//! `TOMBSTONE_TTL_MS`), so that an older upsert replayed after the delete (a retried batch, a
//! stream read again) cannot bring the program back. Changes without a version are always
//! written, as the reference writes them. The script touches two keys; on a Redis Cluster they
//! would need a common hash tag, which the reference's key layout (key = program id) does not
//! have, so beacon supports a single primary (with replicas), as the reference deploys it.

use beacon_engine::model::Campaign;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::RedisResult;

use crate::config::RedisConfig;
use crate::schema::{delete_payload, hash_fields, upsert_payload};

/// How long a versioned delete's tombstone is kept: longer than a Kinesis stream keeps a
/// record by default extended retention (7 days), so no replay can outlive it.
pub const TOMBSTONE_TTL_MS: u64 = 8 * 24 * 3600 * 1000;

/// KEYS: the hash, the tombstone. ARGV: version ("" for none), channel, payload, "put" or
/// "delete", tombstone TTL in ms, then the hash's field/value pairs for a put.
/// Returns 1 when written and announced, 0 when Redis holds a newer version.
const SCRIPT: &str = r#"
local v = tonumber(ARGV[1])
if v then
  local held = tonumber(redis.call('HGET', KEYS[1], 'version') or '')
  if held and held > v then return 0 end
  local gone = tonumber(redis.call('GET', KEYS[2]) or '')
  if gone and gone > v then return 0 end
end
redis.call('DEL', KEYS[1])
if ARGV[4] == 'put' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 6))
  redis.call('DEL', KEYS[2])
elseif v then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"#;

/// Whether a change was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Yes,
    /// Redis holds a newer version of the program (or of its deletion); nothing was changed.
    Stale,
}

/// Connects for writing, to `cfg.url` with `cfg.password`.
pub async fn connect(cfg: &RedisConfig) -> RedisResult<MultiplexedConnection> {
    cfg.client()?.get_multiplexed_async_connection().await
}

fn tombstone(key: &str) -> String {
    format!("beacon:deleted:{key}")
}

async fn run(
    conn: &mut impl ConnectionLike,
    cfg: &RedisConfig,
    id: &str,
    version: Option<u64>,
    payload: String,
    fields: Option<Vec<(&'static str, String)>>,
) -> RedisResult<Written> {
    let key = cfg.key(id);
    let script = redis::Script::new(SCRIPT);
    let mut call = script.key(&key);
    call.key(tombstone(&key))
        .arg(version.map(|v| v.to_string()).unwrap_or_default())
        .arg(&cfg.channel)
        .arg(payload)
        .arg(if fields.is_some() { "put" } else { "delete" })
        .arg(TOMBSTONE_TTL_MS);
    for (field, value) in fields.iter().flatten() {
        call.arg(*field).arg(value);
    }
    let written: i64 = call.invoke_async(conn).await?;
    Ok(if written == 1 {
        Written::Yes
    } else {
        Written::Stale
    })
}

/// Replaces program `c`'s hash and announces it, unless Redis holds a newer version.
pub async fn put(
    conn: &mut impl ConnectionLike,
    cfg: &RedisConfig,
    c: &Campaign,
) -> RedisResult<Written> {
    let payload = upsert_payload(c);
    run(
        conn,
        cfg,
        &c.program_id,
        c.version,
        payload,
        Some(hash_fields(c)),
    )
    .await
}

/// Deletes program `id`'s hash and announces the deletion, unless Redis holds a newer version.
pub async fn delete(
    conn: &mut impl ConnectionLike,
    cfg: &RedisConfig,
    id: &str,
    version: Option<u64>,
) -> RedisResult<Written> {
    let payload = delete_payload(id, version);
    run(conn, cfg, id, version, payload, None).await
}
