//! The tracking event: what one accepted request produces, and its encodings.
//!
//! - `rkyv` records: a 4-byte header (`b"BK"`, format version as u16 LE) and an rkyv archive
//!   of `EventV1`. A schema change adds `EventV2` with a new version number; `decode` keeps
//!   reading every version ever written.
//! - `protobuf` records: the reference's `TrackingEvent`, byte-compatible with its consumers
//!   (field numbers from the reference; fields it does not have are not sent).
//! - The HTTP response body of `/event`: the reference's JSON, in its field order.

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

impl Event<'_> {
    fn to_v1(&self) -> EventV1 {
        EventV1 {
            message_id: *self.message_id.as_bytes(),
            program_id: self.campaign.program_id.clone(),
            program_name: self.campaign.program_name.clone(),
            checksum: self.campaign.checksum.clone(),
            customer_id: self.campaign.customer_id,
            customer_name: self.campaign.customer_name.clone(),
            valid: self.campaign.valid,
            validated: self.validated,
            user_agent: self.user_agent.to_owned(),
            received_at_ms: self.received_at_ms,
            client_ip: self.client_ip.to_owned(),
            trace_id: self.trace_id.to_owned(),
        }
    }

    /// Appends this event's record in `format` to `out`.
    pub fn encode_into(&self, format: RecordFormat, out: &mut Vec<u8>) {
        match format {
            RecordFormat::Rkyv => {
                let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_v1())
                    .expect("serializing to memory cannot fail");
                out.extend_from_slice(&RKYV_MAGIC);
                out.extend_from_slice(&EVENT_V1.to_le_bytes());
                out.extend_from_slice(&bytes);
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
