//! `POST /events` end to end, against the real binary: batches with good and bad events, the
//! body formats and limits, CORS, and admission while the sink is held.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Beacon;

const EVENT_A: &str = "6f1c5b5e-8e53-4c3a-9a55-1f0d0c7c2b11";
const EVENT_B: &str = "0b7c1f2e-5a6d-4e8f-9a0b-1c2d3e4f5a6b";

/// POST `body` to `path`: (status, headers, body).
fn post(
    b: &Beacon,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, ureq::http::HeaderMap, String) {
    let mut req = b.agent.post(&b.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req
        .send(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = String::from_utf8_lossy(&resp.body_mut().read_to_vec().unwrap()).into_owned();
    (status, headers, body)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A valid campaign of these tests that the other of two shards owns than 212313's owner.
fn other_owner() -> String {
    use beacon_engine::model::owner;
    (1..)
        .map(|i| format!("7{i}"))
        .find(|id| owner(id, 2) != owner("212313", 2))
        .unwrap()
}

/// Campaigns for these tests: 212313 and `other_owner()` valid, 900 not valid.
fn campaigns(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("campaigns.json");
    std::fs::write(
        &path,
        format!(
            r#"[{{"programId":"212313","checksum":"124","customerId":9124,"customerName":"Customer2","programName":"program2","valid":true}},
                {{"programId":"{}","checksum":"7","customerId":7,"customerName":"C7","programName":"p7","valid":true}},
                {{"programId":"900","checksum":"1","customerId":1,"customerName":"C","programName":"off","valid":false}}]"#,
            other_owner()
        ),
    )
    .unwrap();
    path
}

/// The Done-when batch: good, unknown, invalid and malformed events in one `text/plain` body
/// (sendBeacon's type); the good ones are taken, the rest named by index, and sent twice the
/// batch gives the same message ids. Two shards with owner routing: an event whose campaign
/// another shard owns crosses the mesh with its id, type, time and props.
#[test]
fn a_mixed_batch_takes_the_good_events_and_names_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let file = campaigns(tmp.path());
    let mut b = Beacon::start(
        &[
            "--shards",
            "2",
            "--routing",
            "owner",
            "--campaigns",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let batch = format!(
        r#"[{{"programId":"212313","eventId":"{EVENT_A}","type":"conversion","ts":1700000000123,
             "props":{{ "value": 12.50, "sku": "A-1" }}}},
           {{"programId":"999999"}},
           {{"programId":"900"}},
           {{"programId":"bad id!"}},
           {{"programId":"212313","eventId":"{EVENT_B}"}},
           {{"programId":"212313","props":"not an object"}}]"#
    );
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (status, headers, body) = post(
            &b,
            "/events",
            &[("content-type", "text/plain;charset=UTF-8")],
            batch.as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        assert!(headers.contains_key("x-amzn-trace-id"));
        answers.push(json(&body));
    }
    assert_eq!(answers[0], answers[1]);
    let answer = &answers[0];
    assert_eq!(answer["accepted"], 2, "{answer}");
    let rejected: Vec<(u64, u64, String)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["status"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, 404, "ProgramId not found".into()),
            (2, 403, "Program not valid".into()),
            (3, 400, "ProgramId may only hold A-Z a-z 0-9 _ -".into()),
            (5, 400, "props must be a JSON object".into()),
        ]
    );
    // A GET beside it: its event is the reference's, with the route added.
    assert_eq!(b.get("/pixel/212313", &[]).0, 204);
    let accepted = b.metric("beacon_posted_events_total{outcome=\"accepted\",shard=\"0\"}")
        + b.metric("beacon_posted_events_total{outcome=\"accepted\",shard=\"1\"}");
    assert_eq!(accepted, 4.0);
    assert!(b.terminate().success());

    let records = b.tail();
    assert_eq!(records.len(), 5, "{records:#?}");
    let posted: Vec<&serde_json::Value> = records.iter().filter(|r| r["route"] == "post").collect();
    let mut ids: Vec<&str> = posted
        .iter()
        .map(|r| r["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![EVENT_A, EVENT_A, EVENT_B, EVENT_B];
    want.sort();
    assert_eq!(ids, want, "the same batch twice: the same message ids");
    for r in &posted {
        assert_eq!(r["program_id"], "212313");
        if r["message_id"] == EVENT_A {
            assert_eq!(r["event_type"], "conversion");
            assert_eq!(r["client_ts_ms"], 1_700_000_000_123u64);
            assert_eq!(r["props"], json(r#"{"value":12.50,"sku":"A-1"}"#));
            assert!(r["received_at_ms"].as_u64().unwrap() > 1_700_000_000_123);
        } else {
            assert_eq!(r["event_type"], "custom");
            assert!(r.get("props").is_none() && r.get("client_ts_ms").is_none());
        }
    }
    let pixel = records.iter().find(|r| r["route"] == "pixel").unwrap();
    assert!(pixel.get("event_type").is_none() && pixel.get("props").is_none());
}

/// NDJSON and gzip bodies are taken; a body over the limit, a gzip bomb, too many events, a
/// body that is not JSON, the wrong media type and a slow body are refused whole, each with
/// its status, and take nothing.
#[test]
fn bodies_in_every_format_and_what_is_refused_whole() {
    let mut b = Beacon::start(
        &["--shards", "1"],
        &[("BEACON_TRACKING_BODY_READ_TIMEOUT_MS", "300")],
    );
    let ndjson = "{\"programId\":\"212312\",\"type\":\"view\"}\n{\"programId\":\"212313\"}\n\
                  {\"programId\":\"212314\",\"type\":\"click\"}\n";
    let (status, _, body) = post(
        &b,
        "/events",
        &[("content-type", "application/x-ndjson")],
        ndjson.as_bytes(),
    );
    assert_eq!(
        (status, json(&body)["accepted"].as_u64()),
        (200, Some(3)),
        "{body}"
    );
    let (status, _, body) = post(
        &b,
        "/events",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        &gzip(br#"[{"programId":"212312"},{"programId":"212313"}]"#),
    );
    assert_eq!(
        (status, json(&body)["accepted"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    let taken = 5.0;
    let accepted = || b.metric("beacon_events_accepted_total{shard=\"0\"}");
    assert_eq!(accepted(), taken);

    // 65 KiB of JSON: over the 64 KiB default.
    let filler = "x".repeat(65 << 10);
    let big = format!(r#"{{"programId":"212312","pad":"{filler}"}}"#);
    let (status, _, body) = post(
        &b,
        "/events",
        &[("content-type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("tracking.body_bytes_max"), "{body}");
    // A 64 KiB request that inflates to 10 MB: refused at the limit.
    let mut bomb_text = br#"[{"programId":"212312"}"#.to_vec();
    bomb_text.extend(std::iter::repeat_n(b' ', 10 << 20));
    bomb_text.push(b']');
    let bomb = gzip(&bomb_text);
    assert!(bomb.len() < 64 << 10);
    let (status, _, body) = post(
        &b,
        "/events",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        &bomb,
    );
    assert_eq!(status, 413, "{body}");
    let too_many = format!("[{}]", vec![r#"{"programId":"212312"}"#; 101].join(","));
    let (status, _, body) = post(&b, "/events", &[], too_many.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("events_per_request_max"), "{body}");
    // Duplicate keys, a number no double holds and a time past u64: each event refused alone.
    let (status, _, body) = post(
        &b,
        "/events",
        &[],
        br#"[{"programId":"212312","props":{"a":1,"a":2}},{"programId":"212312","props":{"n":1e400}},
            {"programId":"212312","ts":123456789012345678901234567890},{"programId":"212312","programId":"1"}]"#,
    );
    let answer = json(&body);
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    let statuses: Vec<u64> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 400, 400, 400], "{body}");
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    for broken in [
        deep.as_bytes(),
        &br#"[{"programId":"212312"},{"programId":"212313""#[..],
        b"{\"programId\":\"\xff\"}",
        b"",
        b"{\"programId\":\"212312\"} trailing",
    ] {
        let (status, _, body) = post(&b, "/events", &[("content-type", "text/plain")], broken);
        let shown: String = String::from_utf8_lossy(broken).chars().take(80).collect();
        assert_eq!(status, 400, "{shown:?}: {body}");
    }
    let (status, _, body) = post(
        &b,
        "/events",
        &[("content-type", "application/x-www-form-urlencoded")],
        br#"{"programId":"212312"}"#,
    );
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("text/plain"), "{body}");
    assert_eq!(b.get("/events", &[]).0, 405);

    // A body slower than tracking.body_read_timeout_ms (300 ms here): 408.
    let mut conn = TcpStream::connect(b.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(
        b"POST /events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n[{\"programId\"",
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));

    assert_eq!(accepted(), taken, "a refused body takes nothing");
    for (reason, n) in [
        ("body_too_large", 2.0),
        ("too_many_events", 1.0),
        ("body_not_json", 5.0),
        ("media_type", 1.0),
        ("body_timeout", 1.0),
    ] {
        let series = format!("beacon_bad_requests_total{{reason=\"{reason}\",shard=\"0\"}}");
        assert_eq!(b.metric(&series), n, "{series}");
    }
    assert!(b.terminate().success());
    let records = b.tail();
    assert_eq!(records.len(), 5);
    let types: Vec<&str> = records
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["view", "custom", "click", "custom", "custom"]);
}

/// An allowed origin gets the CORS headers on its posts and a working preflight; any other
/// origin gets none (the browser then refuses it), and its post is still answered.
#[test]
fn cors_answers_the_configured_origins_only() {
    let mut b = Beacon::start(
        &["--shards", "1"],
        &[(
            "BEACON_TRACKING_CORS_ORIGINS",
            r#"["https://shop.example", "*.example.com"]"#,
        )],
    );
    for origin in ["https://shop.example", "https://www.example.com"] {
        let (status, h, body) = post(
            &b,
            "/events",
            &[("origin", origin), ("content-type", "application/json")],
            br#"{"programId":"212312"}"#,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["vary"], "Origin");

        let mut conn = TcpStream::connect(b.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(
            format!(
                "OPTIONS /events HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let mut preflight = String::new();
        conn.read_to_string(&mut preflight).unwrap();
        let preflight = preflight.to_ascii_lowercase();
        assert!(preflight.starts_with("http/1.1 204"), "{preflight}");
        for line in [
            &format!("access-control-allow-origin: {origin}")[..],
            "access-control-allow-methods: post, options",
            "access-control-allow-headers: content-type",
            "access-control-max-age: 7200",
        ] {
            assert!(preflight.contains(line), "{line:?} missing: {preflight}");
        }
    }
    for other in ["https://evil.test", "https://example.com", "null"] {
        let (status, h, _) = post(
            &b,
            "/events",
            &[("origin", other), ("content-type", "text/plain")],
            br#"{"programId":"212312"}"#,
        );
        assert_eq!(status, 200);
        assert!(!h.contains_key("access-control-allow-origin"), "{other}");
        assert!(
            !h.contains_key("access-control-allow-credentials"),
            "{other}"
        );
    }
    assert!(b.terminate().success());
}

/// While the sink is held (its disk full: every write fails and is retried), each pixel adds a
/// batch to the queue; a probing `POST /events` (of an unknown campaign, so it adds nothing)
/// is answered 503 with `Retry-After` from 3 of 4 queued batches on, while pixels are still
/// taken until the queue is full. Every pixel answered 204 is stored once the disk has room.
#[test]
fn posts_give_way_to_pixels_while_the_sink_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = common::SmallDisk::mount(&tmp.path().join("small"), "4m");
    let dir = disk.0.join("data");
    let mut b = Beacon::start_in(
        &dir,
        &["--shards", "1"],
        &[
            ("BEACON_BATCH_RECORDS_MAX", "1"),
            ("BEACON_SINK_QUEUE_BATCHES_MAX", "4"),
        ],
    );
    assert_eq!(b.get("/pixel/212312", &[]).0, 204);
    // Fill the disk: from now on the sink's writes fail.
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    drop(f);

    let mut taken = 1; // the first pixel
    let mut first_post_503 = None;
    let mut first_get_503 = None;
    for i in 0..20 {
        let (status, h, body) = post(
            &b,
            "/events",
            &[("content-type", "application/json")],
            br#"{"programId":"999999"}"#,
        );
        match status {
            200 => assert_eq!(json(&body)["rejected"][0]["status"], 404, "{body}"),
            503 => {
                assert_eq!(h["retry-after"], "1");
                first_post_503.get_or_insert(i);
            }
            other => panic!("POST {i}: {other} {body}"),
        }
        match b.get("/pixel/212312", &[]).0 {
            204 => taken += 1,
            503 => {
                first_get_503.get_or_insert(i);
            }
            other => panic!("GET {i}: {other}"),
        }
        if first_get_503.is_some() {
            break;
        }
    }
    let (post_503, get_503) = (
        first_post_503.unwrap(),
        first_get_503.expect("GETs refused at a full queue"),
    );
    assert!(
        post_503 < get_503,
        "posts refused from round {post_503}, pixels from {get_503}"
    );
    assert!(b.metric("beacon_posts_shed_total{shard=\"0\"}") >= 1.0);
    assert!(b.metric("beacon_events_refused_total{reason=\"backpressure\",shard=\"0\"}") >= 1.0);

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.get("/health/ready", &[]).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready 20 s after the disk had room"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(b.terminate().success());
    assert_eq!(common::tail(&dir).len() as u64, taken);
}
