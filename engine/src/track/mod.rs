//! The tracking path: a validated request's campaign is looked up in the owner shard's L1 (or
//! loaded, once, from core data), the event goes into a batch, and a `Reply` comes back.
//!
//! | file | part |
//! |---|---|
//! | `ctx` | `ShardCtx`: a shard's serving state and the I/O of the tracking path |
//! | `decide` | its decisions as pure functions: where to serve, what a load leaves, accept or refuse |
//! | `meta`, `reply` | what goes in (`Meta`) and what comes out (`Reply`) |
//! | `mesh` | the shard-to-shard messages; `peer` handles them |
//! | `pending` | replies awaited from peers, in a slab |

mod bots;
mod ctx;
mod decide;
mod mesh;
mod meta;
mod peer;
mod pending;
mod reply;

pub use bots::BotVerdicts;
pub use ctx::ShardCtx;
pub use mesh::MeshMsg;
pub use meta::{Meta, Posted};
pub use peer::spawn_receivers;
pub use pending::PendingTable;
pub use reply::Reply;
