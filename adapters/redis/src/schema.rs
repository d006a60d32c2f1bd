//! The reference's Redis schema, both ways.
//!
//! - Hash `<key_prefix><programId>` with fields `programId, programName, checksum, customerId,
//!   customerName, valid` (all values strings: `"9124"`, `"true"`), plus beacon's optional
//!   `version` and `landingUrl` (where a click on the campaign goes).
//! - Channel payload: `{"programId":"212313","checksum":"124","customerId":9124,
//!   "customerName":"Customer2","programName":"program2","valid":true}` (an upsert, as the
//!   reference's updater publishes it), or beacon's `{"programId":"…","deleted":true}`; both may
//!   carry `"version": N`.

use std::collections::HashMap;

use beacon_engine::model::{check_id, Campaign};
use beacon_engine::ports::CoreDataUpdate;
use serde::Deserialize;

/// Why a channel message was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    TooLarge,
    NotJson,
    BadFields,
}

impl Rejected {
    pub const ALL: [Rejected; 3] = [Rejected::TooLarge, Rejected::NotJson, Rejected::BadFields];
    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::TooLarge => "too_large",
            Rejected::NotJson => "not_json",
            Rejected::BadFields => "bad_fields",
        }
    }
}

/// A hash read with HGETALL: `None` when it does not exist (an empty reply).
pub fn campaign_from_hash(fields: HashMap<String, String>) -> Result<Option<Campaign>, String> {
    if fields.is_empty() {
        return Ok(None);
    }
    let value = serde_json::Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    );
    Campaign::deserialize(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The hash fields of `c`, in the reference's layout.
pub fn hash_fields(c: &Campaign) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("programId", c.program_id.clone()),
        ("programName", c.program_name.clone()),
        ("checksum", c.checksum.clone()),
        ("customerId", c.customer_id.to_string()),
        ("customerName", c.customer_name.clone()),
        ("valid", c.valid.to_string()),
    ];
    if let Some(v) = c.version {
        fields.push(("version", v.to_string()));
    }
    if let Some(url) = &c.landing_url {
        fields.push(("landingUrl", url.clone()));
    }
    fields
}

/// The channel payload announcing `c`, in the reference's field order.
pub fn upsert_payload(c: &Campaign) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a> {
        program_id: &'a str,
        checksum: &'a str,
        customer_id: i32,
        customer_name: &'a str,
        program_name: &'a str,
        valid: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        landing_url: Option<&'a str>,
    }
    serde_json::to_string(&Payload {
        program_id: &c.program_id,
        checksum: &c.checksum,
        customer_id: c.customer_id,
        customer_name: &c.customer_name,
        program_name: &c.program_name,
        valid: c.valid,
        version: c.version,
        landing_url: c.landing_url.as_deref(),
    })
    .expect("serializing to memory cannot fail")
}

/// The channel payload announcing that program `id` is gone.
pub fn delete_payload(id: &str, version: Option<u64>) -> String {
    let mut v = serde_json::json!({ "programId": id, "deleted": true });
    if let Some(version) = version {
        v["version"] = version.into();
    }
    v.to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Deletion {
    program_id: String,
    #[allow(dead_code)]
    deleted: bool,
    #[serde(default)]
    version: Option<u64>,
}

/// Parses one channel message into the change it announces.
pub fn parse_message(payload: &[u8], bytes_max: usize) -> Result<CoreDataUpdate, Rejected> {
    if payload.len() > bytes_max {
        return Err(Rejected::TooLarge);
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| Rejected::NotJson)?;
    let update = if value.get("deleted") == Some(&serde_json::Value::Bool(true)) {
        let d = Deletion::deserialize(value).map_err(|_| Rejected::BadFields)?;
        CoreDataUpdate::Delete {
            id: d.program_id,
            version: d.version,
        }
    } else {
        CoreDataUpdate::Upsert(Campaign::deserialize(value).map_err(|_| Rejected::BadFields)?)
    };
    let id = match &update {
        CoreDataUpdate::Upsert(c) => c.program_id.as_str(),
        CoreDataUpdate::Delete { id, .. } => id.as_str(),
        CoreDataUpdate::Resync => unreachable!("not parsed from a message"),
    };
    check_id(id).map_err(|_| Rejected::BadFields)?;
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE_PAYLOAD: &str = r#"{"programId":"212313","checksum":"124","customerId":9124,"customerName":"Customer2","programName":"program2","valid":true}"#;

    #[test]
    fn the_references_payload_is_an_upsert_and_round_trips() {
        let CoreDataUpdate::Upsert(c) = parse_message(REFERENCE_PAYLOAD.as_bytes(), 1024).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.customer_id, 9124);
        assert_eq!(upsert_payload(&c), REFERENCE_PAYLOAD);
        let hash: HashMap<String, String> = hash_fields(&c)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(hash["customerId"], "9124");
        assert_eq!(hash["valid"], "true");
        assert_eq!(campaign_from_hash(hash).unwrap().unwrap(), c);
        assert_eq!(campaign_from_hash(HashMap::new()).unwrap(), None);
    }

    /// A landing URL (beacon's own field) survives the hash and the channel both ways, and a
    /// campaign without one writes no such field.
    #[test]
    fn landing_urls_round_trip() {
        let CoreDataUpdate::Upsert(mut c) =
            parse_message(REFERENCE_PAYLOAD.as_bytes(), 1024).unwrap()
        else {
            panic!()
        };
        assert!(!hash_fields(&c).iter().any(|(k, _)| *k == "landingUrl"));
        c.landing_url = Some("https://shop.example.com/sale".into());
        let hash: HashMap<String, String> = hash_fields(&c)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(campaign_from_hash(hash).unwrap().unwrap(), c);
        let CoreDataUpdate::Upsert(back) =
            parse_message(upsert_payload(&c).as_bytes(), 1024).unwrap()
        else {
            panic!()
        };
        assert_eq!(back, c);
    }

    #[test]
    fn deletes_and_versions() {
        let d = parse_message(delete_payload("212313", Some(7)).as_bytes(), 1024).unwrap();
        assert_eq!(
            d,
            CoreDataUpdate::Delete {
                id: "212313".into(),
                version: Some(7)
            }
        );
        let v = r#"{"programId":"1","checksum":"1","customerId":1,"customerName":"c","programName":"p","valid":true,"version":3}"#;
        let CoreDataUpdate::Upsert(c) = parse_message(v.as_bytes(), 1024).unwrap() else {
            panic!()
        };
        assert_eq!(c.version, Some(3));
    }

    #[test]
    fn garbage_is_rejected_with_its_reason() {
        assert_eq!(parse_message(b"{nope", 1024), Err(Rejected::NotJson));
        assert_eq!(
            parse_message(br#"{"programId":5}"#, 1024),
            Err(Rejected::BadFields)
        );
        assert_eq!(
            parse_message(br#"{"programId":"1","checksum":"1","customerId":"x","customerName":"c","programName":"p"}"#, 1024),
            Err(Rejected::BadFields)
        );
        assert_eq!(
            parse_message(br#"{"programId":"a b","checksum":"1","customerId":1,"customerName":"c","programName":"p"}"#, 1024),
            Err(Rejected::BadFields)
        );
        assert_eq!(
            parse_message(&vec![b' '; 2048], 1024),
            Err(Rejected::TooLarge)
        );
    }
}
