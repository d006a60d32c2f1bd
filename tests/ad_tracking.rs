//! Ad tracking end to end, against the real binary: click redirects (and never an open
//! redirect), the visitor cookie, privacy signals, bots and `robots.txt`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Beacon;

const LANDING: &str = "https://landing.example/ad?c=1";

/// 212313 with a landing URL, 900 not valid.
fn campaigns(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("campaigns.json");
    std::fs::write(
        &path,
        format!(
            r#"[{{"programId":"212313","checksum":"124","customerId":9124,"customerName":"Customer2","programName":"program2","valid":true,"landingUrl":"{LANDING}"}},
                {{"programId":"900","checksum":"1","customerId":1,"customerName":"C","programName":"off","valid":false}}]"#
        ),
    )
    .unwrap();
    path
}

/// `GET path` with `headers` on a fresh connection, redirects not followed: (status, head, body).
fn get_raw(b: &Beacon, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let text = b.raw(req.as_bytes());
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer to {path}: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn encode(url: &str) -> String {
    url.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A click to an allowed host (or, without `url`, to the campaign's landing URL) answers 302
/// with exactly that `Location` and writes a click event; every open-redirect trick gets 400
/// and no `Location`; unknown and invalid campaigns get 404 and 403.
#[test]
fn clicks_go_to_allowed_hosts_only() {
    let tmp = tempfile::tempdir().unwrap();
    let file = campaigns(tmp.path());
    let mut b = Beacon::start(
        &["--shards", "2", "--campaigns", file.to_str().unwrap()],
        &[(
            "BEACON_TRACKING_REDIRECT_DOMAINS",
            r#"["shop.example.com", "*.brand.example"]"#,
        )],
    );
    let to = "https://shop.example.com/p?x=1&y=%C3%A9";
    let (status, head, _) = get_raw(&b, &format!("/click/212313?url={}", encode(to)), &[]);
    assert_eq!(status, 302, "{head}");
    assert_eq!(
        header(&head, "location"),
        Some(to.to_ascii_lowercase().as_str())
    );
    let (status, head, _) = get_raw(&b, "/click/212313", &[]);
    assert_eq!(status, 302);
    assert_eq!(
        header(&head, "location"),
        Some(LANDING.to_ascii_lowercase().as_str())
    );
    let (status, _, _) = get_raw(
        &b,
        &format!(
            "/click/212313?url={}",
            encode("https://landing.example/elsewhere")
        ),
        &[],
    );
    assert_eq!(status, 302, "the landing URL's host is allowed");

    for evil in [
        "https://evil.com/",
        "https://shop.example.com@evil.com/",
        "https://shop.example.com.evil.com/",
        "//evil.com/",
        "/relative",
        "javascript:alert(document.cookie)",
        "https:\\\\evil.com",
        "https://evil.com\\@shop.example.com/",
        "https://shop.example.com/\r\nSet-Cookie: x=1",
        "https://evil.com%2F@shop.example.com/",
        "https://brand.example/",
        "data:text/html,<script>",
    ] {
        let (status, head, body) = get_raw(&b, &format!("/click/212313?url={}", encode(evil)), &[]);
        assert_eq!(status, 400, "{evil:?}: {head}");
        assert!(header(&head, "location").is_none(), "{evil:?}");
        assert!(body.contains("url"), "{evil:?}: {body}");
    }
    // Raw, unencoded tricks in the query too.
    for raw in [
        "/click/212313?url=https://evil.com",
        "/click/212313?url=%0d%0a",
    ] {
        assert_eq!(get_raw(&b, raw, &[]).0, 400, "{raw}");
    }
    assert_eq!(
        get_raw(&b, &format!("/click/1?url={}", encode(to)), &[]).0,
        404
    );
    assert_eq!(
        get_raw(&b, &format!("/click/900?url={}", encode(to)), &[]).0,
        403
    );
    let redirected = b.metric("beacon_clicks_total{outcome=\"redirected\",shard=\"0\"}")
        + b.metric("beacon_clicks_total{outcome=\"redirected\",shard=\"1\"}");
    assert_eq!(redirected, 3.0);
    assert!(b.terminate().success());

    let records = b.tail();
    assert_eq!(records.len(), 3, "{records:#?}");
    let mut urls: Vec<&str> = records.iter().map(|r| r["url"].as_str().unwrap()).collect();
    urls.sort();
    assert_eq!(
        urls,
        [
            "https://landing.example/ad?c=1",
            "https://landing.example/elsewhere",
            "https://shop.example.com/p?x=1&y=%C3%A9"
        ]
    );
    for r in &records {
        assert_eq!(r["route"], "click");
        assert_eq!(r["event_type"], "click");
    }
}

/// With the cookie on, the first pixel sets it, a request with it keeps the id (no new
/// cookie), and both events carry it; with `Sec-GPC: 1` there is no cookie, and the event has
/// neither visitor id nor client address. `client_ip = "truncate"` keeps a /24.
#[test]
fn the_visitor_cookie_and_privacy_signals() {
    let mut b = Beacon::start(
        &["--shards", "1"],
        &[
            ("BEACON_TRACKING_COOKIE_NAME", "bid"),
            ("BEACON_TRACKING_CLIENT_IP", "truncate"),
        ],
    );
    let fwd = ("X-Forwarded-For", "203.0.113.77");
    let (status, head, _) = get_raw(&b, "/pixel/212312", &[fwd]);
    assert_eq!(status, 204);
    let cookie = header(&head, "set-cookie")
        .expect("a new visitor gets a cookie")
        .to_string();
    assert!(
        cookie.contains("max-age=31536000; path=/; samesite=none; secure; httponly"),
        "{cookie}"
    );
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("bid=")
        .unwrap()
        .to_string();
    let id = value.split('.').next().unwrap().to_string();
    let (status, head, _) = get_raw(
        &b,
        "/event/212312",
        &[fwd, ("Cookie", &format!("bid={value}"))],
    );
    assert_eq!(status, 200);
    assert!(header(&head, "set-cookie").is_none(), "{head}");
    let (status, head, _) = get_raw(&b, "/pixel/212313", &[fwd, ("Sec-GPC", "1")]);
    assert_eq!(status, 204);
    assert!(header(&head, "set-cookie").is_none(), "{head}");
    let (_, head, _) = get_raw(
        &b,
        "/pixel/212314",
        &[fwd, ("DNT", "1"), ("Cookie", &format!("bid={value}"))],
    );
    assert!(header(&head, "set-cookie").is_none(), "{head}");
    assert_eq!(
        b.metric("beacon_privacy_signal_requests_total{shard=\"0\"}"),
        2.0
    );
    assert!(b.terminate().success());

    let records = b.tail();
    assert_eq!(records.len(), 4);
    for r in &records[..2] {
        assert_eq!(r["visitor_id"], id.as_str(), "{r}");
        assert_eq!(r["client_ip"], "203.0.113.0", "{r}");
    }
    for r in &records[2..] {
        assert!(r.get("visitor_id").is_none(), "{r}");
        assert_eq!(r["client_ip"], "", "{r}");
    }
}

/// A Googlebot's event carries `bot: true` by default and is not stored with `bots = "drop"`
/// (answered as usual, counted); a browser's has no flag. `/robots.txt` asks crawlers to stay out.
#[test]
fn bots_are_flagged_or_dropped_and_robots_txt_keeps_crawlers_out() {
    let google = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    for mode in ["flag", "drop"] {
        let mut b = Beacon::start(&["--shards", "1"], &[("BEACON_TRACKING_BOTS", mode)]);
        assert_eq!(
            get_raw(&b, "/pixel/212312", &[("User-Agent", google)]).0,
            204
        );
        assert_eq!(
            get_raw(&b, "/pixel/212312", &[("User-Agent", firefox)]).0,
            204
        );
        let (status, _, body) = get_raw(&b, "/robots.txt", &[]);
        assert_eq!(
            (status, body.as_str()),
            (200, "User-agent: *\nDisallow: /\n")
        );
        let action = if mode == "flag" { "flagged" } else { "dropped" };
        let series = format!("beacon_bot_events_total{{action=\"{action}\",shard=\"0\"}}");
        assert_eq!(b.metric(&series), 1.0, "{mode}");
        assert!(b.terminate().success());
        let records = b.tail();
        let bots: Vec<bool> = records.iter().map(|r| r["bot"] == true).collect();
        match mode {
            "flag" => assert_eq!(bots, [true, false]),
            _ => assert_eq!(bots, [false], "the bot's event is not stored"),
        }
    }
}

/// While the sink cannot take events (its disk full), a click still redirects its visitor,
/// and the click it could not record is counted, never silently lost.
#[test]
fn a_click_redirects_even_when_its_event_cannot_be_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let file = campaigns(tmp.path());
    let disk = common::SmallDisk::mount(&tmp.path().join("small"), "4m");
    let dir = disk.0.join("data");
    let mut b = Beacon::start_in(
        &dir,
        &["--shards", "1", "--campaigns", file.to_str().unwrap()],
        &[
            ("BEACON_BATCH_RECORDS_MAX", "1"),
            ("BEACON_SINK_QUEUE_BATCHES_MAX", "1"),
        ],
    );
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.metric("beacon_clicks_total{outcome=\"unrecorded\",shard=\"0\"}") == 0.0 {
        assert!(Instant::now() < deadline, "no click went unrecorded");
        let (status, head, _) = get_raw(&b, "/click/212313", &[]);
        assert_eq!(
            status, 302,
            "the visitor is redirected whatever the sink does"
        );
        assert_eq!(
            header(&head, "location"),
            Some(LANDING.to_ascii_lowercase().as_str())
        );
    }
    assert_eq!(
        get_raw(&b, "/pixel/212313", &[]).0,
        503,
        "a pixel is refused meanwhile"
    );
    std::fs::remove_file(&filler).unwrap();
    assert!(b.terminate().success());
}
