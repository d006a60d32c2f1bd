//! HTTP routes: request parsing into a tracking `Meta`, and the non-tracking routes.
//!
//! | route | answer |
//! |---|---|
//! | `GET /event/{id}` | 200 + the reference's event JSON; 404 `"ProgramId not found"`; 403 invalid |
//! | `GET /pixel/{id}` | 204, or 200 + 1x1 GIF when `Accept` lists only images |
//! | `GET /health/check` | 200, empty (shallow, as the reference) |
//! | `GET /health/ready` | 200 when every shard serves and every sink writes, else 503 |
//! | `GET /metrics` | Prometheus text |
//!
//! Bad ids get 400, paths over `path_bytes_max` 414, other methods 405, unknown paths 404;
//! hyper answers heads over `header_bytes_max` with 431.

use std::convert::Infallible;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};

use crate::campaign::check_id;
use crate::metrics::{BadRequest, Route};
use crate::reply::text;
use crate::track::{Meta, ShardCtx};

pub const TRACE_HEADER: &str = "x-amzn-trace-id";
/// Longest `X-Amzn-Trace-Id` echoed back; a longer one is replaced by a new id.
pub const TRACE_ID_BYTES_MAX: usize = 256;

type Resp = Response<Full<Bytes>>;

/// Serves one request on shard `ctx`; `peer_ip` is the TCP peer's address as text.
pub async fn serve(
    ctx: Rc<ShardCtx>,
    peer_ip: Rc<str>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let (route, resp) = route(&ctx, &peer_ip, &req).await;
    ctx.metrics.request(route, resp.status().as_u16());
    ctx.metrics.latency(route, started.elapsed().as_secs_f64());
    Ok(resp)
}

async fn route(ctx: &Rc<ShardCtx>, peer_ip: &str, req: &Request<Incoming>) -> (Route, Resp) {
    let path = req.uri().path();
    let tracking = if let Some(id) = path.strip_prefix("/event/") {
        Some((Route::Event, id))
    } else {
        path.strip_prefix("/pixel/").map(|id| (Route::Pixel, id))
    };
    let route = match (tracking, path) {
        (Some((r, _)), _) => r,
        (None, "/health/check") => Route::HealthCheck,
        (None, "/health/ready") => Route::HealthReady,
        (None, "/metrics") => Route::Metrics,
        _ => Route::Other,
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        ctx.metrics.bad(BadRequest::Method);
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET and HEAD are served\n",
        );
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return (route, r);
    }
    if path.len() > ctx.shared.cfg.path_bytes_max {
        ctx.metrics.bad(BadRequest::PathTooLong);
        return (
            route,
            text(StatusCode::URI_TOO_LONG, "text/plain", "path too long\n"),
        );
    }
    let resp = match (tracking, route) {
        (Some((route, id)), _) => track(ctx, route, id, peer_ip, req).await,
        (None, Route::HealthCheck) => text(StatusCode::OK, "text/plain", Bytes::new()),
        (None, Route::HealthReady) => ready(ctx),
        (None, Route::Metrics) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            ctx.shared.metrics.render(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "no such route\n"),
    };
    (route, resp)
}

async fn track(
    ctx: &Rc<ShardCtx>,
    route: Route,
    id: &str,
    peer_ip: &str,
    req: &Request<Incoming>,
) -> Resp {
    if let Err(bad) = check_id(id) {
        ctx.metrics.bad(BadRequest::Id(bad));
        let body: &'static [u8] = match bad {
            crate::campaign::BadId::Empty => b"\"ProgramId missing\"",
            crate::campaign::BadId::TooLong => b"\"ProgramId longer than 128 bytes\"",
            crate::campaign::BadId::BadChar => b"\"ProgramId may only hold A-Z a-z 0-9 _ -\"",
        };
        return text(
            StatusCode::BAD_REQUEST,
            "application/json",
            Bytes::from_static(body),
        );
    }
    let headers = req.headers();
    // A missing or non-UTF-8 User-Agent never loses the event: empty, or lossily decoded.
    let user_agent = headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    let client_ip = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or(peer_ip);
    let given_trace = headers
        .get(TRACE_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= TRACE_ID_BYTES_MAX)
        .and_then(|v| v.to_str().ok());
    let new_trace;
    let trace_id = match given_trace {
        Some(t) => t,
        None => {
            new_trace = NewTraceId::new();
            new_trace.as_str()
        }
    };
    let image_only = route == Route::Pixel && accepts_only_images(headers.get(ACCEPT));
    let meta = Meta {
        route,
        id,
        user_agent: &user_agent,
        client_ip,
        trace_id,
        image_only,
    };
    let mut resp = ctx.track(&meta).await.into_response();
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
    resp
}

/// Bytes of a generated trace id: `Root=1-` + 8 hex + `-` + 24 hex.
const TRACE_ID_BYTES: usize = 7 + 8 + 1 + 24;

/// An X-Ray style root id, `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`, built on the
/// stack: this runs for every request that comes without a trace id.
struct NewTraceId([u8; TRACE_ID_BYTES]);

impl NewTraceId {
    fn new() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as u32;
        let mut out = [0u8; TRACE_ID_BYTES];
        out[..7].copy_from_slice(b"Root=1-");
        let mut hex = [0u8; 32];
        uuid::Uuid::from_u128(u128::from(secs))
            .simple()
            .encode_lower(&mut hex);
        out[7..15].copy_from_slice(&hex[24..]);
        out[15] = b'-';
        uuid::Uuid::new_v4().simple().encode_lower(&mut hex);
        out[16..].copy_from_slice(&hex[..24]);
        NewTraceId(out)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII by construction")
    }
}

/// True when `Accept` is present and every media range in it is an image type.
fn accepts_only_images(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut any = false;
    for range in accept.split(',') {
        let media = range.split(';').next().unwrap_or("").trim();
        if media.is_empty() {
            continue;
        }
        if !media.starts_with("image/") {
            return false;
        }
        any = true;
    }
    any
}

fn ready(ctx: &ShardCtx) -> Resp {
    let shared = &ctx.shared;
    let up = shared.shards_up.load(Ordering::Acquire);
    let sinks_failing: Vec<usize> = shared
        .sink_healthy
        .iter()
        .enumerate()
        .filter(|(_, ok)| !ok.load(Ordering::Acquire))
        .map(|(i, _)| i)
        .collect();
    let stopping = shared.shutting_down.load(Ordering::Acquire);
    let core = shared.core_data.status();
    let sink = shared.sink.status();
    let is_ready =
        up == shared.shards && sinks_failing.is_empty() && !stopping && core.up && sink.healthy;
    let body = serde_json::json!({
        "ready": is_ready,
        "shards": shared.shards,
        "shards_up": up,
        "stopping": stopping,
        "sink": shared.sink.name(),
        "sink_healthy": sink.healthy,
        "sink_detail": sink.detail,
        "sink_failing_shards": sinks_failing,
        "core_data": shared.core_data.name(),
        "core_data_up": core.up,
        "core_data_detail": core.detail,
    });
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "application/json", body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_only_accept_headers() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_only_images(Some(&h("image/gif"))));
        assert!(accepts_only_images(Some(&h(
            "image/webp,image/apng;q=0.9, image/*;q=0.8"
        ))));
        assert!(!accepts_only_images(Some(&h("image/webp,*/*;q=0.8"))));
        assert!(!accepts_only_images(Some(&h("text/html"))));
        assert!(!accepts_only_images(None));
    }

    #[test]
    fn trace_ids_look_like_xray() {
        let id = NewTraceId::new();
        let t = id.as_str();
        assert!(t.starts_with("Root=1-"));
        assert_eq!(t.len(), "Root=1-".len() + 8 + 1 + 24);
        let secs = u32::from_str_radix(&t[7..15], 16).unwrap();
        assert!(secs > 1_700_000_000, "{t}");
        assert!(t[16..].bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        assert_ne!(NewTraceId::new().as_str(), t);
    }
}
