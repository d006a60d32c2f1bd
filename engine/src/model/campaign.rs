//! Campaign ("program") core data and campaign id validation.

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::CAMPAIGN_ID_BYTES_MAX;

/// One program's core data, in the reference's field names (camelCase on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    pub program_id: String,
    pub program_name: String,
    /// Opaque attribute of the program, carried into every event; never verified.
    #[serde(deserialize_with = "string_or_number")]
    pub checksum: String,
    #[serde(deserialize_with = "int_or_string")]
    pub customer_id: i32,
    pub customer_name: String,
    /// A program whose `valid` is false is refused (403) and produces no event.
    #[serde(default = "yes", deserialize_with = "bool_or_string")]
    pub valid: bool,
    /// Optional, increasing per program: an update older than what the cache holds is ignored.
    /// Not part of the reference's schema; absent means "unordered" (last write wins).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_u64_or_string"
    )]
    pub version: Option<u64>,
    /// Where a click on the campaign's ad goes when the click names no URL, and a host a click
    /// may always be sent to (`GET /click/{id}`). Optional; not part of the reference's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_url: Option<String>,
}

impl Campaign {
    /// Stands in for a campaign whose core data could not be read, when the engine is
    /// configured to accept such requests: only the id is known.
    pub fn unvalidated(id: &str) -> Campaign {
        Campaign {
            program_id: id.to_string(),
            program_name: String::new(),
            checksum: String::new(),
            customer_id: 0,
            customer_name: String::new(),
            valid: true,
            version: None,
            landing_url: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Why a campaign id from a request path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadId {
    Empty,
    TooLong,
    BadChar,
}

impl BadId {
    pub fn as_str(self) -> &'static str {
        match self {
            BadId::Empty => "empty",
            BadId::TooLong => "too_long",
            BadId::BadChar => "bad_char",
        }
    }

    /// What a client is told: the GET routes' 400 body (as a JSON string) and a posted
    /// event's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            BadId::Empty => "ProgramId missing",
            BadId::TooLong => "ProgramId longer than 128 bytes",
            BadId::BadChar => "ProgramId may only hold A-Z a-z 0-9 _ -",
        }
    }
}

/// Accepts 1..=128 bytes of `[A-Za-z0-9_-]`.
pub fn check_id(id: &str) -> Result<(), BadId> {
    if id.is_empty() {
        return Err(BadId::Empty);
    }
    if id.len() > CAMPAIGN_ID_BYTES_MAX {
        return Err(BadId::TooLong);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(BadId::BadChar);
    }
    Ok(())
}

// Redis hashes hold every value as a string ("9124", "true") while the pub/sub payload and the
// JSON file use numbers and booleans; both spellings are accepted everywhere.

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Bool(bool),
    Str(String),
    Float(f64),
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Str(s) => Ok(s),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Float(f) => Ok(f.to_string()),
        Scalar::Bool(_) => Err(serde::de::Error::custom("expected a string or a number")),
    }
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use serde::de::Error;
    match Scalar::deserialize(d)? {
        Scalar::Int(i) => {
            i32::try_from(i).map_err(|_| D::Error::custom("customerId out of int32 range"))
        }
        Scalar::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("customerId {s:?} is not an int32"))),
        _ => Err(D::Error::custom("customerId must be an int32")),
    }
}

fn opt_u64_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Option::<Scalar>::deserialize(d)? {
        None => Ok(None),
        Some(Scalar::Int(i)) if i >= 0 => Ok(Some(i as u64)),
        Some(Scalar::Str(s)) => {
            s.trim().parse().map(Some).map_err(|_| {
                D::Error::custom(format!("version {s:?} is not a non-negative integer"))
            })
        }
        _ => Err(D::Error::custom("version must be a non-negative integer")),
    }
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    use serde::de::Error;
    match Scalar::deserialize(d)? {
        Scalar::Bool(b) => Ok(b),
        Scalar::Str(s) if s == "true" => Ok(true),
        Scalar::Str(s) if s == "false" => Ok(false),
        _ => Err(D::Error::custom("valid must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(check_id("212313"), Ok(()));
        assert_eq!(check_id("a-b_C9"), Ok(()));
        assert_eq!(check_id(""), Err(BadId::Empty));
        assert_eq!(check_id(&"x".repeat(129)), Err(BadId::TooLong));
        assert_eq!(check_id(&"x".repeat(128)), Ok(()));
        assert_eq!(check_id("a b"), Err(BadId::BadChar));
        assert_eq!(check_id("é"), Err(BadId::BadChar));
        assert_eq!(check_id("a%20"), Err(BadId::BadChar));
    }

    #[test]
    fn both_spellings_parse() {
        let from_pubsub: Campaign = serde_json::from_str(
            r#"{"programId":"212313","checksum":"124","customerId":9124,"customerName":"Customer2","programName":"program2","valid":true}"#,
        )
        .unwrap();
        let from_hash: Campaign = serde_json::from_str(
            r#"{"programId":"212313","checksum":"124","customerId":"9124","customerName":"Customer2","programName":"program2","valid":"true"}"#,
        )
        .unwrap();
        assert_eq!(from_pubsub, from_hash);
        assert_eq!(from_hash.customer_id, 9124);
        let bad = serde_json::from_str::<Campaign>(
            r#"{"programId":"1","checksum":"1","customerId":"x","customerName":"c","programName":"p"}"#,
        );
        assert!(bad.is_err());
    }
}
