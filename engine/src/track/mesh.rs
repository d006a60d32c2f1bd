//! The shard-to-shard protocol over glommio's channel mesh: the messages, and a tracking
//! request packed to cross it. `peer` handles them.

use super::meta::{Meta, Posted};
use super::reply::Reply;
use crate::cache::LoadResult;
use crate::model::Route;

pub enum MeshMsg {
    /// `routing = "owner"`: handle this request on the owner and send back `Handled`.
    Handle {
        key: u32,
        req: FwdRequest,
    },
    /// `routing = "local"`: the owner's map missed; load `id` and send back `Resolved`.
    Resolve {
        key: u32,
        id: Box<str>,
    },
    /// `routing = "local"`: a stale entry was served; refresh it in the background.
    Refresh {
        id: Box<str>,
    },
    Handled {
        key: u32,
        reply: Reply,
    },
    Resolved {
        key: u32,
        result: LoadResult,
    },
}

/// A tracking request's inputs in one allocation: the eight strings back to back.
pub struct FwdRequest {
    route: Route,
    image_only: bool,
    at: std::time::Instant,
    record: bool,
    bot: bool,
    event_id: Option<uuid::Uuid>,
    client_ts_ms: Option<u64>,
    buf: String,
    ends: [u32; 8],
}

impl FwdRequest {
    pub fn new(m: &Meta<'_>) -> Self {
        let p = &m.posted;
        let parts = [
            m.id,
            m.user_agent,
            m.client_ip,
            m.trace_id,
            p.event_type,
            p.props,
            p.url,
            m.visitor_id,
        ];
        let mut buf = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 8];
        for (end, part) in ends.iter_mut().zip(parts) {
            buf.push_str(part);
            *end = buf.len() as u32;
        }
        FwdRequest {
            route: m.route,
            image_only: m.image_only,
            at: m.at,
            record: m.record,
            bot: m.bot,
            event_id: p.event_id,
            client_ts_ms: p.client_ts_ms,
            buf,
            ends,
        }
    }

    pub fn meta(&self) -> Meta<'_> {
        let e = self.ends.map(|x| x as usize);
        Meta {
            route: self.route,
            id: &self.buf[..e[0]],
            user_agent: &self.buf[e[0]..e[1]],
            client_ip: &self.buf[e[1]..e[2]],
            trace_id: &self.buf[e[2]..e[3]],
            image_only: self.image_only,
            at: self.at,
            record: self.record,
            posted: Posted {
                event_id: self.event_id,
                event_type: &self.buf[e[3]..e[4]],
                client_ts_ms: self.client_ts_ms,
                props: &self.buf[e[4]..e[5]],
                url: &self.buf[e[5]..e[6]],
            },
            visitor_id: &self.buf[e[6]..e[7]],
            bot: self.bot,
        }
    }
}
