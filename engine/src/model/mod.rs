//! What the engine talks about, with no I/O: campaigns, the event and its record formats, the
//! kinds of request, and which shard owns a campaign.
//!
//! One name per concept: the reference calls a campaign a "program" (`programId`,
//! `programName`); beacon calls it a campaign everywhere in its own code and keeps the
//! reference's names only on the wire (JSON fields, Redis hash fields, protobuf fields).

mod campaign;
pub mod click;
mod event;
pub mod intake;
mod route;
mod routing;

pub use campaign::{check_id, BadId, Campaign};
pub use event::{
    decode, decode_auto, DecodeError, DecodedEvent, Event, EventExtras, EventMore, EventRoute,
    EventV1, EventV2, TrackingEvent, TrackingEventJson, EVENT_V1, EVENT_V2, RKYV_HEADER_BYTES,
    RKYV_MAGIC,
};
pub use route::{client_ip, Route};
pub use routing::owner;
