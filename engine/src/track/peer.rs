//! The handler of the shard-to-shard protocol (`mesh`): what a shard does with its peers'
//! messages.
//!
//! Each shard runs one receive task per peer. A receive task never awaits a send: a reply that
//! does not fit its bounded channel right away is handed to a task of its own, so two shards
//! whose queues are both full cannot deadlock waiting on each other.

use std::rc::Rc;

use glommio::channels::channel_mesh::Receivers;

use super::ctx::ShardCtx;
use super::mesh::MeshMsg;

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
            Some(answer) if !answer.must_wait() => send(
                ctx,
                peer,
                MeshMsg::Handled {
                    key,
                    reply: answer.reply,
                },
            ),
            // A load, or a durable ack, to wait for: answer from a task of its own.
            now => {
                let ctx = ctx.clone();
                glommio::spawn_local(async move {
                    let answer = match now {
                        Some(answer) => answer,
                        None => ctx.load_owned(&req.meta()).await,
                    };
                    let reply = ctx.settle(answer).await;
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
