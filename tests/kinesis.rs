//! Black-box tests of the Kinesis sink: the real binary, kinesalite (a real implementation of
//! the Kinesis API) and a fault-injecting proxy in front of it.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use beacon_engine::config::RecordFormat;
use beacon_engine::model::decode;
use beacon_test_support::kinesis::{FaultProxy, Kinesalite, AWS_ENV};
use common::Beacon;

fn start(
    endpoint: &str,
    stream: &str,
    data_dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Beacon {
    start_logging(endpoint, stream, data_dir, extra, env, None)
}

/// `start`, with the server's standard error in `log`.
fn start_logging(
    endpoint: &str,
    stream: &str,
    data_dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
    log: Option<&std::path::Path>,
) -> Beacon {
    let mut args = vec![
        "--kinesis-stream",
        stream,
        "--kinesis-endpoint",
        endpoint,
        "--shards",
        "2",
    ];
    args.extend_from_slice(extra);
    let mut all_env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    all_env.extend_from_slice(env);
    Beacon::start_logging(data_dir, &args, &all_env, log)
}

/// Sends `n` `/event` requests over a few connections; returns the answered message ids.
fn send_events(b: &Beacon, n: usize) -> Vec<String> {
    let url = b.url("");
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let url = url.clone();
                s.spawn(move || {
                    let agent = common::agent();
                    (w..n)
                        .step_by(4)
                        .map(|i| {
                            let id = ["212312", "212313", "212314"][i % 3];
                            let mut resp = agent.get(&format!("{url}/event/{id}")).call().unwrap();
                            assert_eq!(resp.status(), 200);
                            let v: serde_json::Value =
                                serde_json::from_str(&resp.body_mut().read_to_string().unwrap())
                                    .unwrap();
                            v["messageId"].as_str().unwrap().to_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// Message ids of every record in the stream, with how often each occurs.
fn delivered(k: &Kinesalite, stream: &str, format: RecordFormat) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for data in k.read_all(stream) {
        let event = decode(format, &data).expect("every record decodes");
        *seen.entry(event.message_id()).or_insert(0) += 1;
    }
    seen
}

fn wait_for_sent(b: &Beacon, n: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let sent = b.metric("beacon_kinesis_records_sent_total");
        if sent >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {sent} of {n} records reached Kinesis"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Without a region or credentials, reading a stream says which is missing and how to set it
/// (it used to say "unreachable: could not send: other").
#[test]
fn a_missing_region_or_credentials_is_named() {
    let tail = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(common::bin())
            .args(["tail", "--kinesis-stream", "events", "--kinesis-endpoint"])
            .arg("http://127.0.0.1:9")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let none = tail(&[]);
    assert!(none.contains("no AWS region: set AWS_REGION"), "{none}");
    let no_keys = tail(&[("AWS_REGION", "us-east-1")]);
    assert!(
        no_keys.contains("no AWS credentials") && no_keys.contains("AWS_ACCESS_KEY_ID=test"),
        "{no_keys}"
    );
}

#[test]
fn every_event_arrives_once_in_both_formats() {
    let k = Kinesalite::start();
    for (format, name) in [
        (RecordFormat::Rkyv, "rkyv"),
        (RecordFormat::Protobuf, "protobuf"),
    ] {
        let stream = format!("events-{name}");
        k.create_stream(&stream, 2);
        let tmp = tempfile::tempdir().unwrap();
        let mut b = start(
            &k.endpoint(),
            &stream,
            tmp.path(),
            &["--record-format", name],
            &[],
        );
        let ids = send_events(&b, 1000);
        assert_eq!(b.terminate().code(), Some(0));
        let seen = delivered(&k, &stream, format);
        let answered: HashSet<String> = ids.into_iter().collect();
        assert_eq!(answered.len(), 1000);
        assert_eq!(
            seen.keys().cloned().collect::<HashSet<_>>(),
            answered,
            "{name}: message ids match 1:1"
        );
        assert!(
            seen.values().all(|&c| c == 1),
            "{name}: no duplicates without faults"
        );
    }
}

#[test]
fn partial_failures_and_throttled_calls_lose_nothing() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    // Every 7th record fails inside its call; every 5th call is throttled whole.
    let proxy = FaultProxy::start(k.port, 7, 5);
    let tmp = tempfile::tempdir().unwrap();
    let mut b = start(
        &proxy.endpoint(),
        "events",
        tmp.path(),
        &["--record-format", "protobuf"],
        &[],
    );
    let ids = send_events(&b, 2000);
    wait_for_sent(&b, 2000.0, Duration::from_secs(30));
    let failed_records = b.metric(
        "beacon_kinesis_failed_records_total{code=\"ProvisionedThroughputExceededException\"}",
    );
    let throttled_calls = b.metric(
        "beacon_kinesis_failed_calls_total{code=\"ProvisionedThroughputExceededException\"}",
    );
    assert!(
        failed_records > 0.0 && throttled_calls > 0.0,
        "faults were injected: {failed_records} records, {throttled_calls} calls"
    );
    assert_eq!(b.terminate().code(), Some(0));
    let seen = delivered(&k, "events", RecordFormat::Protobuf);
    let answered: HashSet<String> = ids.into_iter().collect();
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), answered);
    // The proxy never stores a record it reports as failed, so resending makes no duplicate.
    assert_eq!(seen.values().sum::<usize>(), 2000);
}

/// The log of a run whose Kinesis throttles every 5th call and refuses every 7th record: one
/// outage with counts, not a line per change of state (it used to flap 23 times in 3 s), and
/// with `--log-format json` every line on both streams is a JSON object.
#[test]
fn intermittent_faults_make_one_outage_in_the_log_with_counts_and_every_line_is_json() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    let proxy = FaultProxy::start(k.port, 7, 5);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("beacon.log");
    let mut b = start_logging(
        &proxy.endpoint(),
        "events",
        tmp.path(),
        &["--log-format", "json"],
        &[],
        Some(&log),
    );
    // 11 s of events, so that one 10 s summary falls inside the run.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(11) {
        sent += send_events(&b, 100).len();
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_sent(&b, sent as f64, Duration::from_secs(30));
    assert_eq!(b.terminate().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    let message = |l: &serde_json::Value| l["message"].as_str().unwrap_or_default().to_string();
    let changes: Vec<String> = lines
        .iter()
        .map(message)
        .filter(|m| {
            m.starts_with("Kinesis calls failing")
                || m.starts_with("Kinesis calls succeed")
                || m.starts_with("spooling records")
                || m.starts_with("spool drained")
        })
        .collect();
    assert!(
        (1..=4).contains(&changes.len()),
        "failing/recovered lines: {changes:#?}"
    );
    let summary = lines
        .iter()
        .find(|l| message(l) == "Kinesis calls still failing")
        .unwrap_or_else(|| panic!("no summary in {text}"));
    let counts = summary["counts"].as_str().unwrap();
    assert!(
        counts.contains("calls ")
            && counts.contains("ProvisionedThroughputExceededException")
            && counts.contains("records refused"),
        "{counts}"
    );
}

#[test]
fn ten_seconds_without_kinesis_under_load_then_everything_arrives() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    let mut proxy = FaultProxy::start(k.port, 0, 0);
    let tmp = tempfile::tempdir().unwrap();
    let mut b = start(
        &proxy.endpoint(),
        "events",
        tmp.path(),
        &[],
        &[
            ("BEACON_KINESIS_RECORD_TTL_MS", "1000"),
            ("BEACON_KINESIS_RETRY_MAX_MS", "200"),
            ("BEACON_KINESIS_SPOOL_AFTER_MS", "50"),
            ("BEACON_KINESIS_CALL_TIMEOUT_MS", "500"),
        ],
    );
    let stop = AtomicBool::new(false);
    let url = b.url("");
    let ids: Vec<String> = std::thread::scope(|s| {
        let load = s.spawn(|| {
            let agent = common::agent();
            let mut ids = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let id = ["212312", "212313", "212314"][i % 3];
                let mut resp = agent.get(&format!("{url}/event/{id}")).call().unwrap();
                assert_eq!(
                    resp.status(),
                    200,
                    "requests keep getting 2xx while the spool has room"
                );
                let v: serde_json::Value =
                    serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
                ids.push(v["messageId"].as_str().unwrap().to_string());
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            ids
        });
        std::thread::sleep(Duration::from_secs(2));
        proxy.stop();
        std::thread::sleep(Duration::from_secs(5));
        let (status, _, ready) = b.get("/health/ready", &[]);
        assert_eq!(status, 503, "degraded while Kinesis fails: {ready}");
        assert!(ready.contains("\"sink_healthy\":false"), "{ready}");
        std::thread::sleep(Duration::from_secs(5));
        proxy.restart();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    let spooled = b.metric("beacon_kinesis_spooled_records_total{shard=\"0\"}")
        + b.metric("beacon_kinesis_spooled_records_total{shard=\"1\"}");
    assert!(spooled > 0.0, "the outage was long enough to use the spool");
    wait_for_sent(&b, ids.len() as f64, Duration::from_secs(60));
    assert_eq!(b.terminate().code(), Some(0));
    let seen = delivered(&k, "events", RecordFormat::Rkyv);
    let answered: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(answered.len(), ids.len());
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        answered,
        "every accepted event arrived"
    );
    let duplicates = seen.values().filter(|&&c| c > 1).count();
    println!(
        "{} events over a 10 s outage, {spooled} spooled, {duplicates} delivered more than once",
        ids.len()
    );
}

/// Waits until `n` records sit in the spool (the gauge of each shard's spooled records).
fn wait_for_spooled(b: &Beacon, n: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let spooled = b.metric("beacon_kinesis_spooled_records_total{shard=\"0\"}")
            + b.metric("beacon_kinesis_spooled_records_total{shard=\"1\"}");
        if spooled as u64 >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {spooled} of {n} records spooled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kinesis unreachable while events are answered; they are spooled.
const SPOOL_FAST: [(&str, &str); 3] = [
    ("BEACON_KINESIS_SPOOL_AFTER_MS", "50"),
    ("BEACON_KINESIS_RECORD_TTL_MS", "300"),
    ("BEACON_KINESIS_CALL_TIMEOUT_MS", "300"),
];

#[test]
fn a_stop_sends_the_spool_before_exit_when_kinesis_is_back() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    let mut proxy = FaultProxy::stopped(k.port);
    let tmp = tempfile::tempdir().unwrap();
    let mut b = start(&proxy.endpoint(), "events", tmp.path(), &[], &SPOOL_FAST);
    let ids = send_events(&b, 3000);
    wait_for_spooled(&b, 3000, Duration::from_secs(30));
    assert!(walk(&tmp.path().join("spool"), ".spool") > 0);
    // Kinesis back, and the stop comes at once (a scale-in right after an outage): the drain
    // sends the spool before the process exits, so nothing stays on this instance's disk.
    proxy.restart();
    assert_eq!(
        b.terminate().code(),
        Some(0),
        "every spooled event delivered"
    );
    assert_eq!(
        walk(&tmp.path().join("spool"), ".spool"),
        0,
        "nothing left on disk"
    );
    let seen = delivered(&k, "events", RecordFormat::Rkyv);
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        ids.into_iter().collect::<HashSet<_>>(),
        "all 3,000 answered events are in the stream after exit"
    );
}

#[test]
fn a_stop_while_kinesis_stays_down_names_what_is_left_and_the_next_start_delivers() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    let mut proxy = FaultProxy::stopped(k.port);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("beacon.log");
    let mut env = SPOOL_FAST.to_vec();
    env.push(("BEACON_KINESIS_SHUTDOWN_FLUSH_MS", "1000"));
    let endpoint = proxy.endpoint();
    let mut b = start_logging(&endpoint, "events", tmp.path(), &[], &env, Some(&log));
    let ids = send_events(&b, 300);
    wait_for_spooled(&b, 300, Duration::from_secs(30));
    assert_eq!(
        b.terminate().code(),
        Some(3),
        "a stop that leaves events on local disk exits 3"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap_or_default();
    let spool = tmp.path().join("spool");
    assert!(
        last.starts_with("beacon: stopped with 300 accepted events not delivered")
            && last.contains(&spool.join("shard-0").display().to_string())
            && last.contains("kinesis.shutdown_flush_ms"),
        "{last}"
    );
    assert!(
        walk(&spool, ".spool") > 0,
        "the undelivered events are on disk"
    );
    assert!(k.read_all("events").is_empty());

    proxy.restart();
    let mut b = start(&proxy.endpoint(), "events", tmp.path(), &[], &[]);
    wait_for_sent(&b, 300.0, Duration::from_secs(30));
    assert_eq!(b.terminate().code(), Some(0));
    assert_eq!(
        walk(&spool, ".spool"),
        0,
        "replayed spool files are removed"
    );
    let seen = delivered(&k, "events", RecordFormat::Rkyv);
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        ids.into_iter().collect::<HashSet<_>>()
    );
}

#[test]
fn records_kinesis_can_never_take_are_dead_lettered_and_counted() {
    let k = Kinesalite::start();
    k.create_stream("events", 1);
    let tmp = tempfile::tempdir().unwrap();
    let mut b = start(
        &k.endpoint(),
        "events",
        tmp.path(),
        &[],
        &[("BEACON_KINESIS_RECORD_BYTES_MAX", "512")],
    );
    let huge_agent = "x".repeat(2000);
    for _ in 0..3 {
        assert_eq!(
            b.get("/pixel/212313", &[("User-Agent", huge_agent.as_str())])
                .0,
            204
        );
    }
    let ids = send_events(&b, 20);
    let deadline = Instant::now() + Duration::from_secs(5);
    let dead = || {
        (0..2)
            .map(|s| {
                b.metric(&format!(
                    "beacon_kinesis_dead_lettered_total{{shard=\"{s}\"}}"
                ))
            })
            .sum::<f64>()
    };
    while dead() < 3.0 {
        assert!(
            Instant::now() < deadline,
            "oversized records were not dead-lettered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dead(), 3.0);
    assert_eq!(b.terminate().code(), Some(0));
    let mut dead_records = Vec::new();
    for shard in 0..2 {
        let dir = tmp.path().join(format!("spool/shard-{shard}/dead-letter"));
        for file in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            dead_records
                .extend(beacon_kinesis::spool::decode(&bytes).expect("dead-letter files decode"));
        }
    }
    assert_eq!(
        dead_records.len(),
        3,
        "every oversized record is kept, none dropped silently"
    );
    let seen = delivered(&k, "events", RecordFormat::Rkyv);
    assert_eq!(seen.len(), 20, "the other events still arrive");
    assert!(ids.iter().all(|id| seen.contains_key(id)));
}

/// Files ending in `ext` under `dir`, recursively.
fn walk(dir: &std::path::Path, ext: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                walk(&p, ext)
            } else {
                p.to_string_lossy().ends_with(ext) as usize
            }
        })
        .sum()
}

#[test]
fn aggregated_records_read_back_through_the_standard_deaggregator() {
    use std::io::Write;
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        python.exists(),
        "the KPL deaggregator is not installed: run scripts/test, which makes target/test-venv"
    );
    let k = Kinesalite::start();
    k.create_stream("events", 4);
    let tmp = tempfile::tempdir().unwrap();
    let mut b = start(
        &k.endpoint(),
        "events",
        tmp.path(),
        &["--aggregation", "--record-format", "protobuf"],
        &[],
    );
    let ids = send_events(&b, 2000);
    assert_eq!(b.terminate().code(), Some(0));

    let shards = k.read_shards("events");
    let kinesis_records: usize = shards.iter().map(|s| s.records.len()).sum();
    assert!(
        kinesis_records < 2000 / 5,
        "{kinesis_records} Kinesis records for 2000 events: aggregated"
    );
    // Every user record sits on the shard its own partition key maps to.
    for shard in &shards {
        for r in &shard.records {
            for user in beacon_kinesis::aggregate::deaggregate(&r.data).expect("KPL format") {
                let h = beacon_kinesis::aggregate::hash_key(&user.partition_key);
                assert!(
                    (shard.first_hash_key..=shard.last_hash_key).contains(&h),
                    "user record on the wrong shard"
                );
            }
        }
    }
    let mut child = std::process::Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/deaggregate.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for r in shards.iter().flat_map(|s| &s.records) {
            let line = serde_json::json!({
                "partitionKey": r.partition_key,
                "sequenceNumber": r.sequence_number,
                "data": BASE64.encode(&r.data),
            });
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "deaggregator failed");
    let mut seen = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let data = BASE64.decode(v["data"].as_str().unwrap()).unwrap();
        let event =
            decode(RecordFormat::Protobuf, &data).expect("a user record is a TrackingEvent");
        assert_eq!(
            v["partitionKey"],
            event.message_id(),
            "partition key = message id"
        );
        *seen.entry(event.message_id()).or_insert(0usize) += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<HashSet<_>>(),
        ids.into_iter().collect::<HashSet<_>>()
    );
    assert!(seen.values().all(|&c| c == 1));
}

/// `beacon tail --kinesis-stream` output: (message id, how often) per printed event.
fn tail_stream(endpoint: &str, stream: &str) -> (std::process::Output, HashMap<String, usize>) {
    let out = std::process::Command::new(common::bin())
        .args([
            "tail",
            "--kinesis-stream",
            stream,
            "--kinesis-endpoint",
            endpoint,
        ])
        .envs(AWS_ENV)
        .output()
        .unwrap();
    let mut seen = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line per event");
        let id = v
            .get("message_id")
            .or_else(|| v.get("messageId"))
            .and_then(|id| id.as_str())
            .unwrap_or_else(|| panic!("no message id in {line}"))
            .to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    (out, seen)
}

#[test]
fn tail_reads_back_what_a_run_sent_plain_and_aggregated() {
    let k = Kinesalite::start();
    for (stream, extra) in [
        ("plain-rkyv", &["--record-format", "rkyv"][..]),
        (
            "aggregated-protobuf",
            &["--record-format", "protobuf", "--aggregation"][..],
        ),
    ] {
        k.create_stream(stream, 2);
        let tmp = tempfile::tempdir().unwrap();
        let mut b = start(&k.endpoint(), stream, tmp.path(), extra, &[]);
        let ids = send_events(&b, 300);
        assert_eq!(b.terminate().code(), Some(0));
        let (out, seen) = tail_stream(&k.endpoint(), stream);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{stream}: tail failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answered: HashSet<String> = ids.into_iter().collect();
        assert_eq!(
            seen.keys().cloned().collect::<HashSet<_>>(),
            answered,
            "{stream}: tail prints every answered event"
        );
        assert!(seen.values().all(|&c| c == 1), "{stream}: each once");
    }
    let (out, seen) = tail_stream(&k.endpoint(), "no-such-stream");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(seen.is_empty());
    assert!(
        stderr.contains("ResourceNotFoundException") && stderr.contains("no-such-stream"),
        "names the AWS error: {stderr}"
    );
}

#[test]
fn durable_acks_survive_kill_9_and_arrive_after_a_restart() {
    let k = Kinesalite::start();
    k.create_stream("events", 2);
    let tmp = tempfile::tempdir().unwrap();
    let durable = ["--ack", "durable", "--synthetic-campaigns", "1000"];
    let mut answered = Vec::new();
    for _ in 0..3 {
        let b = start(&k.endpoint(), "events", tmp.path(), &durable, &[]);
        answered.extend(common::answered_until_kill_9(&b));
    }
    // A clean run replays whatever the kills left in the spool.
    let mut b = start(&k.endpoint(), "events", tmp.path(), &durable, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.metric("beacon_kinesis_spooled_bytes{shard=\"0\"}")
        + b.metric("beacon_kinesis_spooled_bytes{shard=\"1\"}")
        > 0.0
    {
        assert!(Instant::now() < deadline, "the spool did not drain");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(b.terminate().code(), Some(0));
    let seen = delivered(&k, "events", RecordFormat::Rkyv);
    eprintln!("{} events answered 200 over 3 kills", answered.len());
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered events never reached Kinesis, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(3)]
    );
}
