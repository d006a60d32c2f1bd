//! Black-box tests of Redis core data: the real binary against a real redis-server.

mod common;

use std::time::{Duration, Instant};

use beacon_test_support::redis_server::RedisServer;
use common::Beacon;
use serde_json::Value;

/// Runs `beacon <args> --redis-url <redis>` (with the server's password in
/// `BEACON_REDIS_PASSWORD` when it has one): whether it succeeded, and its standard error.
fn try_cli(redis: &RedisServer, args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.args(args)
        .args(["--redis-url", &redis.url()])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(p) = &redis.password {
        cmd.env("BEACON_REDIS_PASSWORD", p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `beacon <args> --redis-url <redis>` and expects success.
fn cli(redis: &RedisServer, args: &[&str]) {
    let (ok, stderr) = try_cli(redis, args);
    assert!(ok, "beacon {args:?}: {stderr}");
}

/// A Redis that requires AUTH (an ElastiCache AUTH token): beacon takes the password apart
/// from the URL, as a secret handed over in `BEACON_REDIS_PASSWORD`, and never prints it.
#[test]
fn a_redis_password_from_the_environment_is_used_and_never_shown() {
    let token = "tok3n-from-secrets-manager";
    let redis = RedisServer::start_with_password(token);
    load_samples(&redis);
    let b = start_beacon(&redis, &[("BEACON_REDIS_PASSWORD", token)]);
    assert_eq!(program_name(&b, "212313"), (200, "program2".to_string()));
    // Without it, Redis refuses the writer, which says so without the URL's secret.
    let out = std::process::Command::new(common::bin())
        .args([
            "core-data",
            "load",
            "deploy/local/campaigns.json",
            "--redis-url",
        ])
        .arg(format!("redis://:wrong@127.0.0.1:{}", redis.port))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("wrong"),
        "{stderr}"
    );
    let out = std::process::Command::new(common::bin())
        .args(["config", "check", "--redis-url"])
        .arg(format!("redis://:inurl@127.0.0.1:{}", redis.port))
        .env("BEACON_REDIS_PASSWORD", token)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !shown.contains(token) && !shown.contains("inurl"),
        "{shown}"
    );
    assert!(shown.contains("password = \"***\""), "{shown}");
}

fn load_samples(redis: &RedisServer) {
    cli(redis, &["core-data", "load", "deploy/local/campaigns.json"]);
}

fn start_beacon(redis: &RedisServer, env: &[(&str, &str)]) -> Beacon {
    let url = redis.url();
    let mut all = vec![
        ("BEACON_REDIS_RECONNECT_MAX_MS", "300"),
        ("BEACON_REDIS_TIMEOUT_MS", "100"),
    ];
    all.extend_from_slice(env);
    let b = Beacon::start(&["--redis-url", &url, "--shards", "2"], &all);
    wait_ready(&b, true, Duration::from_secs(10));
    b
}

/// A redis-server holding the reference's samples, and a beacon (2 shards) reading it.
fn samples_and_beacon() -> (RedisServer, Beacon) {
    let redis = RedisServer::start();
    load_samples(&redis);
    let b = start_beacon(&redis, &[]);
    (redis, b)
}

fn wait_ready(b: &Beacon, want: bool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, _, body) = b.get("/health/ready", &[]);
        if (status == 200) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ready never became {want}: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn program_name(b: &Beacon, id: &str) -> (u16, String) {
    let (status, _, body) = b.get(&format!("/event/{id}"), &[]);
    let name = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["programName"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, name)
}

fn publish(redis: &RedisServer, payload: &[u8]) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg("channel1")
        .arg(payload)
        .query(&mut redis.conn())
        .unwrap();
}

#[test]
fn the_writer_uses_the_references_schema() {
    let redis = RedisServer::start();
    load_samples(&redis);
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg("212313")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(fields["programName"], "program2");
    assert_eq!(fields["customerId"], "9124");
    assert_eq!(fields["valid"], "true");
    assert_eq!(fields.len(), 6);
}

#[test]
fn published_updates_reach_the_next_request_within_50_ms() {
    let (redis, b) = samples_and_beacon();
    assert_eq!(program_name(&b, "212313"), (200, "program2".to_string()));
    let mut latencies = Vec::with_capacity(1000);
    for i in 0..1000 {
        let name = format!("name-{i}");
        let payload = format!(
            r#"{{"programId":"212313","checksum":"124","customerId":9124,"customerName":"Customer2","programName":"{name}","valid":true}}"#
        );
        publish(&redis, payload.as_bytes());
        let published = Instant::now();
        loop {
            if program_name(&b, "212313").1 == name {
                break;
            }
            assert!(
                published.elapsed() < Duration::from_secs(2),
                "update {i} never arrived"
            );
        }
        latencies.push(published.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "publish -> visible over 1000 updates: p50 {p50:?}, p99 {p99:?}, max {:?}",
        latencies.last().unwrap()
    );
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
}

#[test]
fn while_redis_is_down_hits_keep_serving_and_misses_fail_fast() {
    let mut redis = RedisServer::start();
    load_samples(&redis);
    let b = start_beacon(&redis, &[("BEACON_L1_TTL_SECS", "1")]);
    for id in ["212312", "212313", "212314"] {
        assert_eq!(b.get(&format!("/pixel/{id}"), &[]).0, 204);
    }
    let url = b.url("/pixel/212313");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let load = s.spawn(|| {
            let agent = common::agent();
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = agent.get(&url).call().unwrap().status().as_u16();
                assert_eq!(status, 204, "a cached campaign must keep being served");
                answered += 1;
            }
            answered
        });
        std::thread::sleep(Duration::from_millis(200));
        redis.kill();
        wait_ready(&b, false, Duration::from_secs(5));
        // Past the 1 s TTL: still served, as stale.
        std::thread::sleep(Duration::from_millis(1500));
        let started = Instant::now();
        let (status, headers, _) = b.get("/event/777", &[]);
        let took = started.elapsed();
        assert_eq!(status, 503);
        assert_eq!(headers["retry-after"], "1");
        assert!(
            took < Duration::from_millis(600),
            "a miss is answered within the timeout: {took:?}"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(load.join().unwrap() > 50);
    });
    let stale = b.metric("beacon_l1_lookups_total{outcome=\"stale\",shard=\"0\"}")
        + b.metric("beacon_l1_lookups_total{outcome=\"stale\",shard=\"1\"}");
    assert!(stale > 0.0, "past-TTL hits are counted as stale serves");
    let (_, _, ready) = b.get("/health/ready", &[]);
    assert!(ready.contains("\"core_data_up\":false"), "{ready}");

    redis.restart();
    load_samples(&redis);
    wait_ready(&b, true, Duration::from_secs(10));
    assert_eq!(b.get("/event/212314", &[]).0, 200);
}

#[test]
fn a_change_missed_while_the_subscriber_was_down_is_served_fresh_after_it_returns() {
    let mut redis = RedisServer::start();
    load_samples(&redis);
    let b = start_beacon(&redis, &[]); // L1 TTL 600 s: only the resync can make it fresh
    assert_eq!(program_name(&b, "212313"), (200, "program2".to_string()));
    redis.kill();
    wait_ready(&b, false, Duration::from_secs(5));
    redis.restart();
    // Written while beacon was not subscribed: no announcement reaches it.
    load_samples(&redis);
    let _: () = redis::cmd("HSET")
        .arg("212313")
        .arg("programName")
        .arg("changed-while-down")
        .query(&mut redis.conn())
        .unwrap();
    wait_ready(&b, true, Duration::from_secs(10));
    assert_eq!(
        program_name(&b, "212313"),
        (200, "changed-while-down".to_string())
    );
    let resyncs = b.metric("beacon_redis_resyncs_total");
    assert!(resyncs >= 2.0, "one resync per subscription: {resyncs}");
}

#[test]
fn started_while_redis_is_down_it_serves_what_it_can_and_recovers() {
    let mut redis = RedisServer::stopped();
    let url = redis.url();
    let b = Beacon::start(
        &["--redis-url", &url, "--shards", "2"],
        &[
            ("BEACON_REDIS_RECONNECT_MAX_MS", "300"),
            ("BEACON_REDIS_TIMEOUT_MS", "100"),
        ],
    );
    assert_eq!(b.get("/health/check", &[]).0, 200);
    assert_eq!(b.get("/event/212313", &[]).0, 503);
    redis.restart();
    load_samples(&redis);
    wait_ready(&b, true, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.get("/event/212313", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_flood_of_unknown_ids_reaches_redis_once_per_id() {
    let (redis, b) = samples_and_beacon();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut redis.conn())
        .unwrap();
    for round in 0..50 {
        for id in 0..20 {
            let (status, _, _) = b.get(&format!("/pixel/unknown{id}"), &[]);
            assert_eq!(status, 404, "round {round}");
        }
    }
    assert_eq!(
        redis.hgetall_calls(),
        20,
        "one lookup per unknown id within the negative TTL"
    );
}

#[test]
fn garbage_on_the_channel_is_counted_and_skipped() {
    let (redis, b) = samples_and_beacon();
    assert_eq!(program_name(&b, "212312").1, "program1");
    publish(&redis, b"{not json");
    publish(&redis, br#"{"programId":"212312","checksum":"1","customerId":"lots","customerName":"c","programName":"p"}"#);
    publish(&redis, &vec![b'x'; 10 << 20]);
    publish(
        &redis,
        br#"{"programId":"212312","checksum":"123","customerId":9123,"customerName":"Customer1","programName":"after-garbage","valid":true}"#,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while program_name(&b, "212312").1 != "after-garbage" {
        assert!(
            Instant::now() < deadline,
            "the subscriber stopped after garbage"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for reason in ["not_json", "bad_fields", "too_large"] {
        let n = b.metric(&format!(
            "beacon_redis_messages_rejected_total{{reason=\"{reason}\"}}"
        ));
        assert_eq!(n, 1.0, "{reason}");
    }
    assert_eq!(
        b.metric("beacon_redis_resyncs_total"),
        1.0,
        "the subscription survived"
    );
}

#[test]
fn deletes_and_versions_through_the_cli() {
    let (redis, b) = samples_and_beacon();
    assert_eq!(program_name(&b, "212314").0, 200);
    let put = |name: &str, version: &str, valid: &str| {
        try_cli(
            &redis,
            &[
                "core-data",
                "put",
                "--program-id",
                "212314",
                "--program-name",
                name,
                "--checksum",
                "1",
                "--customer-id",
                "1",
                "--customer-name",
                "c",
                "--version",
                version,
                "--valid",
                valid,
            ],
        )
    };
    assert!(put("v5", "5", "true").0);
    wait_for(&b, "212314", (200, "v5"));
    // The writer refuses an older version: nothing is written or announced.
    let (ok, stderr) = put("v4", "4", "true");
    assert!(
        !ok && stderr.contains("Redis holds a newer version"),
        "{stderr}"
    );
    let held: String = redis::cmd("HGET")
        .arg("212314")
        .arg("programName")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(held, "v5");
    // An older announcement that reaches the engine anyway (another writer) is ignored there.
    publish(
        &redis,
        br#"{"programId":"212314","checksum":"1","customerId":1,"customerName":"c","programName":"v4","valid":true,"version":4}"#,
    );
    assert!(put("v6", "6", "false").0);
    wait_for(&b, "212314", (403, ""));
    let ignored = b.metric("beacon_core_data_updates_total{result=\"ignored\",shard=\"0\"}")
        + b.metric("beacon_core_data_updates_total{result=\"ignored\",shard=\"1\"}");
    assert_eq!(
        ignored, 1.0,
        "the v4 announcement arrived after v5 and was ignored"
    );
    cli(&redis, &["core-data", "delete", "212314", "--version", "7"]);
    wait_for(&b, "212314", (404, ""));
}

fn wait_for(b: &Beacon, id: &str, want: (u16, &str)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = program_name(b, id);
        if got.0 == want.0 && got.1 == want.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id}: wanted {want:?}, got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
