//! HTTP routes: request parsing into a tracking `Meta`, and the non-tracking routes.
//!
//! | route | answer |
//! |---|---|
//! | `GET /event/{id}` | 200 + the reference's event JSON; 404 `"ProgramId not found"`; 403 invalid |
//! | `GET /pixel/{id}` | 204, or 200 + 1x1 GIF when `Accept` lists only images |
//! | `GET /click/{id}?url=` | 302 to an allowed target (`model::click`), 400 for any other |
//! | `POST /events` | 200 + `{"accepted": N, "rejected": [...]}` (`events`); `OPTIONS`: the CORS preflight |
//! | `GET /robots.txt` | 200, `User-agent: *` / `Disallow: /` |
//! | `GET /health/check` | 200, empty (shallow, as the reference) |
//! | `GET /health/ready` | 200 when every shard serves and every sink writes, else 503 |
//! | `GET /metrics` | Prometheus text |
//!
//! Bad ids get 400, paths over `path_bytes_max` 414, other methods 405, unknown paths 404;
//! hyper answers heads over `header_bytes_max` with 431.
//!
//! With `admin_listen` set, `/metrics` and `/health/ready` are served on that address only
//! (the public listener answers them 404), and the admin address serves nothing but the three
//! admin routes; `/health/check` stays on both, for a load balancer's health check.

mod events;
mod request;
mod response;
mod rt;
mod visitor;

pub use events::check_origin_pattern;

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

pub use rt::{HyperStream, ShardTimer};

use crate::metrics::BadRequest;
use crate::model::Route;
use crate::track::ShardCtx;
use response::text;

type Resp = Response<Full<Bytes>>;

/// The way a connection came in, and so what it may ask for. `admin_elsewhere`: an admin
/// listener is set, so `/metrics` and `/health/ready` are not served on the public one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// The public listener.
    Public { admin_elsewhere: bool },
    /// Taken over the shard's connection cap on the public listener: admin routes only, one
    /// request, then closed.
    OverCap { admin_elsewhere: bool },
    /// The admin listener: the admin routes only.
    Admin,
}

impl Door {
    /// Whether a request for `route` is served through this door.
    fn serves(self, route: Route) -> bool {
        let admin = matches!(route, Route::HealthReady | Route::Metrics);
        match self {
            Door::Public { admin_elsewhere } | Door::OverCap { admin_elsewhere } => {
                !(admin && admin_elsewhere)
            }
            Door::Admin => admin || route == Route::HealthCheck,
        }
    }
}

/// Serves one request on shard `ctx`; `peer_ip` is the TCP peer's address as text.
pub async fn serve(
    ctx: Rc<ShardCtx>,
    peer_ip: Rc<str>,
    req: Request<Incoming>,
    door: Door,
) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let (route, resp) = if !door.serves(Route::of_path(req.uri().path()).0) {
        let why = match door {
            Door::Admin => {
                "no such route here: the admin listener serves /health/check, /health/ready \
                 and /metrics\n"
            }
            _ => "no such route here: admin routes are on the admin listener\n",
        };
        (Route::Other, text(StatusCode::NOT_FOUND, "text/plain", why))
    } else if let Door::OverCap { .. } = door {
        over_cap_route(&ctx, &peer_ip, &req, started).await
    } else if Route::of_path(req.uri().path()).0 == Route::Events {
        // Boxed: this future is large (a body, its events, their lookups), and unboxed it would
        // make every request's future as large, GETs included.
        let post = Box::pin(events::serve(&ctx, &peer_ip, req, started));
        (Route::Events, post.await)
    } else {
        route(&ctx, &peer_ip, &req, started).await
    };
    ctx.metrics.request(route, resp.status().as_u16());
    ctx.metrics.latency(route, started.elapsed().as_secs_f64());
    Ok(resp)
}

async fn route(
    ctx: &Rc<ShardCtx>,
    peer_ip: &str,
    req: &Request<Incoming>,
    at: Instant,
) -> (Route, Resp) {
    let path = req.uri().path();
    let (route, id) = Route::of_path(path);
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
    if path.len() > ctx.shared.cfg().path_bytes_max {
        ctx.metrics.bad(BadRequest::PathTooLong);
        return (
            route,
            text(StatusCode::URI_TOO_LONG, "text/plain", "path too long\n"),
        );
    }
    let resp = match (id, route) {
        (Some(id), _) => request::track(ctx, route, id, peer_ip, req, at).await,
        (None, Route::HealthCheck) => text(StatusCode::OK, "text/plain", Bytes::new()),
        // Tracking links are no content: crawlers that honour this never fire them.
        (None, Route::Robots) => text(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"User-agent: *\nDisallow: /\n"),
        ),
        (None, Route::HealthReady) => ready(ctx),
        (None, Route::Metrics) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            ctx.shared.metrics().render(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "no such route\n"),
    };
    (route, resp)
}

/// A connection taken over the shard's cap: health checks and scrapes are answered, anything
/// else gets 503; either way the connection then closes.
async fn over_cap_route(
    ctx: &Rc<ShardCtx>,
    peer_ip: &str,
    req: &Request<Incoming>,
    at: Instant,
) -> (Route, Resp) {
    let (route, mut resp) = match req.uri().path() {
        "/health/check" | "/health/ready" | "/metrics" => route(ctx, peer_ip, req, at).await,
        _ => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "connection limit reached; retry\n",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            (Route::Other, r)
        }
    };
    resp.headers_mut()
        .insert("connection", HeaderValue::from_static("close"));
    (route, resp)
}

fn ready(ctx: &ShardCtx) -> Resp {
    let shared = &ctx.shared;
    let up = shared.shards_accepting();
    let sinks_failing = shared.failing_sinks();
    let stopping = shared.is_stopping();
    let core = shared.core_data().status();
    let sink = shared.sink().status();
    let is_ready =
        up == shared.shards() && sinks_failing.is_empty() && !stopping && core.up && sink.healthy;
    let body = serde_json::json!({
        "ready": is_ready,
        "shards": shared.shards(),
        "shards_up": up,
        "stopping": stopping,
        "sink": shared.sink().name(),
        "sink_healthy": sink.healthy,
        "sink_detail": sink.detail,
        "sink_failing_shards": sinks_failing,
        "core_data": shared.core_data().name(),
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
