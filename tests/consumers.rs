//! The whole pipeline, black box: the engine sends to kinesalite, `beacon consume events`
//! stores into dynalite, `beacon consume core-data` writes a real redis-server that a running
//! engine reads.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use beacon_test_support::dynamodb::{string, Dynalite};
use beacon_test_support::kinesis::{Kinesalite, AWS_ENV};
use beacon_test_support::redis_server::RedisServer;
use common::Beacon;

const TABLE: &str = "TrackingEvents";

fn consume(args: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.arg("consume")
        .args(args)
        .envs(AWS_ENV)
        .stdout(Stdio::null());
    cmd
}

/// `n` answered `/event` requests, their message ids.
fn send(b: &Beacon, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = ["212312", "212313", "212314"][i % 3];
            let (status, _, body) = b.get(&format!("/event/{id}"), &[]);
            assert_eq!(status, 200);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["messageId"].as_str().unwrap().to_string()
        })
        .collect()
}

fn persist_to_end(k: &Kinesalite, db: &Dynalite, stream: &str, state: &Path) -> ExitStatus {
    persist(k, db, stream, state).status().unwrap()
}

/// `beacon consume events` on `stream` into the table, until every shard is read to its end.
fn persist(k: &Kinesalite, db: &Dynalite, stream: &str, state: &Path) -> Command {
    consume(&[
        "events",
        "--stream",
        stream,
        "--table",
        TABLE,
        "--kinesis-endpoint",
        &k.endpoint(),
        "--dynamodb-endpoint",
        &db.endpoint(),
        "--state-dir",
        state.to_str().unwrap(),
        "--stop-at-end",
    ])
}

#[test]
fn answered_events_become_one_item_each_in_every_format_and_a_rerun_adds_none() {
    let k = Kinesalite::start();
    let db = Dynalite::start(&[TABLE]);
    let tmp = tempfile::tempdir().unwrap();
    let n = 150;
    let mut answered = Vec::new();
    for (mode, extra) in [
        ("plain", vec![]),
        ("protobuf", vec!["--record-format", "protobuf"]),
        ("aggregated", vec!["--aggregation"]),
    ] {
        let stream = format!("events-{mode}");
        k.create_stream(&stream, 2);
        let endpoint = k.endpoint();
        let mut args = vec![
            "--kinesis-stream",
            stream.as_str(),
            "--kinesis-endpoint",
            endpoint.as_str(),
        ];
        args.extend(extra);
        let mut b = Beacon::start_in(&tmp.path().join(mode), &args, &AWS_ENV);
        let ids = send(&b, n);
        assert!(b.terminate().success());
        let state = tmp.path().join("state");
        assert!(persist_to_end(&k, &db, &stream, &state).success());
        answered.push((stream, ids));
    }
    let items = db.items_by_id(TABLE);
    assert_eq!(items.len(), 3 * n);
    for (_, ids) in &answered {
        for id in ids {
            let it = items.get(id).unwrap_or_else(|| panic!("{id} not stored"));
            assert_eq!(string(it, "message_id"), *id);
            let program = string(it, "program_id");
            let expect = match program.as_str() {
                "212312" => ("program1", "123", "9123", "Customer1"),
                "212313" => ("program2", "124", "9124", "Customer2"),
                "212314" => ("program3", "125", "9125", "Customer3"),
                other => panic!("unexpected program {other}"),
            };
            assert_eq!(string(it, "program_name"), expect.0);
            assert_eq!(string(it, "checksum"), expect.1);
            assert_eq!(string(it, "customer_id"), expect.2);
            assert_eq!(string(it, "customer_name"), expect.3);
            assert_eq!(string(it, "valid"), "true");
        }
    }
    // A forced retry: the plain stream read again from its start, as after a lost checkpoint,
    // now with a record that is no event in it: set aside in the failure directory, not stored.
    k.put_record("events-plain", "poison", b"\x00 not an event");
    let fresh = tmp.path().join("state-again");
    assert!(persist_to_end(&k, &db, &answered[0].0, &fresh).success());
    assert!(fresh.join("events-plain.checkpoint.json").is_file());
    assert_eq!(db.items(TABLE).len(), 3 * n, "a re-run added items");
    let failed: Vec<_> = std::fs::read_dir(fresh.join("events-plain.failed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(std::fs::read(&failed[0]).unwrap(), b"\x00 not an event");
    let unique: HashSet<&String> = answered.iter().flat_map(|(_, ids)| ids).collect();
    assert_eq!(unique.len(), 3 * n);
}

/// `beacon consume events` with the default state directory's checkpoint on a stream that was
/// deleted and created again under the same name: the old checkpoint (another stream's
/// sequence numbers) is set aside with one warning, the consumer keeps going and stores the
/// new stream's events. Once where the checkpoint's stream identity tells them apart, once
/// with a checkpoint written before identities were kept, where the stream's refusal of its
/// sequence number does.
#[test]
fn a_polling_consumer_on_a_recreated_stream_sets_the_old_checkpoint_aside_and_goes_on() {
    let k = Kinesalite::start();
    let db = Dynalite::start(&[TABLE]);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let run = |name: &str, n: usize| {
        let endpoint = k.endpoint();
        let args = [
            "--kinesis-stream",
            "events",
            "--kinesis-endpoint",
            endpoint.as_str(),
        ];
        let mut b = Beacon::start_in(&tmp.path().join(name), &args, &AWS_ENV);
        let ids = send(&b, n);
        assert!(b.terminate().success());
        ids
    };
    k.create_stream("events", 1);
    let first = run("first", 40);
    assert!(persist_to_end(&k, &db, "events", &state).success());
    let checkpoint = state.join("events.checkpoint.json");
    let held: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert!(
        held["stream"]["arn"]
            .as_str()
            .unwrap()
            .ends_with("stream/events"),
        "{held}"
    );
    let mut stored = first.len();
    for round in [1, 2] {
        if round == 2 {
            // The shard map alone, as an earlier version wrote it.
            let held: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
            std::fs::write(&checkpoint, held["shards"].to_string()).unwrap();
        }
        k.delete_stream("events");
        // kinesalite numbers records by their stream's creation second.
        std::thread::sleep(Duration::from_millis(1100));
        k.create_stream("events", 1);
        let ids = run(&format!("round-{round}"), 30);
        let log = tmp.path().join(format!("consume-{round}.log"));
        let status = persist(&k, &db, "events", &state)
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "round {round}: {text}");
        let warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("checkpoint set aside"))
            .collect();
        assert_eq!(warnings.len(), 1, "round {round}: {text}");
        assert!(
            warnings[0].contains("--from trim-horizon"),
            "{}",
            warnings[0]
        );
        let why = [
            "the stream was deleted and created again",
            "refuses its sequence number",
        ];
        assert!(warnings[0].contains(why[round - 1]), "{}", warnings[0]);
        let items = db.items_by_id(TABLE);
        for id in &ids {
            assert!(items.contains_key(id), "round {round}: {id} not stored");
        }
        stored += ids.len();
        assert_eq!(items.len(), stored);
        let aside = std::fs::read_dir(&state)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy()
                    .starts_with("events.checkpoint.json.set-aside-")
            })
            .count();
        assert!(aside >= 1, "round {round}: nothing set aside");
    }
}

fn program_name(b: &Beacon, id: &str) -> String {
    let (status, _, body) = b.get(&format!("/event/{id}"), &[]);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["programName"].as_str().unwrap().to_string()
}

/// Waits (at most 10 s) until the engine serves `want` for `id`; how long that took.
fn until_served(b: &Beacon, id: &str, want: &str) -> Duration {
    let start = Instant::now();
    while program_name(b, id) != want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{id} still served as {:?}, not {want:?}",
            program_name(b, id)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn stop(mut child: Child) -> ExitStatus {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "consumer did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn update(id: &str, name: &str, version: u64) -> Vec<u8> {
    serde_json::json!({
        "programId": id, "checksum": "124", "customerId": 9124,
        "customerName": "Customer2", "programName": name, "valid": true, "version": version
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_core_data_update_on_the_stream_reaches_a_running_engine_and_an_older_one_does_not() {
    let redis = RedisServer::start();
    let k = Kinesalite::start();
    k.create_stream("core-data", 1);
    let tmp = tempfile::tempdir().unwrap();
    let load = Command::new(common::bin())
        .args(["core-data", "load"])
        .arg(beacon_test_support::repo_root().join("deploy/local/campaigns.json"))
        .args(["--redis-url", &redis.url()])
        .status()
        .unwrap();
    assert!(load.success());
    let b = Beacon::start(&["--redis-url", &redis.url()], &[]);
    assert_eq!(program_name(&b, "212313"), "program2");
    let state = tmp.path().join("state");
    let consumer = consume(&[
        "core-data",
        "--stream",
        "core-data",
        "--redis-url",
        &redis.url(),
        "--kinesis-endpoint",
        &k.endpoint(),
        "--state-dir",
        state.to_str().unwrap(),
        "--idle-ms",
        "100",
    ])
    .spawn()
    .unwrap();
    k.put_record("core-data", "212313", &update("212313", "renamed", 5));
    let took = until_served(&b, "212313", "renamed");
    eprintln!("update put on the stream -> served by the engine: {took:?}");
    // An older version put after it, then a marker: once the marker is served, the older
    // change was handled (one shard, in order) and did not win.
    k.put_record("core-data", "212313", &update("212313", "stale", 4));
    k.put_record("core-data", "212314", &update("212314", "marker", 1));
    until_served(&b, "212314", "marker");
    assert_eq!(program_name(&b, "212313"), "renamed");
    let mut conn = redis.conn();
    let name: String = redis::cmd("HGET")
        .arg("212313")
        .arg("programName")
        .query(&mut conn)
        .unwrap();
    assert_eq!(name, "renamed");
    assert!(stop(consumer).success());
    let checkpoint = std::fs::read_to_string(state.join("core-data.checkpoint.json")).unwrap();
    assert!(checkpoint.contains("shardId-000000000000"), "{checkpoint}");
}

#[test]
fn the_local_stack_comes_up_stores_what_beacon_answers_and_goes_down() {
    use beacon_test_support::free_port;
    use std::io::{BufRead, BufReader};
    let root = beacon_test_support::repo_root();
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let mut up = Command::new(root.join("deploy/local/up"))
        .env("STACK_HTTP_PORT", ports[0].to_string())
        .env("STACK_REDIS_PORT", ports[1].to_string())
        .env("STACK_KINESIS_PORT", ports[2].to_string())
        .env("STACK_DYNAMODB_PORT", ports[3].to_string())
        .env("STACK_BEACON_BIN", common::bin())
        .env("STACK_DIR", tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().starts_with("local stack ready")),
        "deploy/local/up did not get ready"
    );
    let agent = common::agent();
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let mut resp = agent
            .get(&format!("http://127.0.0.1:{}/event/212313", ports[0]))
            .call()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        ids.insert(v["messageId"].as_str().unwrap().to_string());
    }
    // The README's way to look at the table.
    let scan = || {
        let out = Command::new("node")
            .arg(root.join("deploy/local/emulators/aws.js"))
            .args(["scan", &ports[3].to_string(), TABLE])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<HashSet<String>>()
    };
    let start = Instant::now();
    while scan() != ids {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the table does not hold the 20 events"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A change through the update stream, with the README's helper, reaches the engine.
    let update = String::from_utf8(update("212313", "renamed", 2)).unwrap();
    let put = Command::new("node")
        .arg(root.join("deploy/local/emulators/aws.js"))
        .args([
            "put-record",
            &ports[2].to_string(),
            "core-data",
            "212313",
            &update,
        ])
        .status()
        .unwrap();
    assert!(put.success());
    let served = |agent: &ureq::Agent| {
        let mut resp = agent
            .get(&format!("http://127.0.0.1:{}/event/212313", ports[0]))
            .call()
            .unwrap();
        resp.body_mut().read_to_string().unwrap()
    };
    let start = Instant::now();
    while !served(&agent).contains("\"programName\":\"renamed\"") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the update did not reach the engine"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = Command::new(root.join("deploy/local/down"))
        .env("STACK_DIR", tmp.path())
        .status()
        .unwrap();
    assert!(down.success());
    assert!(up.wait().unwrap().success());
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after down"
        );
    }
}
