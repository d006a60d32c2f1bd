//! What a tracking request is answered with, in a form that can cross the mesh (`Send`); the
//! shard that holds the connection turns it into an HTTP response (`http::response`).

#[derive(Debug)]
pub enum Reply {
    /// 200 with the enriched event JSON (`/event`).
    Event(Vec<u8>),
    /// 204 (`/pixel`).
    NoContent,
    /// 200 with a 1x1 GIF (`/pixel` from a client that accepts only images).
    Gif,
    /// 404: unknown campaign.
    NotFound,
    /// 403: the campaign is not valid.
    Invalid,
    /// 503: the sink is behind.
    Busy,
    /// 503: core data cannot be read.
    Unavailable,
    /// 302 to this URL (`/click`).
    Redirect(String),
    /// 400: a click's target is not allowed (the reason).
    BadTarget(&'static str),
}
