//! Shard-to-shard messages over glommio's channel mesh.
//!
//! Each shard runs one receive task per peer. A receive task never awaits a send: a reply that
//! does not fit its bounded channel right away is handed to a task of its own, so two shards
//! whose queues are both full cannot deadlock waiting on each other. A peer's queue is drained
//! in a batch: after one wake-up, every message already queued is handled before the task
//! sleeps again.

use std::rc::Rc;

use glommio::channels::channel_mesh::Receivers;

use crate::metrics::Route;
use crate::reply::Reply;
use crate::track::{LoadResult, Meta, ShardCtx};

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

/// A tracking request's inputs in one allocation: the four strings back to back.
pub struct FwdRequest {
    route: Route,
    image_only: bool,
    buf: String,
    ends: [u32; 4],
}

impl FwdRequest {
    pub fn new(m: &Meta<'_>) -> Self {
        let parts = [m.id, m.user_agent, m.client_ip, m.trace_id];
        let mut buf = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 4];
        for (end, part) in ends.iter_mut().zip(parts) {
            buf.push_str(part);
            *end = buf.len() as u32;
        }
        FwdRequest {
            route: m.route,
            image_only: m.image_only,
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
        }
    }
}

/// Starts one receive task per peer.
pub fn spawn_receivers(ctx: &Rc<ShardCtx>, receivers: &mut Receivers<MeshMsg>) {
    for (peer, rx) in receivers.streams() {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                on_message(&ctx, peer, msg);
            }
        })
        .detach();
    }
}

fn on_message(ctx: &Rc<ShardCtx>, peer: usize, msg: MeshMsg) {
    match msg {
        MeshMsg::Handle { key, req } => match ctx.try_owned_now(&req.meta()) {
            Some(reply) => send(ctx, peer, MeshMsg::Handled { key, reply }),
            None => {
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    let reply = ctx.load_owned(&req.meta()).await;
                    let _ = ctx
                        .senders
                        .send_to(peer, MeshMsg::Handled { key, reply })
                        .await;
                })
                .detach();
            }
        },
        MeshMsg::Resolve { key, id } => {
            let ctx = ctx.clone();
            glommio::spawn_local(async move {
                let result = ctx.l1.load(&id).await;
                let _ = ctx
                    .senders
                    .send_to(peer, MeshMsg::Resolved { key, result })
                    .await;
            })
            .detach();
        }
        MeshMsg::Refresh { id } => ctx.l1.refresh(&id),
        MeshMsg::Handled { key, reply } => ctx.handled.complete(key, reply),
        MeshMsg::Resolved { key, result } => ctx.resolved.complete(key, result),
    }
}

/// Sends without waiting if there is room, else from a task of its own.
fn send(ctx: &Rc<ShardCtx>, peer: usize, msg: MeshMsg) {
    // A closed channel means the peer is gone (shutdown); there is nobody to answer.
    if let Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) =
        ctx.senders.try_send_to(peer, msg)
    {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let _ = ctx.senders.send_to(peer, msg).await;
        })
        .detach();
    }
}
