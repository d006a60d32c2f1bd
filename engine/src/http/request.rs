//! A tracking request's head turned into the tracking path's `Meta`: the id check, the
//! client's address, the trace id (echoed or new), and whether the client wants a GIF.

use std::rc::Rc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use hyper::{Request, StatusCode};

use super::visitor::Visitor;
use super::{response, Resp};
use crate::config::{Bots, ClientIpMode};
use crate::metrics::{BadRequest, BotAction};
use crate::model::{check_id, client_ip, Route};
use crate::sys::wall_ms;
use crate::track::{Meta, Posted, ShardCtx};

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
        let body = serde_json::to_vec(bad.reason()).expect("a string serializes");
        return response::text(StatusCode::BAD_REQUEST, "application/json", body);
    }
    let headers = req.headers();
    let client = Client::of(ctx, headers, peer_ip, at);
    let image_only = route == Route::Pixel && accepts_only_images(headers.get(ACCEPT));
    let trace_id = client.trace_id();
    let tracking = &ctx.shared.cfg().tracking;
    let visitor = Visitor::of(
        tracking,
        headers,
        client.private,
        || wall_ms(at),
        &ctx.metrics,
    );
    let bot = client.bot(ctx);
    let target;
    let posted = if route == Route::Click {
        target = click_url(req.uri().query());
        Posted {
            event_type: "click",
            url: &target,
            ..Posted::NONE
        }
    } else {
        Posted::NONE
    };
    let meta = Meta {
        route,
        id,
        user_agent: &client.user_agent,
        client_ip: &client.ip,
        trace_id,
        image_only,
        at,
        // `HEAD` is answered as `GET` is, without an event: link prefetchers and monitors
        // send it, and their requests are no impressions. A bot's event is dropped the same
        // way when `bots = "drop"`.
        record: req.method() != hyper::Method::HEAD && !bot.drop,
        posted,
        visitor_id: &visitor.id,
        bot: bot.flag,
    };
    let mut resp = response::reply(ctx.track(&meta).await);
    echo_trace(&mut resp, trace_id);
    visitor.set_on(&mut resp);
    resp
}

/// The decoded `url` parameter of a click's query; empty when there is none.
fn click_url(query: Option<&str>) -> String {
    query
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "url")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

/// What the bot check says of a request's event.
#[derive(Clone, Copy, Default)]
pub(super) struct BotVerdict {
    /// Store it with `bot: true`.
    pub flag: bool,
    /// Do not store it.
    pub drop: bool,
}

/// Puts the request's trace id on its response.
pub(super) fn echo_trace(resp: &mut Resp, trace_id: &str) {
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
}

/// What a tracking request's head says of its client: user agent, address (as
/// `[tracking] client_ip` and the privacy signals leave it), trace id.
pub(super) struct Client<'a> {
    /// A missing or non-UTF-8 User-Agent never loses the event: empty, or lossily decoded.
    pub user_agent: std::borrow::Cow<'a, str>,
    pub ip: std::borrow::Cow<'a, str>,
    /// The request carries a privacy signal that is honoured: no address, no visitor id.
    pub private: bool,
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
        let cfg = ctx.shared.cfg();
        let ip = client_ip(forwarded, cfg.trusted_proxy_hops, peer_ip);
        let tracking = &cfg.tracking;
        let private = tracking.honor_privacy_signals && privacy_signal(headers);
        let ip = if private {
            ctx.metrics.privacy_signals.inc();
            std::borrow::Cow::Borrowed("")
        } else {
            kept_ip(ip, tracking.client_ip)
        };
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
            private,
            trace,
        }
    }

    /// The bot check's verdict on this client's user agent (`[tracking] bots`), counted.
    pub fn bot(&self, ctx: &ShardCtx) -> BotVerdict {
        let Some(bots) = &ctx.bots else {
            return BotVerdict::default();
        };
        if !bots.is_bot(&self.user_agent) {
            return BotVerdict::default();
        }
        match ctx.shared.cfg().tracking.bots {
            Bots::Drop => {
                ctx.metrics.bot(BotAction::Dropped);
                BotVerdict {
                    flag: false,
                    drop: true,
                }
            }
            _ => {
                ctx.metrics.bot(BotAction::Flagged);
                BotVerdict {
                    flag: true,
                    drop: false,
                }
            }
        }
    }

    pub fn trace_id(&self) -> &str {
        match &self.trace {
            Trace::Given(t) => t,
            Trace::New(t) => t.as_str(),
        }
    }
}

const SEC_GPC: HeaderName = HeaderName::from_static("sec-gpc");
const DNT: HeaderName = HeaderName::from_static("dnt");

/// Whether the request asks not to be tracked: Global Privacy Control or Do Not Track.
fn privacy_signal(headers: &HeaderMap) -> bool {
    headers.get(SEC_GPC).is_some_and(|v| v.as_bytes() == b"1")
        || headers.get(DNT).is_some_and(|v| v.as_bytes() == b"1")
}

/// What an event keeps of address `ip` in `mode`.
fn kept_ip(ip: &str, mode: ClientIpMode) -> std::borrow::Cow<'_, str> {
    use std::net::IpAddr;
    match mode {
        ClientIpMode::Full => std::borrow::Cow::Borrowed(ip),
        ClientIpMode::Drop => std::borrow::Cow::Borrowed(""),
        ClientIpMode::Truncate => match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0").into()
            }
            Ok(IpAddr::V6(v6)) => {
                let s = v6.segments();
                std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0)
                    .to_string()
                    .into()
            }
            // Not an address (it always is one): keep nothing rather than too much.
            Err(_) => std::borrow::Cow::Borrowed(""),
        },
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
    fn addresses_are_kept_truncated_or_dropped() {
        assert_eq!(kept_ip("203.0.113.77", ClientIpMode::Full), "203.0.113.77");
        assert_eq!(
            kept_ip("203.0.113.77", ClientIpMode::Truncate),
            "203.0.113.0"
        );
        assert_eq!(
            kept_ip("2001:db8:1:2:3:4:5:6", ClientIpMode::Truncate),
            "2001:db8:1::"
        );
        assert_eq!(kept_ip("203.0.113.77", ClientIpMode::Drop), "");
        assert_eq!(kept_ip("not an address", ClientIpMode::Truncate), "");
    }

    #[test]
    fn privacy_signals_are_gpc_or_dnt_set_to_one() {
        let mut h = HeaderMap::new();
        assert!(!privacy_signal(&h));
        h.insert(DNT, HeaderValue::from_static("0"));
        assert!(!privacy_signal(&h));
        h.insert(SEC_GPC, HeaderValue::from_static("1"));
        assert!(privacy_signal(&h));
        h.remove(SEC_GPC);
        h.insert(DNT, HeaderValue::from_static("1"));
        assert!(privacy_signal(&h));
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
