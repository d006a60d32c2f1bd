//! The tracking event: what one accepted request produces, and its encodings.
//!
//! - `rkyv` records: a 4-byte header (`b"BK"`, format version as u16 LE) and an rkyv archive.
//!   Version 2 (`EventV2`, written today) adds the route, the event type, the client's time and
//!   the user's own properties to version 1 (`EventV1`, written before `POST /events`);
//!   `decode` keeps reading every version ever written.
//! - `protobuf` records: the reference's `TrackingEvent`, byte-compatible with its consumers:
//!   its eight fields keep their numbers, beacon's own come after them (9..=12), and a proto3
//!   reader skips fields it does not know.
//! - The HTTP response body of `/event`: the reference's JSON, in its field order.

use rkyv::munge::munge;
use rkyv::niche::option_box::{ArchivedOptionBox, OptionBoxResolver};
use rkyv::rancor::Fallible;
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::Place;
use serde::Serialize;
use uuid::Uuid;

use crate::config::RecordFormat;
use crate::model::Campaign;

/// Magic at the start of every rkyv record.
pub const RKYV_MAGIC: [u8; 2] = *b"BK";
/// Version of `EventV1` records.
pub const EVENT_V1: u16 = 1;
/// Version of `EventV2` records, the ones written today.
pub const EVENT_V2: u16 = 2;
/// Bytes of the rkyv record header: magic + version.
pub const RKYV_HEADER_BYTES: usize = 4;

/// Everything known about one accepted request. Borrowed: built on the request path.
pub struct Event<'a> {
    pub message_id: Uuid,
    pub campaign: &'a Campaign,
    pub user_agent: &'a str,
    pub received_at_ms: u64,
    pub client_ip: &'a str,
    pub trace_id: &'a str,
    /// False when the campaign could not be checked (core data unavailable and the engine is
    /// configured to accept anyway).
    pub validated: bool,
    /// The route the event came by.
    pub route: EventRoute,
    /// The user agent is a known crawler or bot (`[tracking] bots = "flag"`).
    pub bot: bool,
    /// What posted events, clicks and visitors add; `EventExtras::NONE` for a plain GET.
    pub extras: EventExtras<'a>,
}

/// `EventMore` borrowed: the fields of an event that a plain GET leaves empty. It archives to
/// exactly `ArchivedEventMore` (the out-of-line part of a record), without copying the strings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EventExtras<'a> {
    /// The client's name for the event (`POST /events`' `type`, `click`); empty for the GETs.
    pub event_type: &'a str,
    /// The client's own clock, ms since the Unix epoch (`ts`), kept beside `received_at_ms`.
    pub client_ts_ms: Option<u64>,
    /// The user's own fields as compact JSON object text (`props`); empty when none.
    pub props: &'a str,
    /// The first-party visitor id (`[tracking] cookie_name`), hyphenated; empty when none.
    pub visitor_id: &'a str,
    /// A click's target URL; empty for every other event.
    pub url: &'a str,
}

impl EventExtras<'_> {
    pub const NONE: EventExtras<'static> = EventExtras {
        event_type: "",
        client_ts_ms: None,
        props: "",
        visitor_id: "",
        url: "",
    };

    /// Whether every field is empty (the record then holds no `EventMore`).
    pub fn is_empty(&self) -> bool {
        *self == EventExtras::NONE
    }
}

/// The route an event came by, as stored (one byte in rkyv records, a name elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventRoute {
    /// `GET /pixel/{id}`.
    Pixel = 1,
    /// `GET /event/{id}`.
    Event = 2,
    /// `POST /events`.
    Post = 3,
    /// `GET /click/{id}`.
    Click = 4,
}

impl EventRoute {
    pub fn as_str(self) -> &'static str {
        match self {
            EventRoute::Pixel => "pixel",
            EventRoute::Event => "event",
            EventRoute::Post => "post",
            EventRoute::Click => "click",
        }
    }

    /// The route stored as `byte`; `None` for a byte no version ever wrote.
    pub fn from_byte(byte: u8) -> Option<EventRoute> {
        [
            EventRoute::Pixel,
            EventRoute::Event,
            EventRoute::Post,
            EventRoute::Click,
        ]
        .into_iter()
        .find(|r| *r as u8 == byte)
    }
}

/// Version 1 of beacon's own event record.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Serialize)]
pub struct EventV1 {
    #[serde(serialize_with = "uuid_string")]
    pub message_id: [u8; 16],
    pub program_id: String,
    pub program_name: String,
    pub checksum: String,
    pub customer_id: i32,
    pub customer_name: String,
    pub valid: bool,
    pub validated: bool,
    pub user_agent: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    pub client_ip: String,
    pub trace_id: String,
}

/// Version 2 of beacon's own event record: version 1's fields and what `POST /events` added.
/// The route and the bot flag sit in the padding after the two flags and the rest is out of
/// line (`EventMore`), so a plain GET's record grows by one 4-byte pointer (and its padding).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Serialize)]
pub struct EventV2 {
    #[serde(serialize_with = "uuid_string")]
    pub message_id: [u8; 16],
    pub program_id: String,
    pub program_name: String,
    pub checksum: String,
    pub customer_id: i32,
    pub customer_name: String,
    pub valid: bool,
    pub validated: bool,
    /// `EventRoute` as its byte; beside the two flags, in what was their padding.
    #[serde(serialize_with = "route_name")]
    pub route: u8,
    /// The user agent is a known crawler or bot; also in that padding.
    #[serde(skip_serializing_if = "is_false")]
    pub bot: bool,
    pub user_agent: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    pub client_ip: String,
    pub trace_id: String,
    /// What a posted event, a click or a visitor adds, out of line: a plain GET's record holds
    /// a 4-byte empty pointer instead.
    #[rkyv(with = rkyv::with::Niche)]
    #[serde(flatten)]
    pub more: Option<Box<EventMore>>,
}

/// The fields of an `EventV2` that most GETs do not have.
#[derive(
    Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Serialize,
)]
pub struct EventMore {
    /// Empty for the GET routes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ts_ms: Option<u64>,
    /// Compact JSON object text; empty when the client sent none.
    #[serde(skip_serializing_if = "String::is_empty", serialize_with = "raw_json")]
    pub props: String,
    /// Hyphenated UUID; empty without a visitor cookie.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub visitor_id: String,
    /// A click's target; empty otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl From<EventV1> for EventV2 {
    /// A version 1 record in version 2's shape: no route (byte 0, which no route has), type,
    /// client time or props.
    fn from(e: EventV1) -> EventV2 {
        EventV2 {
            message_id: e.message_id,
            program_id: e.program_id,
            program_name: e.program_name,
            checksum: e.checksum,
            customer_id: e.customer_id,
            customer_name: e.customer_name,
            valid: e.valid,
            validated: e.validated,
            route: 0,
            bot: false,
            user_agent: e.user_agent,
            received_at_ms: e.received_at_ms,
            client_ip: e.client_ip,
            trace_id: e.trace_id,
            more: None,
        }
    }
}

fn route_name<S: serde::Serializer>(route: &u8, s: S) -> Result<S::Ok, S::Error> {
    match EventRoute::from_byte(*route) {
        Some(r) => s.serialize_str(r.as_str()),
        None => s.serialize_u8(*route),
    }
}

/// `props` printed as the JSON it is; text that is not JSON (a corrupt record) as a string.
fn raw_json<S: serde::Serializer>(props: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<&serde_json::value::RawValue>(props) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_str(props),
    }
}

fn uuid_string<S: serde::Serializer>(id: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Uuid::from_bytes(*id).hyphenated())
}

/// The reference's protobuf event (`TrackingEvent`, proto3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrackingEvent {
    #[prost(string, tag = "1")]
    pub programid: String,
    #[prost(string, tag = "2")]
    pub checksum: String,
    #[prost(int32, tag = "3")]
    pub customer_id: i32,
    #[prost(string, tag = "4")]
    pub user_agent: String,
    #[prost(string, tag = "5")]
    pub program_name: String,
    #[prost(string, tag = "6")]
    pub customer_name: String,
    #[prost(bool, tag = "7")]
    pub is_valid: bool,
    #[prost(string, tag = "8")]
    pub message_id: String,
    /// beacon's own fields, numbered after the reference's: its consumers skip them.
    #[prost(string, tag = "9")]
    pub event_type: String,
    #[prost(uint64, optional, tag = "10")]
    pub client_ts_ms: Option<u64>,
    #[prost(string, tag = "11")]
    pub props: String,
    #[prost(string, tag = "12")]
    pub route: String,
    #[prost(string, tag = "13")]
    pub visitor_id: String,
    #[prost(bool, tag = "14")]
    pub bot: bool,
    #[prost(string, tag = "15")]
    pub url: String,
}

/// `EventV2` borrowed from an `Event`: it archives to exactly `ArchivedEventV2`, byte for byte
/// what `EventV2` archives to (a test holds the two together), without first copying the
/// strings into an owned `EventV2`. This runs once per accepted request.
struct EventV2Ref<'a> {
    message_id: [u8; 16],
    program_id: &'a str,
    program_name: &'a str,
    checksum: &'a str,
    customer_id: i32,
    customer_name: &'a str,
    valid: bool,
    validated: bool,
    route: u8,
    bot: bool,
    user_agent: &'a str,
    received_at_ms: u64,
    client_ip: &'a str,
    trace_id: &'a str,
    more: Option<EventExtras<'a>>,
}

/// Where each string of an `EventV2Ref` was written.
struct EventV2RefResolver {
    program_id: StringResolver,
    program_name: StringResolver,
    checksum: StringResolver,
    customer_name: StringResolver,
    user_agent: StringResolver,
    client_ip: StringResolver,
    trace_id: StringResolver,
    more: OptionBoxResolver,
}

/// Where each string of an `EventExtras` was written.
pub struct EventExtrasResolver {
    event_type: StringResolver,
    props: StringResolver,
    visitor_id: StringResolver,
    url: StringResolver,
}

impl rkyv::Archive for EventV2Ref<'_> {
    type Archived = ArchivedEventV2;
    type Resolver = EventV2RefResolver;

    fn resolve(&self, r: Self::Resolver, out: Place<ArchivedEventV2>) {
        munge!(let ArchivedEventV2 {
            message_id, program_id, program_name, checksum, customer_id, customer_name, valid,
            validated, route, bot, user_agent, received_at_ms, client_ip, trace_id, more,
        } = out);
        self.message_id.resolve([(); 16], message_id);
        ArchivedString::resolve_from_str(self.program_id, r.program_id, program_id);
        ArchivedString::resolve_from_str(self.program_name, r.program_name, program_name);
        ArchivedString::resolve_from_str(self.checksum, r.checksum, checksum);
        self.customer_id.resolve((), customer_id);
        ArchivedString::resolve_from_str(self.customer_name, r.customer_name, customer_name);
        self.valid.resolve((), valid);
        self.validated.resolve((), validated);
        self.route.resolve((), route);
        self.bot.resolve((), bot);
        ArchivedString::resolve_from_str(self.user_agent, r.user_agent, user_agent);
        self.received_at_ms.resolve((), received_at_ms);
        ArchivedString::resolve_from_str(self.client_ip, r.client_ip, client_ip);
        ArchivedString::resolve_from_str(self.trace_id, r.trace_id, trace_id);
        ArchivedOptionBox::resolve_from_option(self.more.as_ref(), r.more, more);
    }
}

impl<S> rkyv::Serialize<S> for EventV2Ref<'_>
where
    S: Fallible + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
    str: rkyv::SerializeUnsized<S>,
{
    /// The strings in field order, then the out-of-line part, as the derived `Serialize` of
    /// `EventV2` writes them.
    fn serialize(&self, s: &mut S) -> Result<EventV2RefResolver, S::Error> {
        Ok(EventV2RefResolver {
            program_id: ArchivedString::serialize_from_str(self.program_id, s)?,
            program_name: ArchivedString::serialize_from_str(self.program_name, s)?,
            checksum: ArchivedString::serialize_from_str(self.checksum, s)?,
            customer_name: ArchivedString::serialize_from_str(self.customer_name, s)?,
            user_agent: ArchivedString::serialize_from_str(self.user_agent, s)?,
            client_ip: ArchivedString::serialize_from_str(self.client_ip, s)?,
            trace_id: ArchivedString::serialize_from_str(self.trace_id, s)?,
            more: ArchivedOptionBox::serialize_from_option(self.more.as_ref(), s)?,
        })
    }
}

impl rkyv::Archive for EventExtras<'_> {
    type Archived = ArchivedEventMore;
    type Resolver = EventExtrasResolver;

    fn resolve(&self, r: Self::Resolver, out: Place<ArchivedEventMore>) {
        munge!(let ArchivedEventMore { event_type, client_ts_ms, props, visitor_id, url } = out);
        ArchivedString::resolve_from_str(self.event_type, r.event_type, event_type);
        self.client_ts_ms
            .resolve(self.client_ts_ms.map(|_| ()), client_ts_ms);
        ArchivedString::resolve_from_str(self.props, r.props, props);
        ArchivedString::resolve_from_str(self.visitor_id, r.visitor_id, visitor_id);
        ArchivedString::resolve_from_str(self.url, r.url, url);
    }
}

impl<S> rkyv::Serialize<S> for EventExtras<'_>
where
    S: Fallible + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
    str: rkyv::SerializeUnsized<S>,
{
    fn serialize(&self, s: &mut S) -> Result<EventExtrasResolver, S::Error> {
        Ok(EventExtrasResolver {
            event_type: ArchivedString::serialize_from_str(self.event_type, s)?,
            props: ArchivedString::serialize_from_str(self.props, s)?,
            visitor_id: ArchivedString::serialize_from_str(self.visitor_id, s)?,
            url: ArchivedString::serialize_from_str(self.url, s)?,
        })
    }
}

/// rkyv's writer over the tail of a buffer: positions count from `start`, so the archive is
/// laid out (and padded) as if it began a buffer of its own, right after the record header.
struct After<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl rkyv::ser::Positional for After<'_> {
    fn pos(&self) -> usize {
        self.out.len() - self.start
    }
}

impl<E> rkyv::ser::Writer<E> for After<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

impl Event<'_> {
    fn v2_ref(&self) -> EventV2Ref<'_> {
        EventV2Ref {
            message_id: *self.message_id.as_bytes(),
            program_id: &self.campaign.program_id,
            program_name: &self.campaign.program_name,
            checksum: &self.campaign.checksum,
            customer_id: self.campaign.customer_id,
            customer_name: &self.campaign.customer_name,
            valid: self.campaign.valid,
            validated: self.validated,
            user_agent: self.user_agent,
            received_at_ms: self.received_at_ms,
            client_ip: self.client_ip,
            trace_id: self.trace_id,
            route: self.route as u8,
            bot: self.bot,
            more: (!self.extras.is_empty()).then_some(self.extras),
        }
    }

    /// Appends this event's record in `format` to `out`.
    pub fn encode_into(&self, format: RecordFormat, out: &mut Vec<u8>) {
        match format {
            RecordFormat::Rkyv => {
                out.extend_from_slice(&RKYV_MAGIC);
                out.extend_from_slice(&EVENT_V2.to_le_bytes());
                let start = out.len();
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(
                    &self.v2_ref(),
                    After { out, start },
                )
                .expect("serializing to memory cannot fail");
            }
            RecordFormat::Protobuf => {
                let pb = TrackingEvent {
                    programid: self.campaign.program_id.clone(),
                    checksum: self.campaign.checksum.clone(),
                    customer_id: self.campaign.customer_id,
                    user_agent: self.user_agent.to_owned(),
                    program_name: self.campaign.program_name.clone(),
                    customer_name: self.campaign.customer_name.clone(),
                    is_valid: self.campaign.valid,
                    message_id: self.message_id.hyphenated().to_string(),
                    event_type: self.extras.event_type.to_owned(),
                    client_ts_ms: self.extras.client_ts_ms,
                    props: self.extras.props.to_owned(),
                    route: self.route.as_str().to_owned(),
                    visitor_id: self.extras.visitor_id.to_owned(),
                    bot: self.bot,
                    url: self.extras.url.to_owned(),
                };
                prost::Message::encode(&pb, out).expect("a Vec grows as needed");
            }
        }
    }

    /// The reference's `/event` response body, in its field order.
    pub fn response_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            user_agent: &'a str,
            program_id: &'a str,
            program_name: &'a str,
            checksum: &'a str,
            customer_id: i32,
            customer_name: &'a str,
            message_id: uuid::fmt::Hyphenated,
            valid: bool,
        }
        let body = Body {
            user_agent: self.user_agent,
            program_id: &self.campaign.program_id,
            program_name: &self.campaign.program_name,
            checksum: &self.campaign.checksum,
            customer_id: self.campaign.customer_id,
            customer_name: &self.campaign.customer_name,
            message_id: self.message_id.hyphenated(),
            valid: self.campaign.valid,
        };
        let mut out = Vec::with_capacity(256);
        serde_json::to_writer(&mut out, &body).expect("serializing to memory cannot fail");
        out
    }
}

/// A record read back from a sink, whatever its format.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DecodedEvent {
    V1(EventV1),
    V2(EventV2),
    Protobuf(TrackingEventJson),
}

/// `TrackingEvent` with the reference's JSON field names, for printing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingEventJson {
    pub user_agent: String,
    pub program_id: String,
    pub program_name: String,
    pub checksum: String,
    pub customer_id: i32,
    pub customer_name: String,
    pub message_id: String,
    pub valid: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ts_ms: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty", serialize_with = "raw_json")]
    pub props: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub visitor_id: String,
    #[serde(skip_serializing_if = "is_false")]
    pub bot: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
}

impl DecodedEvent {
    pub fn message_id(&self) -> String {
        match self {
            DecodedEvent::V1(e) => Uuid::from_bytes(e.message_id).hyphenated().to_string(),
            DecodedEvent::V2(e) => Uuid::from_bytes(e.message_id).hyphenated().to_string(),
            DecodedEvent::Protobuf(e) => e.message_id.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record too short for its header")]
    Short,
    #[error("rkyv record has unknown magic {0:02x?}")]
    Magic([u8; 2]),
    #[error("rkyv record version {0} is newer than this build understands")]
    Version(u16),
    #[error("rkyv record is corrupt: {0}")]
    Rkyv(String),
    #[error("protobuf record is corrupt: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decodes one record of `format`.
pub fn decode(format: RecordFormat, bytes: &[u8]) -> Result<DecodedEvent, DecodeError> {
    match format {
        RecordFormat::Rkyv => {
            if bytes.len() < RKYV_HEADER_BYTES {
                return Err(DecodeError::Short);
            }
            let magic = [bytes[0], bytes[1]];
            if magic != RKYV_MAGIC {
                return Err(DecodeError::Magic(magic));
            }
            match u16::from_le_bytes([bytes[2], bytes[3]]) {
                // rkyv reads in place but needs its buffer aligned; records inside a batch
                // are not, so each is copied into an aligned buffer first.
                EVENT_V1 => rkyv::from_bytes::<EventV1, rkyv::rancor::Error>(&aligned(bytes))
                    .map(DecodedEvent::V1)
                    .map_err(|e| DecodeError::Rkyv(e.to_string())),
                EVENT_V2 => rkyv::from_bytes::<EventV2, rkyv::rancor::Error>(&aligned(bytes))
                    .map(DecodedEvent::V2)
                    .map_err(|e| DecodeError::Rkyv(e.to_string())),
                v => Err(DecodeError::Version(v)),
            }
        }
        RecordFormat::Protobuf => {
            let pb: TrackingEvent = prost::Message::decode(bytes)?;
            Ok(DecodedEvent::Protobuf(TrackingEventJson {
                user_agent: pb.user_agent,
                program_id: pb.programid,
                program_name: pb.program_name,
                checksum: pb.checksum,
                customer_id: pb.customer_id,
                customer_name: pb.customer_name,
                message_id: pb.message_id,
                valid: pb.is_valid,
                route: pb.route,
                event_type: pb.event_type,
                client_ts_ms: pb.client_ts_ms,
                props: pb.props,
                visitor_id: pb.visitor_id,
                bot: pb.bot,
                url: pb.url,
            }))
        }
    }
}

/// The archive after a record's header, in a buffer aligned as rkyv needs.
fn aligned(record: &[u8]) -> rkyv::util::AlignedVec<16> {
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(&record[RKYV_HEADER_BYTES..]);
    aligned
}

/// Decodes a record of either format: rkyv records start with their header (a protobuf record
/// that happens to start with the same two bytes is tried as protobuf when it fails as rkyv);
/// anything else is protobuf. Readers that cannot know what an engine was configured with
/// (`beacon tail`, the consumers) use this.
pub fn decode_auto(bytes: &[u8]) -> Result<DecodedEvent, DecodeError> {
    if bytes.starts_with(&RKYV_MAGIC) {
        decode(RecordFormat::Rkyv, bytes)
            .or_else(|e| decode(RecordFormat::Protobuf, bytes).map_err(|_| e))
    } else {
        decode(RecordFormat::Protobuf, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Campaign {
        Campaign {
            program_id: "212313".into(),
            program_name: "program2".into(),
            checksum: "124".into(),
            customer_id: 9124,
            customer_name: "Customer2".into(),
            valid: true,
            version: None,
            landing_url: None,
        }
    }

    fn event(c: &Campaign) -> Event<'_> {
        Event {
            message_id: Uuid::parse_str("06bc2944-886c-4e56-907c-fa248c8af023").unwrap(),
            campaign: c,
            user_agent: "curl/7.54.0",
            received_at_ms: 1_700_000_000_000,
            client_ip: "10.0.0.1",
            trace_id: "Root=1-5759e988-bd862e3fe1be46a994272793",
            validated: true,
            route: EventRoute::Event,
            bot: false,
            extras: EventExtras::NONE,
        }
    }

    #[test]
    fn json_matches_the_reference_byte_for_byte() {
        let c = sample();
        let body = event(&c).response_json();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"userAgent":"curl/7.54.0","programId":"212313","programName":"program2","checksum":"124","customerId":9124,"customerName":"Customer2","messageId":"06bc2944-886c-4e56-907c-fa248c8af023","valid":true}"#
        );
    }

    fn owned_v2(e: &Event<'_>) -> EventV2 {
        EventV2 {
            message_id: *e.message_id.as_bytes(),
            program_id: e.campaign.program_id.clone(),
            program_name: e.campaign.program_name.clone(),
            checksum: e.campaign.checksum.clone(),
            customer_id: e.campaign.customer_id,
            customer_name: e.campaign.customer_name.clone(),
            valid: e.campaign.valid,
            validated: e.validated,
            user_agent: e.user_agent.to_owned(),
            received_at_ms: e.received_at_ms,
            client_ip: e.client_ip.to_owned(),
            trace_id: e.trace_id.to_owned(),
            route: e.route as u8,
            bot: e.bot,
            more: (!e.extras.is_empty()).then(|| {
                let x = &e.extras;
                Box::new(EventMore {
                    event_type: x.event_type.to_owned(),
                    client_ts_ms: x.client_ts_ms,
                    props: x.props.to_owned(),
                    visitor_id: x.visitor_id.to_owned(),
                    url: x.url.to_owned(),
                })
            }),
        }
    }

    #[test]
    fn borrowed_records_are_the_owned_records_byte_for_byte() {
        let mut c = sample();
        let long_props = format!(r#"{{"k":"{}"}}"#, "p".repeat(200));
        for (name, ua, kind, ts, props) in [
            ("", "", "", None, ""),
            ("12345678", "123456789", "click", Some(1), "{}"),
            (
                "program2",
                &"u".repeat(300)[..],
                "conversion.v2",
                Some(u64::MAX),
                &long_props[..],
            ),
        ] {
            c.program_name = name.to_string();
            let mut e = event(&c);
            e.user_agent = ua;
            e.extras.event_type = kind;
            e.extras.client_ts_ms = ts;
            e.extras.props = props;
            e.route = EventRoute::Post;
            e.extras.visitor_id = ts.map_or("", |_| "0190a0b2-6c1e-7d3f-8a4b-5c6d7e8f9a0b");
            e.bot = ts.is_some();
            e.extras.url = kind;
            let owned = rkyv::to_bytes::<rkyv::rancor::Error>(&owned_v2(&e)).unwrap();
            let mut borrowed = vec![0xAA, 0xBB, 0xCC]; // an odd start, as inside a batch
            e.encode_into(RecordFormat::Rkyv, &mut borrowed);
            assert_eq!(
                &borrowed[3 + RKYV_HEADER_BYTES..],
                &owned[..],
                "{name:?} {ua:?}"
            );
        }
    }

    #[test]
    fn rkyv_round_trip_and_version_checks() {
        let c = sample();
        let mut buf = vec![0xAA]; // records sit at odd offsets inside batches
        event(&c).encode_into(RecordFormat::Rkyv, &mut buf);
        let decoded = decode(RecordFormat::Rkyv, &buf[1..]).unwrap();
        let DecodedEvent::V2(v2) = &decoded else {
            panic!()
        };
        assert_eq!(v2.program_name, "program2");
        assert_eq!(v2.user_agent, "curl/7.54.0");
        assert_eq!(v2.route, EventRoute::Event as u8);
        assert_eq!(decoded.message_id(), "06bc2944-886c-4e56-907c-fa248c8af023");
        let mut future = buf[1..].to_vec();
        future[2] = 9;
        assert!(matches!(
            decode(RecordFormat::Rkyv, &future),
            Err(DecodeError::Version(9))
        ));
        assert!(decode(RecordFormat::Rkyv, &buf[1..10]).is_err());
    }

    /// Records written before version 2 (segment files, a stream's retention, a spool) are
    /// still read.
    #[test]
    fn version_one_records_stay_readable() {
        let v1 = EventV1 {
            message_id: [7; 16],
            program_id: "212313".into(),
            program_name: "program2".into(),
            checksum: "124".into(),
            customer_id: 9124,
            customer_name: "Customer2".into(),
            valid: true,
            validated: true,
            user_agent: "ua".into(),
            received_at_ms: 5,
            client_ip: "10.0.0.1".into(),
            trace_id: "t".into(),
        };
        let mut record = RKYV_MAGIC.to_vec();
        record.extend_from_slice(&EVENT_V1.to_le_bytes());
        record.extend_from_slice(&rkyv::to_bytes::<rkyv::rancor::Error>(&v1).unwrap());
        assert_eq!(decode_auto(&record).unwrap(), DecodedEvent::V1(v1));
    }

    #[test]
    fn post_fields_round_trip_and_print() {
        let c = sample();
        let mut e = event(&c);
        e.route = EventRoute::Post;
        e.extras.event_type = "conversion";
        e.extras.client_ts_ms = Some(1_700_000_000_123);
        e.extras.props = r#"{"value":12.5,"sku":["a","b"]}"#;
        for format in [RecordFormat::Rkyv, RecordFormat::Protobuf] {
            let mut buf = Vec::new();
            e.encode_into(format, &mut buf);
            let json = serde_json::to_value(decode(format, &buf).unwrap()).unwrap();
            assert_eq!(json["route"], "post", "{format:?}");
            assert_eq!(
                json[if format == RecordFormat::Rkyv {
                    "event_type"
                } else {
                    "eventType"
                }],
                "conversion"
            );
            assert_eq!(
                json["props"]["sku"][1], "b",
                "{format:?}: props print as JSON"
            );
        }
        // A GET's event prints no empty fields.
        let mut buf = Vec::new();
        event(&c).encode_into(RecordFormat::Rkyv, &mut buf);
        let json = serde_json::to_value(decode(RecordFormat::Rkyv, &buf).unwrap()).unwrap();
        assert!(json.get("props").is_none() && json.get("event_type").is_none());
        assert_eq!(json["route"], "event");
    }

    /// The reference's consumers know fields 1..=8 only: a record with beacon's fields 9..=12
    /// decodes there to the same eight values.
    #[test]
    fn the_references_consumers_still_decode_every_record() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct ReferenceTrackingEvent {
            #[prost(string, tag = "1")]
            programid: String,
            #[prost(string, tag = "2")]
            checksum: String,
            #[prost(int32, tag = "3")]
            customer_id: i32,
            #[prost(string, tag = "4")]
            user_agent: String,
            #[prost(string, tag = "5")]
            program_name: String,
            #[prost(string, tag = "6")]
            customer_name: String,
            #[prost(bool, tag = "7")]
            is_valid: bool,
            #[prost(string, tag = "8")]
            message_id: String,
        }
        let c = sample();
        let mut e = event(&c);
        e.route = EventRoute::Post;
        e.extras.event_type = "click";
        e.extras.client_ts_ms = Some(1);
        e.extras.props = r#"{"a":1}"#;
        let mut buf = Vec::new();
        e.encode_into(RecordFormat::Protobuf, &mut buf);
        let old: ReferenceTrackingEvent = prost::Message::decode(&buf[..]).unwrap();
        assert_eq!(old.programid, "212313");
        assert_eq!(old.customer_id, 9124);
        assert_eq!(old.message_id, "06bc2944-886c-4e56-907c-fa248c8af023");
        assert!(old.is_valid);
    }

    #[test]
    fn protobuf_is_the_references_tracking_event() {
        let c = sample();
        let mut buf = Vec::new();
        event(&c).encode_into(RecordFormat::Protobuf, &mut buf);
        // Field 1 (programid), wire type 2, length 6, "212313".
        assert_eq!(&buf[..8], b"\x0a\x06212313");
        let DecodedEvent::Protobuf(pb) = decode(RecordFormat::Protobuf, &buf).unwrap() else {
            panic!()
        };
        assert_eq!(pb.customer_id, 9124);
        assert_eq!(pb.message_id, "06bc2944-886c-4e56-907c-fa248c8af023");
        assert!(pb.valid);
    }

    #[test]
    fn empty_user_agent_is_still_an_event() {
        let c = sample();
        let mut e = event(&c);
        e.user_agent = "";
        let mut buf = Vec::new();
        e.encode_into(RecordFormat::Protobuf, &mut buf);
        assert!(decode(RecordFormat::Protobuf, &buf).is_ok());
        assert!(std::str::from_utf8(&e.response_json())
            .unwrap()
            .starts_with(r#"{"userAgent":"","#));
    }
}
