//! Black-box tests of the engine: the real binary, real sockets, real segment files.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Beacon;
use serde_json::Value;

#[test]
fn reference_routes_answer_like_the_reference() {
    let mut b = Beacon::start(&[], &[]);
    let (status, headers, body) = b.get("/event/212313", &[("User-Agent", "curl/7.54.0")]);
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    // serde_json's map is sorted; check the wire order on the text itself.
    assert_eq!(keys.len(), 8);
    let order = [
        "userAgent",
        "programId",
        "programName",
        "checksum",
        "customerId",
        "customerName",
        "messageId",
        "valid",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| body.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order {body}"
    );
    assert_eq!(v["userAgent"], "curl/7.54.0");
    assert_eq!(v["programName"], "program2");
    assert_eq!(v["checksum"], "124");
    assert_eq!(v["customerId"], 9124);
    assert_eq!(v["customerName"], "Customer2");
    assert_eq!(v["valid"], true);
    let message_id = v["messageId"].as_str().unwrap().to_string();
    assert_eq!(message_id.len(), 36);
    assert!(headers["x-amzn-trace-id"]
        .to_str()
        .unwrap()
        .starts_with("Root=1-"));

    let (status, _, body) = b.get("/event/1", &[]);
    assert_eq!((status, body.as_str()), (404, "\"ProgramId not found\""));

    let (status, headers, body) = b.get("/pixel/212312", &[("X-Amzn-Trace-Id", "Root=1-abc-def")]);
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(headers["x-amzn-trace-id"], "Root=1-abc-def");

    let (status, headers, body) = b.get(
        "/pixel/212314",
        &[
            ("Accept", "image/webp,image/*"),
            // An ALB appends the address it got the request from; the left is the client's word.
            ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/gif");
    assert!(body.starts_with("GIF89a"));

    assert_eq!(b.get("/health/check", &[]).0, 200);
    let (status, _, body) = b.get("/health/ready", &[]);
    assert_eq!(status, 200, "{body}");

    // A request with no User-Agent at all is still an event (the reference loses it).
    let raw = b.raw(b"GET /event/212312 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.contains("{\"userAgent\":\"\",\"programId\":\"212312\""),
        "{raw}"
    );

    assert_eq!(b.terminate().code(), Some(0));
    let events = b.tail();
    assert_eq!(events.len(), 4, "{events:?}");
    let first = events
        .iter()
        .find(|e| e["message_id"] == message_id.as_str())
        .expect("the /event request's event");
    assert_eq!(first["user_agent"], "curl/7.54.0");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert_eq!(first["customer_id"], 9124);
    let pixel = events.iter().find(|e| e["program_id"] == "212314").unwrap();
    assert_eq!(pixel["client_ip"], "203.0.113.7");
    let traced = events
        .iter()
        .find(|e| e["program_id"] == "212312" && e["user_agent"] != "")
        .unwrap();
    assert_eq!(traced["trace_id"], "Root=1-abc-def");
    assert!(events.iter().any(|e| e["user_agent"] == ""));
}

#[test]
fn bad_input_gets_its_status_and_the_server_keeps_serving() {
    let b = Beacon::start(&[], &[]);
    let long_id = "9".repeat(129);
    let cases: Vec<(String, u16)> = vec![
        ("/event/".into(), 400),
        (format!("/event/{long_id}"), 400),
        ("/event/a.b".into(), 400),
        ("/pixel/%00".into(), 400),
        ("/event/212313/extra".into(), 400),
        (format!("/event/{}", "a".repeat(2000)), 414),
        ("/nothing".into(), 404),
        ("/event".into(), 404),
    ];
    for (path, want) in &cases {
        assert_eq!(b.get(path, &[]).0, *want, "GET {path}");
    }
    let post = b.raw(
        b"POST /event/212313 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let huge = format!(
        "GET /event/212313 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let answer = b.raw(huge.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let garbage = b.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let non_utf8_ua = b.raw(b"GET /event/212313 HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xfe bot\r\nConnection: close\r\n\r\n");
    assert!(non_utf8_ua.starts_with("HTTP/1.1 200"), "{non_utf8_ua}");

    // Still serving, and every refusal was counted.
    assert_eq!(b.get("/event/212313", &[]).0, 200);
    let metrics = b.get("/metrics", &[]).2;
    let bad: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("beacon_bad_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        bad, 9.0,
        "400s, 414, 405, the 431 and the non-HTTP bytes are counted as bad requests"
    );
    // Summed over shards: lines of `family` holding every one of `labels`.
    let series = |family: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(family) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let head_too_large = ["reason=\"head_too_large\""];
    assert_eq!(series("beacon_bad_requests_total{", &head_too_large), 1.0);
    let other_431 = ["route=\"other\"", "status=\"431\""];
    assert_eq!(series("beacon_requests_total{", &other_431), 1.0);
}

#[test]
fn ten_thousand_requests_then_sigterm_leave_exactly_ten_thousand_events() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 1250;
    let mut b = Beacon::start(&["--synthetic-campaigns", "1000"], &[]);
    let url = b.url("");
    let ids: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let url = url.clone();
                s.spawn(move || {
                    let agent = common::agent();
                    (0..PER_CLIENT)
                        .map(|i| {
                            let id = match i % 4 {
                                0 => "212313".to_string(),
                                _ => (1_000_000 + (c * PER_CLIENT + i) % 1000).to_string(),
                            };
                            let mut resp = agent.get(&format!("{url}/event/{id}")).call().unwrap();
                            assert_eq!(resp.status(), 200);
                            let body = resp.body_mut().read_to_string().unwrap();
                            let v: Value = serde_json::from_str(&body).unwrap();
                            v["messageId"].as_str().unwrap().to_string()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let answered: HashSet<String> = ids.into_iter().flatten().collect();
    assert_eq!(
        answered.len(),
        CLIENTS * PER_CLIENT,
        "message ids are unique"
    );
    assert_eq!(b.terminate().code(), Some(0));
    let events = b.tail();
    assert_eq!(events.len(), CLIENTS * PER_CLIENT);
    let written: HashSet<String> = events
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        written, answered,
        "every response's message id is in the sink, and nothing else"
    );
}

#[test]
fn owner_routing_handles_every_request_for_a_campaign_on_its_owner() {
    let b = Beacon::start(&["--routing", "owner", "--shards", "2"], &[]);
    // Many short connections: the kernel spreads them over both shards' sockets.
    for _ in 0..60 {
        let answer = b.raw(b"GET /pixel/212313 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }
    let accepted = |shard: usize| {
        b.metric(&format!(
            "beacon_events_accepted_total{{shard=\"{shard}\"}}"
        ))
    };
    let per_shard = [accepted(0), accepted(1)];
    assert!(
        per_shard.contains(&60.0) && per_shard.contains(&0.0),
        "all on one shard: {per_shard:?}"
    );
    let bytes = b.metric("beacon_event_bytes_total{shard=\"0\"}")
        + b.metric("beacon_event_bytes_total{shard=\"1\"}");
    assert!(
        bytes >= 60.0 * 100.0,
        "every event's encoded bytes are counted: {bytes}"
    );
    // The standard process collector counts whole CPU seconds: present, though 0 this early.
    assert!(
        b.get("/metrics", &[])
            .2
            .contains("\nprocess_cpu_seconds_total "),
        "process CPU is exported"
    );
    let forwarded = b.metric("beacon_forwarded_total{kind=\"request\",shard=\"0\"}")
        + b.metric("beacon_forwarded_total{kind=\"request\",shard=\"1\"}");
    assert!(
        forwarded > 0.0,
        "some connections landed on the other shard and were forwarded"
    );
}

#[test]
fn local_routing_sends_only_misses_to_the_owner() {
    let b = Beacon::start(&["--routing", "local", "--shards", "2"], &[]);
    for _ in 0..40 {
        let answer = b.raw(b"GET /pixel/212313 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }
    let misses = b.metric("beacon_forwarded_total{kind=\"miss\",shard=\"0\"}")
        + b.metric("beacon_forwarded_total{kind=\"miss\",shard=\"1\"}");
    assert!(
        misses <= 1.0,
        "after the first load every shard reads the owner's entry: {misses}"
    );
    let lookups = |o: &str| {
        b.metric(&format!(
            "beacon_l1_lookups_total{{outcome=\"{o}\",shard=\"0\"}}"
        )) + b.metric(&format!(
            "beacon_l1_lookups_total{{outcome=\"{o}\",shard=\"1\"}}"
        ))
    };
    assert_eq!(lookups("miss"), 1.0);
    assert_eq!(lookups("hit"), 39.0);
}

#[test]
fn header_read_timeout_closes_slow_and_idle_connections() {
    let b = Beacon::start(&[], &[("BEACON_HEADER_READ_TIMEOUT_MS", "300")]);
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /event/212313 HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "closed by the header timeout, not the client's 5 s: {waited:?}"
    );
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
}

#[test]
fn records_survive_restarts_in_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    for format in ["rkyv", "protobuf"] {
        let mut b = Beacon::start_in(&dir, &["--record-format", format], &[]);
        for _ in 0..5 {
            assert_eq!(b.get("/event/212312", &[("User-Agent", format)]).0, 200);
        }
        assert_eq!(b.terminate().code(), Some(0));
    }
    let events = common::tail(&dir);
    assert_eq!(events.len(), 10);
    // rkyv records carry beacon's fields; protobuf ones the reference's.
    assert_eq!(
        events.iter().filter(|e| e["user_agent"] == "rkyv").count(),
        5
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["userAgent"] == "protobuf")
            .count(),
        5
    );
}

#[test]
fn config_errors_name_the_field() {
    let out = std::process::Command::new(common::bin())
        .args(["config", "check", "--shards", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`shards` = 0: must be between 1 and 256")
    );
    let out = std::process::Command::new(common::bin())
        .args(["config", "check"])
        .env("BEACON_BATCH_LINGER_MS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("batch_linger_ms"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(common::bin())
        .args(["config", "check", "--routing", "owner"])
        .env("BEACON_SHARDS", "3")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("shards = 3") && stdout.contains("routing = \"owner\""),
        "{stdout}"
    );
}

#[test]
fn a_too_small_memlock_limit_is_one_clear_line() {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -l 64 && exec {} serve --listen 127.0.0.1:0 --shards 2",
            common::bin()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ulimit -l") && stderr.contains("io_memory_bytes"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn a_second_beacon_on_the_same_data_dir_or_port_exits_2_and_the_first_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = Beacon::start_in(&data, &["--shards", "2"], &[]);
    let mut answered = Vec::new();
    for _ in 0..30 {
        let (status, _, body) = first.get("/event/212313", &[]);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        answered.push(v["messageId"].as_str().unwrap().to_string());
    }

    // The same data directory, another port.
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another beacon"), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");

    // The same port, another data directory.
    let other = tmp.path().join("other");
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--listen", &first.addr.to_string(), "--data-dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process is listening there"), "{err}");

    for _ in 0..30 {
        let (status, _, body) = first.get("/event/212314", &[]);
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        answered.push(v["messageId"].as_str().unwrap().to_string());
    }
    assert!(first.terminate().success());
    let mut stored: Vec<String> = common::tail(&data)
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    answered.sort();
    assert_eq!(stored, answered, "every answered event, once");
}

#[test]
fn head_makes_no_event_and_the_client_ip_is_what_the_alb_saw() {
    let mut b = Beacon::start(&["--shards", "1"], &[]);
    let head = b.raw(b"HEAD /pixel/212313 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    let (status, _, _) = b.get("/pixel/212313/", &[]);
    assert_eq!(status, 204, "a trailing slash is the same campaign");
    let (status, _, _) = b.get(
        "/pixel/212312",
        &[("X-Forwarded-For", "6.6.6.6, 203.0.113.7")],
    );
    assert_eq!(status, 204);
    assert!(b.terminate().success());
    let events = b.tail();
    assert_eq!(events.len(), 2, "HEAD made no event: {events:?}");
    let forwarded = events.iter().find(|e| e["program_id"] == "212312").unwrap();
    assert_eq!(forwarded["client_ip"], "203.0.113.7");
}

#[test]
fn tail_refuses_what_is_not_a_data_directory_and_fails_on_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let tail = |dir: &std::path::Path| {
        std::process::Command::new(common::bin())
            .arg("tail")
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = tail(tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no beacon data"));

    let data = tmp.path().join("data");
    let mut b = Beacon::start_in(&data, &["--shards", "1"], &[]);
    assert_eq!(b.get("/pixel/212313", &[]).0, 204);
    assert!(b.terminate().success());
    let out = tail(&data.join("shard-0"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one shard's folder"));
    assert!(tail(&data).status.success());

    let seg = std::fs::read_dir(data.join("shard-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let out = tail(&data);
    assert_eq!(out.status.code(), Some(2), "a torn record is not success");
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn"));
}

#[test]
fn sixteen_shards_fit_a_common_8_mib_memlock_limit_with_one_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, line) = serve_under_ulimit(
        "-l 8192",
        &["--shards", "16"],
        &tmp.path().join("data"),
        &[],
    );
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let agent = common::agent();
    let status = agent
        .get(format!("http://{addr}/pixel/212313"))
        .call()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("locked-memory limit holds"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
}

/// Message ids of every event under `dir`, tolerating the torn final frames a `kill -9`
/// leaves (and nothing else).
fn stored_ids(dir: &std::path::Path) -> HashSet<String> {
    let out = std::process::Command::new(common::bin())
        .arg("tail")
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.starts_with("beacon tail: ")) {
        assert!(line.contains("torn record at end of file"), "{stderr}");
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["message_id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn durable_acks_survive_kill_9_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut answered = Vec::new();
    for kill in 0..5usize {
        // Both routings: with `owner` the owner shard holds the answer until its write.
        let routing = ["local", "owner"][kill % 2];
        let b = Beacon::start_in(
            &dir,
            &[
                "--ack",
                "durable",
                "--routing",
                routing,
                "--shards",
                "2",
                "--synthetic-campaigns",
                "1000",
            ],
            &[],
        );
        answered.extend(common::answered_until_kill_9(&b));
    }
    let stored = stored_ids(&dir);
    eprintln!("{} events answered 200 over 5 kills", answered.len());
    let lost: Vec<&String> = answered.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered events lost over 5 kills, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(3)]
    );
}

/// Sends `request` on `conn` and reads one whole response (head and `content-length` body).
fn exchange(conn: &mut TcpStream, request: &str) -> String {
    conn.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

#[test]
fn health_and_metrics_answer_at_the_connection_cap() {
    let b = Beacon::start(
        &["--shards", "1"],
        &[("BEACON_CONNECTIONS_PER_SHARD_MAX", "2")],
    );
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    // Two keep-alive clients take the whole cap.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(b.addr).unwrap())
        .collect();
    for c in held.iter_mut() {
        assert!(exchange(c, &get("/event/212313")).starts_with("HTTP/1.1 200"));
    }
    let health = b.raw(get("/health/check").as_bytes());
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.to_ascii_lowercase().contains("connection: close"),
        "{health}"
    );
    let metrics = b.raw(get("/metrics").as_bytes());
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("beacon_connections_refused_total{shard=\"0\"} 2"),
        "{metrics}"
    );
    let tracking = b.raw(get("/event/212313").as_bytes());
    assert!(tracking.starts_with("HTTP/1.1 503"), "{tracking}");
    // The clients that hold the cap are served as before.
    for c in held.iter_mut() {
        assert!(exchange(c, &get("/pixel/212313")).starts_with("HTTP/1.1 204"));
    }
    // Past the cap and the 16 connections kept for health checks, connections are closed
    // without an answer.
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(b.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let closed = b.raw(get("/health/check").as_bytes());
    assert_eq!(closed, "", "closed at once");
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        b.raw(get("/health/check").as_bytes())
            .starts_with("HTTP/1.1 200"),
        "room again"
    );
}

#[test]
fn a_half_sent_head_gets_408_and_an_idle_connection_just_closes() {
    let b = Beacon::start(&[], &[("BEACON_HEADER_READ_TIMEOUT_MS", "300")]);
    let partial = b.raw(b"GET /event/212313 HTTP/1.1\r\nHost: x\r\n");
    assert!(partial.starts_with("HTTP/1.1 408"), "{partial:?}");
    let idle = b.raw(b"");
    assert_eq!(idle, "", "an idle connection closes without an answer");
    // After a whole exchange, a keep-alive connection that idles closes without a 408 too.
    let mut conn = TcpStream::connect(b.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert!(
        exchange(&mut conn, "GET /pixel/212313 HTTP/1.1\r\nHost: x\r\n\r\n")
            .starts_with("HTTP/1.1 204")
    );
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert_eq!(
        b.metric("beacon_requests_total{route=\"other\",shard=\"0\",status=\"408\"}")
            + b.metric("beacon_requests_total{route=\"other\",shard=\"1\",status=\"408\"}"),
        1.0
    );
}

/// Starts `beacon serve ARGS` under `sh -c "ulimit ...; exec beacon"`, with `env`; the child
/// and its first line of standard output (the ready line, or nothing if it stopped).
fn serve_under_ulimit(
    ulimit: &str,
    args: &[&str],
    data_dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
        .arg(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (child, line)
}

/// `beacon serve` under `ulimit -n limit`: (exit status if it stopped, stderr so far).
fn serve_with_nofile(limit: u32, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, line) = serve_under_ulimit(
        &format!("-n {limit}"),
        &["--shards", "2"],
        &tmp.path().join("data"),
        env,
    );
    let status = if line.contains("listening") {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(child.wait().unwrap().code(), Some(0));
        None
    } else {
        child.wait().unwrap().code()
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}

#[test]
fn the_open_files_limit_sizes_the_connection_cap_or_stops_the_start() {
    // Set, a cap the limit cannot hold stops the start with the fix.
    let (status, stderr) = serve_with_nofile(400, &[("BEACON_CONNECTIONS_PER_SHARD_MAX", "1000")]);
    assert_eq!(status, Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("ulimit -n") && last.contains("connections_per_shard_max"),
        "{stderr}"
    );
    // Unset, the cap shrinks to what the limit holds, with one warning line, and it serves.
    let (status, stderr) = serve_with_nofile(600, &[]);
    assert_eq!(status, None, "{stderr}");
    assert_eq!(
        stderr.matches("open-files limit holds").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn the_l1_size_is_a_gauge() {
    let b = Beacon::start(&["--shards", "1"], &[]);
    assert_eq!(b.metric("beacon_l1_entries{shard=\"0\"}"), 0.0);
    assert_eq!(b.get("/event/212313", &[]).0, 200);
    assert_eq!(b.get("/event/1", &[]).0, 404);
    std::thread::sleep(Duration::from_millis(300));
    // One campaign and one unknown id (cached as a negative entry).
    assert_eq!(b.metric("beacon_l1_entries{shard=\"0\"}"), 2.0);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn memory_of_closed_connections_goes_back_to_the_system() {
    let b = Beacon::start(&[], &[]);
    std::thread::sleep(Duration::from_millis(300));
    let base = rss_kib(b.pid());
    let mut conns: Vec<TcpStream> = (0..3000)
        .map(|_| TcpStream::connect(b.addr).unwrap())
        .collect();
    for c in conns.iter_mut() {
        c.write_all(b"GET /pixel/212313 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    for c in conns.iter_mut() {
        let mut buf = [0u8; 256];
        assert!(c.read(&mut buf).unwrap() > 0);
    }
    let held = rss_kib(b.pid());
    assert!(
        held > base + 30_000,
        "3000 connections: {base} -> {held} KiB"
    );
    drop(conns);
    // Shards collect their allocator's heap once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let now = rss_kib(b.pid());
        if now < base + (held - base) / 4 || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        settled < base + (held - base) / 4,
        "RSS {base} KiB at start, {held} with 3000 connections, {settled} after they closed"
    );
}

#[test]
fn the_port_is_closed_when_the_process_has_exited() {
    // A ring keeps an abandoned accept's socket until the kernel tears the ring down, which
    // it does after exit; without an explicit shutdown of the listener the port went on
    // taking connections in about one exit in twenty.
    for round in 0..20 {
        let mut b = Beacon::start(&[], &[]);
        assert_eq!(b.get("/pixel/212312", &[]).0, 204);
        let addr = b.addr;
        assert!(b.terminate().success());
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "round {round}: {addr} still took a connection after beacon exited"
        );
    }
}

/// The data directory's disk fills under load: new events get 503 and `/health/ready` says
/// which shards cannot write, no shard dies, and once there is room again every event that was
/// answered 200 is stored, exactly once, in files that read back without a problem.
#[test]
fn a_full_disk_refuses_new_events_and_keeps_every_answered_one() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let disk = common::SmallDisk::mount(&tmp.path().join("small"), "1m");
    let dir = disk.0.join("data");
    let mut b = Beacon::start_in(
        &dir,
        &["--shards", "2", "--synthetic-campaigns", "1000"],
        &[],
    );
    let stop = AtomicBool::new(false);
    let url = b.url("");
    let answered = std::thread::scope(|s| {
        let load = s.spawn(|| common::hammer(&url, 8, &stop));
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    });
    let (status, _, body) = b.get("/health/ready", &[]);
    assert_eq!(status, 503, "the disk should be full by now: {body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        !ready["sink_failing_shards"].as_array().unwrap().is_empty(),
        "{body}"
    );
    let (status, _, _) = b.get("/event/1000001", &[]);
    assert_eq!(status, 503, "a new event while nothing can be written");
    assert_eq!(b.get("/health/check", &[]).0, 200, "the shards still serve");

    disk.grow("64m");
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.get("/health/ready", &[]).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "still not ready 20 s after the disk had room again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b.get("/event/1000002", &[]).0, 200);
    assert!(b.terminate().success());

    // Every record, with `tail` reporting no problem at all: the short writes were cut off.
    let records = common::tail(&dir);
    let mut stored = HashSet::new();
    for r in &records {
        let id = r["message_id"].as_str().unwrap().to_string();
        assert!(stored.insert(id.clone()), "{id} stored twice");
    }
    let lost = answered.iter().filter(|id| !stored.contains(*id)).count();
    eprintln!(
        "{} answered 200 before the disk filled up, {} records stored",
        answered.len(),
        records.len()
    );
    assert!(answered.len() > 1000, "only {} answered", answered.len());
    assert_eq!(lost, 0, "{lost} of {} answered events lost", answered.len());
}

/// GET `path` on an open keep-alive connection: (status, body).
fn get_on(conn: &mut TcpStream, path: &str) -> (u16, String) {
    let text = exchange(conn, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The sum of a metric's series over every shard, from a `/metrics` text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Shard `shard`'s segment files, in order (none if it has no directory yet).
fn shard_segments(dir: &std::path::Path, shard: usize) -> Vec<std::path::PathBuf> {
    beacon_engine::embedded::segments_in(&dir.join(format!("shard-{shard}")))
        .map(|found| found.into_iter().map(|(_, path)| path).collect())
        .unwrap_or_default()
}

/// Shards whose newest segment file is empty: the spare, created ahead of the roll.
fn spare_segments(dir: &std::path::Path) -> usize {
    (0..2)
        .filter(|&s| {
            shard_segments(dir, s)
                .last()
                .is_some_and(|f| f.metadata().unwrap().len() == 0)
        })
        .count()
}

fn segment_files(dir: &std::path::Path) -> usize {
    (0..2).map(|s| shard_segments(dir, s).len()).sum()
}

#[test]
fn out_of_descriptors_at_run_time_new_connections_close_and_the_sink_goes_on_writing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Small segments: both shards roll over to new files, each a new descriptor, every second
    // or so, all through the time the process has none to spare.
    let mut b = Beacon::start(
        &["--shards", "2", "--synthetic-campaigns", "1000"],
        &[("BEACON_SEGMENTS_SEGMENT_BYTES_MAX", "1048576")],
    );
    let mut admin = TcpStream::connect(b.addr).unwrap();
    admin
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(get_on(&mut admin, "/health/check").0, 200);
    let stop = AtomicBool::new(false);
    let url = b.url("");
    let pid = b.pid();
    let mut idle = Vec::new();
    let (answered, during) = std::thread::scope(|s| {
        let load = s.spawn(|| common::hammer(&url, 8, &stop));
        std::thread::sleep(Duration::from_secs(1));
        // The open-files limit drops, at run time, to 160 more than the process holds now: room
        // for 32 more connections before the last 128 descriptors, which beacon keeps.
        // (Lowering another process's limit needs only the same user.)
        let limit = (open_descriptors(pid) + 160) as u64;
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: prlimit reads `lim`; the pid is our running child.
        let set =
            unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
        assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(300));
        // Far more connections than that: the ones over are closed at once.
        for _ in 0..400 {
            if let Ok(c) = TcpStream::connect_timeout(&b.addr, Duration::from_millis(200)) {
                idle.push(c);
            }
        }
        let (_, before) = get_on(&mut admin, "/metrics");
        let files_before = segment_files(&b.data_dir);
        std::thread::sleep(Duration::from_secs(4));
        let (_, after) = get_on(&mut admin, "/metrics");
        let files_after = segment_files(&b.data_dir);
        let spares = spare_segments(&b.data_dir);
        let descriptors = open_descriptors(pid);
        let (ready, body) = get_on(&mut admin, "/health/ready");
        stop.store(true, Ordering::Relaxed);
        let answered = load.join().unwrap();
        let during = [
            metric_sum(&after, "beacon_events_accepted_total")
                - metric_sum(&before, "beacon_events_accepted_total"),
            metric_sum(&after, "beacon_accept_errors_total"),
            metric_sum(&after, "beacon_sink_errors_total"),
            (files_after - files_before) as f64,
            f64::from(ready),
            spares as f64,
            (limit as usize).saturating_sub(descriptors) as f64,
        ];
        eprintln!("while out of descriptors: {during:?}, ready: {body}");
        (answered, during)
    });
    let [events, accept_errors, sink_errors, new_segments, ready, spares, free] = during;
    assert!(
        accept_errors > 0.0,
        "no accept failed: the limit did not bite"
    );
    assert!(
        free >= 100.0,
        "connections took the reserve: {free} descriptors left"
    );
    assert_eq!(spares, 2.0, "each shard holds its next segment file open");
    assert!(
        events > 1000.0,
        "open connections stalled: {events} events in 4 s"
    );
    assert!(
        new_segments >= 2.0,
        "no segment rolled over: {new_segments}"
    );
    assert_eq!(sink_errors, 0.0, "the sink could not open a segment");
    assert_eq!(ready, 200.0, "not ready while out of descriptors");
    // Once the idle connections close, new ones are served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&b.addr, Duration::from_millis(500))
        .map(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            get_on(&mut c, "/health/check").0
        })
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "no new connection served after");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(b.terminate().success());
    let stored: HashSet<String> = b
        .tail()
        .iter()
        .map(|r| r["message_id"].as_str().unwrap().to_string())
        .collect();
    let lost = answered.iter().filter(|id| !stored.contains(*id)).count();
    assert_eq!(lost, 0, "{lost} of {} answered events lost", answered.len());
}

/// `beacon serve` under `strace -ff -e trace=TRACE`: runs `during` with the listening address,
/// stops beacon (strace's child) and returns the trace.
fn serve_under_strace(
    trace_filter: &str,
    shards: &str,
    env: &[(&str, &str)],
    during: impl FnOnce(&str),
) -> String {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    let mut cmd = std::process::Command::new("strace");
    // -ff: one file a thread, so no call is split into `<unfinished ...>` and `resumed` lines.
    cmd.args(["-ff", "-qq", "-e", &format!("trace={trace_filter}"), "-o"])
        .arg(&trace)
        .arg(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            shards,
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut strace = cmd
        .spawn()
        .expect("strace runs (scripts/test installs it: apt-get install strace)");
    let mut line = String::new();
    std::io::BufReader::new(strace.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = common::listen_addr(&line);
    during(&addr);
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", strace.id())).unwrap();
    for pid in children.split_whitespace() {
        unsafe { libc::kill(pid.parse().unwrap(), libc::SIGTERM) };
    }
    assert!(strace.wait().unwrap().success());
    // `trace.TID` for each thread, the main thread's (the lowest id) first.
    let mut files: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let tid = path
                .file_name()?
                .to_str()?
                .strip_prefix("trace.")?
                .parse()
                .ok()?;
            Some((tid, path))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|(_, path)| std::fs::read_to_string(path).unwrap())
        .collect()
}

/// The flags of every io_uring ring `beacon serve` sets up (`(flags, succeeded)`), as the kernel
/// was asked for them, once the server is listening (every shard's rings exist by then).
fn ring_setups_under_strace(shards: &str, env: &[(&str, &str)]) -> Vec<(String, bool)> {
    serve_under_strace("io_uring_setup", shards, env, |_| {})
        .lines()
        .filter(|l| l.contains("io_uring_setup("))
        .map(|l| {
            let flags = l.split("flags=").nth(1).unwrap().split(',').next().unwrap();
            let fd: i64 = l.rsplit("= ").next().unwrap().trim().parse().unwrap_or(-1);
            (flags.to_string(), fd >= 0)
        })
        .collect()
}

#[test]
fn shard_rings_are_set_up_without_completion_interrupts() {
    // As the kernel is asked: every ring but glommio's polled storage ring has COOP_TASKRUN
    // (the process's first ring is beacon's own preflight probe, made before any shard).
    let setups = ring_setups_under_strace("2", &[]);
    let (probe, rings) = setups.split_first().expect("io_uring_setup calls");
    assert_eq!(probe, &("0".to_string(), true), "the preflight probe");
    let plain: Vec<_> = rings
        .iter()
        .filter(|(f, _)| !f.contains("IOPOLL"))
        .collect();
    assert_eq!(
        rings.len() - plain.len(),
        2,
        "one polled ring a shard: {setups:?}"
    );
    assert!(
        plain.len() >= 4,
        "a main and a latency ring a shard: {setups:?}"
    );
    for (flags, ok) in &plain {
        assert!(*ok && flags == "IORING_SETUP_COOP_TASKRUN", "{setups:?}");
    }
    // Switched off, the rings are made as glommio asks.
    let off = ring_setups_under_strace("2", &[("BEACON_IO_URING_COOP_TASKRUN", "false")]);
    assert!(!off.iter().any(|(f, _)| f.contains("COOP")), "{off:?}");

    // What /metrics says, on and off.
    let coop = "beacon_io_uring_rings{setup=\"coop_taskrun\"}";
    let interrupting = "beacon_io_uring_rings{setup=\"interrupting\"}";
    let b = Beacon::start(&["--shards", "2"], &[]);
    assert!(b.metric(coop) >= 4.0, "{}", b.metric(coop));
    assert_eq!(b.metric(interrupting), 0.0);
    assert_eq!(b.metric("beacon_io_uring_rings{setup=\"polled\"}"), 2.0);
    let b = Beacon::start(
        &["--shards", "2"],
        &[("BEACON_IO_URING_COOP_TASKRUN", "false")],
    );
    assert_eq!(b.metric(coop), 0.0);
    assert!(b.metric(interrupting) >= 4.0, "{}", b.metric(interrupting));
}

#[test]
fn shards_park_with_a_fence_of_their_own_not_a_process_wide_barrier() {
    // 200 requests one after another on 2 shards: a shard sleeps between them, and each sleep
    // runs glommio's barrier. By default none reaches the kernel (only glommio's start-up query
    // and registration do); with park_barrier = "membarrier" they do.
    let requests = |addr: &str| {
        let agent = ureq::Agent::new_with_defaults();
        for _ in 0..200 {
            let resp = agent.get(&format!("http://{addr}/event/212313")).call();
            assert_eq!(resp.unwrap().status().as_u16(), 200);
        }
    };
    let expedited = |trace: &str| {
        trace
            .lines()
            .filter(|l| l.contains("membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED,"))
            .count()
    };
    let fenced = serve_under_strace("membarrier", "2", &[], requests);
    assert!(
        fenced.contains("MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED"),
        "{fenced}"
    );
    assert_eq!(expedited(&fenced), 0, "{fenced}");
    let env = [("BEACON_PARK_BARRIER", "membarrier")];
    let process_wide = serve_under_strace("membarrier", "2", &env, requests);
    assert!(expedited(&process_wide) >= 100, "{process_wide}");

    // What /metrics and the start-up log say.
    let fence = "beacon_shard_park_barriers_total{kind=\"fence\"}";
    let membarrier = "beacon_shard_park_barriers_total{kind=\"membarrier\"}";
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let b = Beacon::start_logging(
        &tmp.path().join("data"),
        &["--shards", "2"],
        &[],
        Some(&log),
    );
    for _ in 0..50 {
        assert_eq!(b.get("/event/212313", &[]).0, 200);
    }
    assert!(b.metric(fence) >= 25.0, "{}", b.metric(fence));
    assert_eq!(b.metric(membarrier), 0.0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("shards park with a fence of their own"),
        "{text}"
    );
    let b = Beacon::start(&["--shards", "2"], &env);
    for _ in 0..50 {
        assert_eq!(b.get("/event/212313", &[]).0, 200);
    }
    assert_eq!(b.metric(fence), 0.0);
    assert!(b.metric(membarrier) >= 25.0, "{}", b.metric(membarrier));
}

#[test]
fn with_an_admin_listener_metrics_and_readiness_are_only_there() {
    let b = Beacon::start(&["--shards", "2", "--admin-listen", "127.0.0.1:0"], &[]);
    let admin = b
        .ready_line
        .split("admin on http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no admin address in {:?}", b.ready_line))
        .to_string();
    let on_admin = |path: &str| {
        let mut resp = b
            .agent
            .get(&format!("http://{admin}{path}"))
            .call()
            .unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        (resp.status().as_u16(), body)
    };
    assert_eq!(b.get("/event/212313", &[]).0, 200);
    // Public: the tracking routes and the load balancer's health check; no metrics, no readiness.
    assert_eq!(b.get("/metrics", &[]).0, 404);
    assert_eq!(b.get("/health/ready", &[]).0, 404);
    assert_eq!(b.get("/health/check", &[]).0, 200);
    // Admin: the three admin routes, nothing else.
    let (status, metrics) = on_admin("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("beacon_events_accepted_total"),
        "{metrics}"
    );
    assert_eq!(on_admin("/health/ready").0, 200);
    assert_eq!(on_admin("/health/check").0, 200);
    assert_eq!(on_admin("/event/212313").0, 404);
    assert_eq!(on_admin("/pixel/212313").0, 404);
    // The refusals are counted, on route `other`.
    let (_, metrics) = on_admin("/metrics");
    let not_found: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("beacon_requests_total{route=\"other\","))
        .filter(|l| l.contains("status=\"404\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(not_found >= 4.0, "{not_found}");
    // Without the setting everything is on the one listener, as before.
    let plain = Beacon::start(&["--shards", "1"], &[]);
    assert_eq!(plain.get("/metrics", &[]).0, 200);
    assert_eq!(plain.get("/health/ready", &[]).0, 200);
}
