//! HTTP responses: a tracking `Reply` as the reference answers it, and plain-text answers for
//! the other routes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::track::Reply;

/// The reference's 404 body: a JSON string.
pub const NOT_FOUND_BODY: &[u8] = b"\"ProgramId not found\"";
/// Body of a 403 for a campaign whose `valid` is false.
pub const INVALID_BODY: &[u8] = b"\"Program not valid\"";
/// Body of a 503 while the sink is behind.
pub const BUSY_BODY: &[u8] = b"\"Busy, retry later\"";
/// Body of a 503 while core data cannot be read.
pub const UNAVAILABLE_BODY: &[u8] = b"\"Core data unavailable, retry later\"";
/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: &str = "1";

/// The smallest transparent 1x1 GIF (43 bytes).
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The HTTP response for a tracking reply.
pub fn reply(reply: Reply) -> Response<Full<Bytes>> {
    match reply {
        Reply::Event(body) => json(StatusCode::OK, Bytes::from(body)),
        Reply::NoContent => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Reply::Gif => {
            let mut r = Response::new(Full::new(Bytes::from_static(PIXEL_GIF)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("image/gif"));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Reply::Redirect(to) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            match HeaderValue::from_str(&to) {
                Ok(v) => r.headers_mut().insert(LOCATION, v),
                // The target is a URL's serialization (ASCII); were it not, no redirect.
                Err(_) => return json(StatusCode::BAD_REQUEST, Bytes::from_static(b"\"bad url\"")),
            };
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Reply::BadTarget(why) => json(
            StatusCode::BAD_REQUEST,
            Bytes::from(serde_json::to_vec(why).expect("a string serializes")),
        ),
        Reply::NotFound => json(StatusCode::NOT_FOUND, Bytes::from_static(NOT_FOUND_BODY)),
        Reply::Invalid => json(StatusCode::FORBIDDEN, Bytes::from_static(INVALID_BODY)),
        Reply::Busy | Reply::Unavailable => {
            let body = if matches!(reply, Reply::Busy) {
                BUSY_BODY
            } else {
                UNAVAILABLE_BODY
            };
            let mut r = json(StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(body));
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            r
        }
    }
}

/// A response with a plain-text body, for the routes that are not tracking routes.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
