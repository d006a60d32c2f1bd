//! The Redis adapter against a real redis-server (started on a free port by the fixture): the
//! engine's port as a shard sees it, with no engine around it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use beacon_engine::model::Campaign;
use beacon_engine::ports::{CoreDataError, CoreDataSource, CoreDataUpdate};
use beacon_redis::{writer, RedisConfig, RedisCoreData};
use beacon_test_support::redis_server::RedisServer;
use beacon_test_support::Sidecar;
use futures_lite::StreamExt;

fn campaign(id: &str, name: &str) -> Campaign {
    Campaign {
        program_id: id.into(),
        program_name: name.into(),
        checksum: "124".into(),
        customer_id: 9124,
        customer_name: "Customer2".into(),
        valid: true,
        version: None,
        landing_url: None,
    }
}

fn cfg() -> RedisConfig {
    RedisConfig {
        url: None,
        timeout_ms: 200,
        reconnect_min_ms: 20,
        reconnect_max_ms: 200,
        ping_interval_ms: 100,
        ..RedisConfig::default()
    }
}

/// Writes `c` as `beacon core-data put` does: hash and PUBLISH in one MULTI/EXEC.
fn put(redis: &RedisServer, c: &Campaign) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let at = RedisConfig {
            url: Some(redis.url()),
            ..cfg()
        };
        let mut conn = writer::connect(&at).await.unwrap();
        writer::put(&mut conn, &cfg(), c).await.unwrap();
    });
}

fn start(redis: &RedisServer, side: &Sidecar, shards: usize) -> Arc<RedisCoreData> {
    let registry = prometheus::Registry::new();
    let at = RedisConfig {
        url: Some(redis.url()),
        ..cfg()
    };
    let core = RedisCoreData::start(at, shards, &side.handle, &registry).unwrap();
    wait_until(|| core.status().up, "the adapter connects and subscribes");
    core
}

fn wait_until(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` on a glommio executor of its own thread, as a shard runs lookups.
fn on_shard<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .make()
            .unwrap()
            .run(f())
    })
    .join()
    .unwrap()
}

#[test]
fn a_shard_reads_the_references_hash_and_unknown_ids_are_none() {
    let redis = RedisServer::start();
    put(&redis, &campaign("212313", "program2"));
    let side = Sidecar::start();
    let core = start(&redis, &side, 1);
    let shard = core.clone();
    on_shard(move || async move {
        let lookup = shard.for_shard(0);
        let found = lookup.lookup("212313").await.unwrap().unwrap();
        assert_eq!(found, campaign("212313", "program2"));
        assert_eq!(lookup.lookup("999999").await.unwrap(), None);
    });
    assert_eq!(redis.hgetall_calls(), 2);
}

#[test]
fn changes_reach_the_owner_shard_after_a_resync() {
    let redis = RedisServer::start();
    let side = Sidecar::start();
    let core = start(&redis, &side, 2);
    let owner = beacon_engine::model::owner("212313", 2);
    let updates = core.updates(owner).unwrap();
    put(&redis, &campaign("212313", "changed"));
    // The stream is the shard's: it is read on the shard's executor.
    let updates = std::sync::Mutex::new(Some(updates));
    let mut updates = updates.lock().unwrap().take().unwrap();
    futures_lite::future::block_on(async {
        // Every (re)subscription starts with a resync, then the published change.
        assert_eq!(updates.next().await, Some(CoreDataUpdate::Resync));
        assert_eq!(
            updates.next().await,
            Some(CoreDataUpdate::Upsert(campaign("212313", "changed")))
        );
    });
}

#[test]
fn lookups_fail_fast_while_redis_is_down_and_recover_when_it_returns() {
    let mut redis = RedisServer::start();
    put(&redis, &campaign("212313", "program2"));
    let side = Sidecar::start();
    let core = start(&redis, &side, 1);
    redis.kill();
    wait_until(|| !core.status().up, "the adapter sees Redis gone");
    assert!(!core.status().detail.is_empty(), "the cause is reported");
    let shard = core.clone();
    on_shard(move || async move {
        let lookup = shard.for_shard(0);
        let started = Instant::now();
        let failed = lookup.lookup("212313").await;
        assert!(
            matches!(
                failed,
                Err(CoreDataError::Unavailable(_) | CoreDataError::Timeout)
            ),
            "{failed:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    });
    redis.restart();
    put(&redis, &campaign("212313", "back"));
    wait_until(|| core.status().up, "the adapter reconnects");
    // The lookup connection comes back on its own (its reconnects are bounded by
    // `reconnect_max_ms`): within a few of those, lookups read the new hash.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shard = core.clone();
        let found = on_shard(move || async move { shard.for_shard(0).lookup("212313").await });
        match found {
            Ok(Some(c)) => {
                assert_eq!(c.program_name, "back");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "lookups never recovered: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
