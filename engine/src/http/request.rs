//! A tracking request's head turned into the tracking path's `Meta`: the id check, the
//! client's address, the trace id (echoed or new), and whether the client wants a GIF.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use hyper::{Request, StatusCode};

use super::{response, Resp};
use crate::metrics::BadRequest;
use crate::model::{check_id, client_ip, BadId, Route};
use crate::sys::wall_ms;
use crate::track::{Meta, ShardCtx};

/// Header names as constants: a `&str` key would be parsed into a name on every lookup.
pub const TRACE_HEADER: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Longest `X-Amzn-Trace-Id` echoed back; a longer one is replaced by a new id.
pub const TRACE_ID_BYTES_MAX: usize = 256;

/// Serves a tracking request that arrived at `at`.
pub(super) async fn track(
    ctx: &Rc<ShardCtx>,
    route: Route,
    id: &str,
    peer_ip: &str,
    req: &Request<Incoming>,
    at: Instant,
) -> Resp {
    if let Err(bad) = check_id(id) {
        ctx.metrics.bad(BadRequest::Id(bad));
        let body: &'static [u8] = match bad {
            BadId::Empty => b"\"ProgramId missing\"",
            BadId::TooLong => b"\"ProgramId longer than 128 bytes\"",
            BadId::BadChar => b"\"ProgramId may only hold A-Z a-z 0-9 _ -\"",
        };
        return response::text(
            StatusCode::BAD_REQUEST,
            "application/json",
            Bytes::from_static(body),
        );
    }
    let headers = req.headers();
    let client = Client::of(ctx, headers, peer_ip, at);
    let image_only = route == Route::Pixel && accepts_only_images(headers.get(ACCEPT));
    let trace_id = client.trace_id();
    let meta = Meta {
        route,
        id,
        user_agent: &client.user_agent,
        client_ip: client.ip,
        trace_id,
        image_only,
        at,
        // `HEAD` is answered as `GET` is, without an event: link prefetchers and monitors
        // send it, and their requests are no impressions.
        record: req.method() != hyper::Method::HEAD,
        posted: crate::track::Posted::NONE,
    };
    let mut resp = response::reply(ctx.track(&meta).await);
    echo_trace(&mut resp, trace_id);
    resp
}

/// Puts the request's trace id on its response.
pub(super) fn echo_trace(resp: &mut Resp, trace_id: &str) {
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
}

/// What a tracking request's head says of its client: user agent, address, trace id.
pub(super) struct Client<'a> {
    /// A missing or non-UTF-8 User-Agent never loses the event: empty, or lossily decoded.
    pub user_agent: std::borrow::Cow<'a, str>,
    pub ip: &'a str,
    trace: Trace<'a>,
}

enum Trace<'a> {
    Given(&'a str),
    New(NewTraceId),
}

impl<'a> Client<'a> {
    pub fn of(ctx: &ShardCtx, headers: &'a HeaderMap, peer_ip: &'a str, at: Instant) -> Self {
        let user_agent = headers
            .get(USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .unwrap_or_default();
        let forwarded = headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok());
        let ip = client_ip(forwarded, ctx.shared.cfg().trusted_proxy_hops, peer_ip);
        let given = headers
            .get(&TRACE_HEADER)
            .filter(|v| !v.is_empty() && v.len() <= TRACE_ID_BYTES_MAX)
            .and_then(|v| v.to_str().ok());
        let trace = match given {
            Some(t) => Trace::Given(t),
            None => Trace::New(NewTraceId::new((wall_ms(at) / 1000) as u32)),
        };
        Client {
            user_agent,
            ip,
            trace,
        }
    }

    pub fn trace_id(&self) -> &str {
        match &self.trace {
            Trace::Given(t) => t,
            Trace::New(t) => t.as_str(),
        }
    }
}

/// Bytes of a generated trace id: `Root=1-` + 8 hex + `-` + 24 hex.
const TRACE_ID_BYTES: usize = 7 + 8 + 1 + 24;

/// An X-Ray style root id, `Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`, built on the
/// stack: this runs for every request that comes without a trace id.
struct NewTraceId([u8; TRACE_ID_BYTES]);

impl NewTraceId {
    /// A new id for a request that arrived `secs` seconds after the Unix epoch.
    fn new(secs: u32) -> Self {
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let id = NewTraceId::new(now);
        let t = id.as_str();
        assert!(t.starts_with("Root=1-"));
        assert_eq!(t.len(), "Root=1-".len() + 8 + 1 + 24);
        let secs = u32::from_str_radix(&t[7..15], 16).unwrap();
        assert!(t[16..].bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        assert_eq!(secs, now);
        assert_ne!(NewTraceId::new(now).as_str(), t);
    }
}
