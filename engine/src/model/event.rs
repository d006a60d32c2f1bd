//! The tracking event: what one accepted request produces, and its encodings.
//!
//! - `rkyv` records: a 4-byte header (`b"BK"`, format version as u16 LE) and an rkyv archive
//!   of `EventV1`. A schema change adds `EventV2` with a new version number; `decode` keeps
//!   reading every version ever written.
//! - `protobuf` records: the reference's `TrackingEvent`, byte-compatible with its consumers
//!   (field numbers from the reference; fields it does not have are not sent).
//! - The HTTP response body of `/event`: the reference's JSON, in its field order.

use rkyv::munge::munge;
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
}

/// `EventV1` borrowed from an `Event`: it archives to exactly `ArchivedEventV1`, byte for byte
/// what `EventV1` archives to (a test holds the two together), without first copying seven
/// strings into an owned `EventV1`. This runs once per accepted request.
struct EventV1Ref<'a> {
    message_id: [u8; 16],
    program_id: &'a str,
    program_name: &'a str,
    checksum: &'a str,
    customer_id: i32,
    customer_name: &'a str,
    valid: bool,
    validated: bool,
    user_agent: &'a str,
    received_at_ms: u64,
    client_ip: &'a str,
    trace_id: &'a str,
}

/// Where each string of an `EventV1Ref` was written.
struct EventV1RefResolver {
    program_id: StringResolver,
    program_name: StringResolver,
    checksum: StringResolver,
    customer_name: StringResolver,
    user_agent: StringResolver,
    client_ip: StringResolver,
    trace_id: StringResolver,
}

impl rkyv::Archive for EventV1Ref<'_> {
    type Archived = ArchivedEventV1;
    type Resolver = EventV1RefResolver;

    fn resolve(&self, r: Self::Resolver, out: Place<ArchivedEventV1>) {
        munge!(let ArchivedEventV1 {
            message_id, program_id, program_name, checksum, customer_id, customer_name, valid,
            validated, user_agent, received_at_ms, client_ip, trace_id,
        } = out);
        self.message_id.resolve([(); 16], message_id);
        ArchivedString::resolve_from_str(self.program_id, r.program_id, program_id);
        ArchivedString::resolve_from_str(self.program_name, r.program_name, program_name);
        ArchivedString::resolve_from_str(self.checksum, r.checksum, checksum);
        self.customer_id.resolve((), customer_id);
        ArchivedString::resolve_from_str(self.customer_name, r.customer_name, customer_name);
        self.valid.resolve((), valid);
        self.validated.resolve((), validated);
        ArchivedString::resolve_from_str(self.user_agent, r.user_agent, user_agent);
        self.received_at_ms.resolve((), received_at_ms);
        ArchivedString::resolve_from_str(self.client_ip, r.client_ip, client_ip);
        ArchivedString::resolve_from_str(self.trace_id, r.trace_id, trace_id);
    }
}

impl<S> rkyv::Serialize<S> for EventV1Ref<'_>
where
    S: Fallible + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
    str: rkyv::SerializeUnsized<S>,
{
    /// The strings in field order, as the derived `Serialize` of `EventV1` writes them.
    fn serialize(&self, s: &mut S) -> Result<EventV1RefResolver, S::Error> {
        Ok(EventV1RefResolver {
            program_id: ArchivedString::serialize_from_str(self.program_id, s)?,
            program_name: ArchivedString::serialize_from_str(self.program_name, s)?,
            checksum: ArchivedString::serialize_from_str(self.checksum, s)?,
            customer_name: ArchivedString::serialize_from_str(self.customer_name, s)?,
            user_agent: ArchivedString::serialize_from_str(self.user_agent, s)?,
            client_ip: ArchivedString::serialize_from_str(self.client_ip, s)?,
            trace_id: ArchivedString::serialize_from_str(self.trace_id, s)?,
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
    fn v1_ref(&self) -> EventV1Ref<'_> {
        EventV1Ref {
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
        }
    }

    /// Appends this event's record in `format` to `out`.
    pub fn encode_into(&self, format: RecordFormat, out: &mut Vec<u8>) {
        match format {
            RecordFormat::Rkyv => {
                out.extend_from_slice(&RKYV_MAGIC);
                out.extend_from_slice(&EVENT_V1.to_le_bytes());
                let start = out.len();
                rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(
                    &self.v1_ref(),
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
}

impl DecodedEvent {
    pub fn message_id(&self) -> String {
        match self {
            DecodedEvent::V1(e) => Uuid::from_bytes(e.message_id).hyphenated().to_string(),
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
                EVENT_V1 => {
                    // rkyv reads in place but needs its buffer aligned; records inside a batch
                    // are not, so copy into an aligned buffer first.
                    let mut aligned = rkyv::util::AlignedVec::<16>::new();
                    aligned.extend_from_slice(&bytes[RKYV_HEADER_BYTES..]);
                    rkyv::from_bytes::<EventV1, rkyv::rancor::Error>(&aligned)
                        .map(DecodedEvent::V1)
                        .map_err(|e| DecodeError::Rkyv(e.to_string()))
                }
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
            }))
        }
    }
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

    fn owned_v1(e: &Event<'_>) -> EventV1 {
        EventV1 {
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
        }
    }

    #[test]
    fn borrowed_records_are_the_owned_records_byte_for_byte() {
        let mut c = sample();
        for (name, ua) in [
            ("", ""),
            ("12345678", "123456789"),
            ("program2", &"u".repeat(300)[..]),
        ] {
            c.program_name = name.to_string();
            let mut e = event(&c);
            e.user_agent = ua;
            let owned = rkyv::to_bytes::<rkyv::rancor::Error>(&owned_v1(&e)).unwrap();
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
        let DecodedEvent::V1(v1) = &decoded else {
            panic!()
        };
        assert_eq!(v1.program_name, "program2");
        assert_eq!(v1.user_agent, "curl/7.54.0");
        assert_eq!(decoded.message_id(), "06bc2944-886c-4e56-907c-fa248c8af023");
        let mut future = buf[1..].to_vec();
        future[2] = 9;
        assert!(matches!(
            decode(RecordFormat::Rkyv, &future),
            Err(DecodeError::Version(9))
        ));
        assert!(decode(RecordFormat::Rkyv, &buf[1..10]).is_err());
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
