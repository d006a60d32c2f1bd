//! `POST /events` (events from pages and servers, several at once) and its CORS preflight.
//!
//! The body is read whole, at most `tracking.body_bytes_max` bytes after inflating, within
//! `tracking.body_read_timeout_ms`; `model::intake` turns it into events; each event takes the
//! GET routes' path (`ShardCtx::track`: the same validation, L1, batch and ack), all of them
//! at once, and the answer says which were taken: `{"accepted": N, "rejected": [{"index",
//! "status", "reason"}]}`. An `eventId` becomes the event's message id, so a retried batch
//! writes the same rows.

use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW,
    CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, RETRY_AFTER, VARY,
};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::request::{echo_trace, BotVerdict, Client};
use super::response::{text, RETRY_AFTER_SECS};
use super::visitor::Visitor;
use super::Resp;
use crate::config::TrackingConfig;
use crate::metrics::BadRequest;
use crate::model::click::host_matches;
use crate::model::intake::{parse_body, IntakeLimits, Item, PostedEvent};
use crate::model::Route;
use crate::sys::wall_ms;
use crate::track::{Meta, Posted, Reply, ShardCtx};

/// Media types a body may have: JSON, sendBeacon's default, and NDJSON.
const MEDIA_TYPES: [&str; 3] = ["application/json", "text/plain", "application/x-ndjson"];
/// Seconds a browser may cache a preflight answer (Chromium caps it at 7,200).
const PREFLIGHT_MAX_AGE_SECS: &str = "7200";

/// Serves `/events`: `POST`, the `OPTIONS` preflight, 405 for anything else.
pub(super) async fn serve(
    ctx: &Rc<ShardCtx>,
    peer_ip: &str,
    req: Request<Incoming>,
    at: Instant,
) -> Resp {
    let cfg = &ctx.shared.cfg().tracking;
    let origin = allowed_origin(cfg, req.headers());
    let mut resp = match *req.method() {
        Method::POST => post(ctx, peer_ip, req, at).await,
        Method::OPTIONS => {
            let mut r = Resp::new(http_body_util::Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            if origin.is_some() {
                let h = r.headers_mut();
                h.insert(
                    ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("POST, OPTIONS"),
                );
                h.insert(
                    ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Content-Type, Content-Encoding, X-Amzn-Trace-Id"),
                );
                h.insert(
                    ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
                );
            }
            r
        }
        _ => {
            ctx.metrics.bad(BadRequest::Method);
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "/events takes POST (and the OPTIONS preflight)\n",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST, OPTIONS"));
            r
        }
    };
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cfg.cors_origins.is_empty() {
        // The answer depends on `Origin` whenever CORS is on: caches must key on it.
        resp.headers_mut()
            .insert(VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

/// What the answer to a POST says.
#[derive(Serialize)]
struct Answer {
    accepted: usize,
    rejected: Vec<Rejected>,
}

#[derive(Serialize)]
struct Rejected {
    index: usize,
    status: u16,
    reason: String,
}

async fn post(ctx: &Rc<ShardCtx>, peer_ip: &str, req: Request<Incoming>, at: Instant) -> Resp {
    let cfg = &ctx.shared.cfg().tracking;
    let (head, body) = req.into_parts();
    let body = match read_body(&head.headers, body, cfg).await {
        Ok(body) => body,
        Err((status, why, reason)) => {
            ctx.metrics.bad(why);
            let mut r = text(status, "text/plain", reason);
            if status != StatusCode::BAD_REQUEST && status != StatusCode::UNSUPPORTED_MEDIA_TYPE {
                // The rest of the body may still be on its way: end the connection.
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };
    let limits = IntakeLimits {
        events_per_request_max: cfg.events_per_request_max,
        props_bytes_max: cfg.props_bytes_max,
    };
    let items = match parse_body(&body, &limits) {
        Ok(items) => items,
        Err(e) => {
            let why = match e.status() {
                413 => BadRequest::TooManyEvents,
                _ => BadRequest::BodyNotJson,
            };
            ctx.metrics.bad(why);
            let status = StatusCode::from_u16(e.status()).expect("a valid status");
            return text(status, "text/plain", format!("{e}\n"));
        }
    };
    // Admission by retryability: a script or SDK retries a 503, a browser's pixel never does,
    // so posts give way first while the sink is behind.
    if ctx
        .batcher
        .queue_at_least(cfg.post_queue_high_water_percent)
    {
        ctx.metrics.posts_shed.inc();
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            Bytes::from_static(super::response::BUSY_BODY),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        return r;
    }
    let client = Client::of(ctx, &head.headers, peer_ip, at);
    let trace_id = client.trace_id();
    let visitor = Visitor::of(
        cfg,
        &head.headers,
        client.private,
        || wall_ms(at),
        &ctx.metrics,
    );
    let bot = client.bot(ctx);
    let from = From {
        client: &client,
        trace_id,
        visitor_id: &visitor.id,
        bot,
        at,
    };
    let replies = futures_util::future::join_all(items.iter().map(|item| async {
        match item {
            Item::Event(e) => Ok(ctx.track(&from.meta(e)).await),
            Item::Bad { status, reason } => Err((*status, reason.clone())),
        }
    }))
    .await;
    let mut answer = Answer {
        accepted: 0,
        rejected: Vec::new(),
    };
    let mut retry = false;
    for (index, reply) in replies.into_iter().enumerate() {
        let refusal = match reply {
            Ok(Reply::NoContent | Reply::Gif | Reply::Event(_)) => None,
            Ok(Reply::NotFound) => Some((404, "ProgramId not found".to_string())),
            Ok(Reply::Invalid) => Some((403, "Program not valid".to_string())),
            Ok(Reply::Busy) => Some((503, "Busy, retry later".to_string())),
            Ok(Reply::Unavailable) => Some((503, "Core data unavailable, retry later".to_string())),
            Ok(Reply::Redirect(_)) => None,
            Ok(Reply::BadTarget(why)) => Some((400, why.to_string())),
            Err(bad) => Some(bad),
        };
        match refusal {
            None => answer.accepted += 1,
            Some((status, reason)) => {
                retry |= status == 503;
                answer.rejected.push(Rejected {
                    index,
                    status,
                    reason,
                });
            }
        }
    }
    ctx.metrics.posted(answer.accepted, answer.rejected.len());
    let body = serde_json::to_vec(&answer).expect("serializing to memory cannot fail");
    let mut resp = text(StatusCode::OK, "application/json", body);
    if retry {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    echo_trace(&mut resp, trace_id);
    visitor.set_on(&mut resp);
    resp
}

/// What every event of one POST shares: who sent it, and when.
struct From<'a> {
    client: &'a Client<'a>,
    trace_id: &'a str,
    visitor_id: &'a str,
    bot: BotVerdict,
    at: Instant,
}

impl<'a> From<'a> {
    fn meta(&self, e: &'a PostedEvent<'a>) -> Meta<'a> {
        Meta {
            route: Route::Events,
            id: &e.program_id,
            user_agent: &self.client.user_agent,
            client_ip: &self.client.ip,
            trace_id: self.trace_id,
            image_only: false,
            at: self.at,
            record: !self.bot.drop,
            posted: Posted {
                event_id: e.event_id,
                event_type: &e.event_type,
                client_ts_ms: e.client_ts_ms,
                props: &e.props,
                url: "",
            },
            visitor_id: self.visitor_id,
            bot: self.bot.flag,
        }
    }
}

type BodyRefusal = (StatusCode, BadRequest, String);

/// The body, inflated, at most `body_bytes_max` bytes, read within `body_read_timeout_ms`.
async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    cfg: &TrackingConfig,
) -> Result<Vec<u8>, BodyRefusal> {
    let limit = cfg.body_bytes_max;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            BadRequest::BodyTooLarge,
            format!("body over {limit} bytes (tracking.body_bytes_max)\n"),
        )
    };
    if let Some(media) = headers.get(CONTENT_TYPE) {
        let media = media.to_str().unwrap_or("");
        let media = media.split(';').next().unwrap_or("").trim();
        if !MEDIA_TYPES.iter().any(|m| m.eq_ignore_ascii_case(media)) {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                BadRequest::MediaType,
                format!(
                    "Content-Type {media:?} not taken; send {}\n",
                    MEDIA_TYPES.join(", ")
                ),
            ));
        }
    }
    let gzip = match headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(e) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                BadRequest::ContentEncoding,
                format!("Content-Encoding {e:?} not taken; send gzip or none\n"),
            ))
        }
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Compressed, the body is held to the same limit as inflated: gzip never makes JSON larger
    // than a few bytes over its own size.
    let read = Limited::new(body, limit).collect();
    let wait = Duration::from_millis(cfg.body_read_timeout_ms);
    let raw = match crate::sys::timeout(wait, read).await {
        None => {
            return Err((
                StatusCode::REQUEST_TIMEOUT,
                BadRequest::BodyTimeout,
                format!(
                    "body not received within {} ms (tracking.body_read_timeout_ms)\n",
                    cfg.body_read_timeout_ms
                ),
            ))
        }
        Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Some(Err(e)) => {
            return Err((
                StatusCode::BAD_REQUEST,
                BadRequest::BodyNotJson,
                format!("body could not be read: {e}\n"),
            ))
        }
        Some(Ok(collected)) => collected.to_bytes(),
    };
    if !gzip {
        return Ok(raw.to_vec());
    }
    inflate(&raw, limit).map_err(|e| match e {
        Inflate::TooLarge => too_large(),
        Inflate::Corrupt(why) => (
            StatusCode::BAD_REQUEST,
            BadRequest::ContentEncoding,
            format!("gzip body is corrupt: {why}\n"),
        ),
    })
}

#[derive(Debug, PartialEq)]
pub(crate) enum Inflate {
    TooLarge,
    Corrupt(String),
}

/// `gz` inflated, stopping one byte past `limit`: a bomb costs at most `limit` + 1 bytes.
pub(crate) fn inflate(gz: &[u8], limit: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::with_capacity(gz.len().saturating_mul(4).min(limit + 1));
    flate2::read::MultiGzDecoder::new(gz)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Inflate::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// The `Origin` of a request, as the value to echo, when `cors_origins` allows it.
fn allowed_origin(cfg: &TrackingConfig, headers: &HeaderMap) -> Option<HeaderValue> {
    if cfg.cors_origins.is_empty() {
        return None;
    }
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    cfg.cors_origins
        .iter()
        .any(|p| origin_matches(p, text))
        .then(|| origin.clone())
}

/// Whether `origin` (`scheme://host[:port]`) matches `pattern`: `*`, `*.example.com` (a
/// subdomain of it, any scheme and port) or an exact origin (ASCII case-insensitive).
pub(crate) fn origin_matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" {
        return origin != "null";
    }
    if pattern.starts_with("*.") {
        let Some((_, rest)) = origin.split_once("://") else {
            return false;
        };
        return host_matches(pattern, rest.split(':').next().unwrap_or(""));
    }
    pattern.eq_ignore_ascii_case(origin)
}

/// Why `pattern` is not a `cors_origins` entry, if it is not.
pub fn check_origin_pattern(pattern: &str) -> Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    if let Some(domain) = pattern.strip_prefix("*.") {
        if domain.is_empty() || domain.contains(['/', ':', '*']) {
            return Err("a wildcard entry is `*.` and a domain, as `*.example.com`".into());
        }
        return Ok(());
    }
    let Some((scheme, host)) = pattern.split_once("://") else {
        return Err("an origin is `scheme://host[:port]`, as `https://shop.example`".into());
    };
    if scheme.is_empty() || host.is_empty() || host.contains(['/', '*']) {
        return Err(
            "an origin is `scheme://host[:port]` with no path, as `https://shop.example`".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_by_suffix_or_all() {
        assert!(origin_matches(
            "https://shop.example",
            "https://shop.example"
        ));
        assert!(origin_matches(
            "https://shop.example",
            "HTTPS://Shop.Example"
        ));
        assert!(!origin_matches(
            "https://shop.example",
            "http://shop.example"
        ));
        assert!(!origin_matches(
            "https://shop.example",
            "https://shop.example.evil"
        ));
        assert!(origin_matches("*.example.com", "https://a.example.com"));
        assert!(origin_matches(
            "*.example.com",
            "http://a.b.example.com:8080"
        ));
        assert!(!origin_matches("*.example.com", "https://example.com"));
        assert!(!origin_matches("*.example.com", "https://badexample.com"));
        assert!(!origin_matches("*.example.com", "https://example.com.evil"));
        assert!(origin_matches("*", "https://anything.test"));
        assert!(!origin_matches("*", "null"));
    }

    #[test]
    fn origin_patterns_are_checked() {
        for good in [
            "*",
            "*.example.com",
            "https://shop.example",
            "http://localhost:3000",
        ] {
            assert!(check_origin_pattern(good).is_ok(), "{good}");
        }
        for bad in [
            "shop.example",
            "https://shop.example/",
            "*.",
            "*.a/b",
            "https://*.x",
        ] {
            assert!(check_origin_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bomb_stops_inflating_at_the_limit() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 10 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(
            gz.len() < 64 << 10,
            "10 MB of spaces compress small: {}",
            gz.len()
        );
        assert_eq!(inflate(&gz, 64 << 10), Err(Inflate::TooLarge));
        let mut small = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        small.write_all(b"{\"programId\":\"1\"}").unwrap();
        assert_eq!(
            inflate(&small.finish().unwrap(), 64 << 10).unwrap(),
            b"{\"programId\":\"1\"}"
        );
        assert!(matches!(
            inflate(b"not gzip", 100),
            Err(Inflate::Corrupt(_))
        ));
    }
}
