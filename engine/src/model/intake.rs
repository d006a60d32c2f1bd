//! The body of `POST /events`, read into events: one JSON object, a JSON array of objects, or
//! newline-delimited JSON (any whitespace between values). No I/O; the HTTP layer reads and
//! inflates the body, and the fuzz target `intake` drives this directly.
//!
//! Two levels of failure: a body that is not JSON (or not UTF-8, or holds more events than the
//! limit) is refused whole (`BodyError`), and nothing is taken; an object that is JSON but not a
//! valid event is refused alone (`Item::Bad`), and the others are taken.

use std::borrow::Cow;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::check_id;

/// The longest event `type`.
pub const EVENT_TYPE_BYTES_MAX: usize = 64;
/// The `type` of an event posted without one.
pub const DEFAULT_EVENT_TYPE: &str = "custom";
/// The deepest nesting of arrays and objects a body may have: the batch, the event, its
/// props, and 29 levels of the user's own. Deeper bodies are refused whole, wherever the
/// nesting is (in an ignored field too).
pub const NESTING_MAX: usize = 32;

/// What a body may hold (`[tracking]`).
#[derive(Clone, Copy, Debug)]
pub struct IntakeLimits {
    pub events_per_request_max: usize,
    pub props_bytes_max: usize,
}

/// Why a whole body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not UTF-8 (at byte {0})")]
    NotUtf8(usize),
    #[error("body is empty: send a JSON object, an array of objects, or one object a line")]
    Empty,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("{0} events in one request; at most {1} (tracking.events_per_request_max)")]
    TooManyEvents(usize, usize),
    #[error("arrays and objects nested deeper than {NESTING_MAX} levels")]
    TooDeep,
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooManyEvents(..) => 413,
            _ => 400,
        }
    }
}

/// One event of a body, as the client sent it and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedEvent<'a> {
    /// Passed `check_id`; whether the campaign exists is the tracking path's question.
    pub program_id: Cow<'a, str>,
    pub event_id: Option<Uuid>,
    /// `[A-Za-z0-9_.-]`, 1..=64 bytes; `custom` when the client sent none.
    pub event_type: Cow<'a, str>,
    pub client_ts_ms: Option<u64>,
    /// Compact JSON object text, at most `props_bytes_max` bytes; empty when none.
    pub props: String,
}

/// An object of the body: an event, or why it is refused (an HTTP status and a reason).
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    Event(PostedEvent<'a>),
    Bad { status: u16, reason: String },
}

impl Item<'_> {
    fn bad(status: u16, reason: impl Into<String>) -> Self {
        Item::Bad {
            status,
            reason: reason.into(),
        }
    }
}

/// The objects of `body`, in order.
pub fn parse_body<'a>(body: &'a [u8], limits: &IntakeLimits) -> Result<Vec<Item<'a>>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8(e.valid_up_to()))?;
    if nested_deeper_than(text, NESTING_MAX) {
        return Err(BodyError::TooDeep);
    }
    let mut values: Vec<&'a RawValue> = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<&'a RawValue>() {
        let value = value.map_err(|e| BodyError::NotJson(e.to_string()))?;
        values.push(value);
        // A body of many small values cannot make a large vector before it is refused.
        if values.len() > limits.events_per_request_max {
            return Err(BodyError::TooManyEvents(
                values.len(),
                limits.events_per_request_max,
            ));
        }
    }
    let elements: Vec<&'a RawValue> = match values[..] {
        [] => return Err(BodyError::Empty),
        [one] if one.get().starts_with('[') => {
            let elements: Vec<&'a RawValue> =
                serde_json::from_str(one.get()).map_err(|e| BodyError::NotJson(e.to_string()))?;
            if elements.is_empty() {
                return Err(BodyError::Empty);
            }
            elements
        }
        _ => values,
    };
    if elements.len() > limits.events_per_request_max {
        return Err(BodyError::TooManyEvents(
            elements.len(),
            limits.events_per_request_max,
        ));
    }
    Ok(elements.into_iter().map(|v| item(v, limits)).collect())
}

/// An object's fields as sent; unknown fields are ignored (a newer SDK may send more), a field
/// given twice refuses the event.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "programId", borrow)]
    program_id: Option<Cow<'a, str>>,
    #[serde(rename = "eventId", borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    event_type: Option<Cow<'a, str>>,
    ts: Option<u64>,
    #[serde(borrow)]
    props: Option<&'a RawValue>,
}

fn item<'a>(value: &'a RawValue, limits: &IntakeLimits) -> Item<'a> {
    if !value.get().starts_with('{') {
        return Item::bad(400, "an event must be a JSON object");
    }
    let wire: Wire<'a> = match serde_json::from_str(value.get()) {
        Ok(w) => w,
        Err(e) => return Item::bad(400, e.to_string()),
    };
    let program_id = match wire.program_id {
        None => return Item::bad(400, "ProgramId missing"),
        Some(id) => id,
    };
    if let Err(bad) = check_id(&program_id) {
        return Item::bad(400, bad.reason());
    }
    let event_id = match wire.event_id.as_deref().map(Uuid::try_parse) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Item::bad(400, "eventId must be a UUID"),
    };
    let event_type = wire.event_type.unwrap_or(Cow::Borrowed(DEFAULT_EVENT_TYPE));
    if event_type.is_empty()
        || event_type.len() > EVENT_TYPE_BYTES_MAX
        || !event_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Item::bad(400, "type must be 1 to 64 of A-Z a-z 0-9 _ . -");
    }
    let props = match wire.props {
        None => String::new(),
        Some(raw) if raw.get() == "null" => String::new(),
        Some(raw) => {
            if !raw.get().starts_with('{') {
                return Item::bad(400, "props must be a JSON object");
            }
            if let Err(e) = serde_json::from_str::<Checked>(raw.get()) {
                return Item::bad(400, format!("props: {e}"));
            }
            let compact = compact(raw.get());
            if compact.len() > limits.props_bytes_max {
                return Item::bad(
                    413,
                    format!(
                        "props is {} bytes; at most {} (tracking.props_bytes_max)",
                        compact.len(),
                        limits.props_bytes_max
                    ),
                );
            }
            compact
        }
    };
    Item::Event(PostedEvent {
        program_id,
        event_id,
        event_type,
        client_ts_ms: wire.ts,
        props,
    })
}

/// Whether `[` and `{` outside strings nest deeper than `max` anywhere in `text` (which need
/// not be valid JSON: this runs before the parser).
fn nested_deeper_than(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// JSON text (already known to be one valid value) without the whitespace between tokens:
/// the bytes of strings and numbers are kept exactly as sent.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// A JSON value read only to be checked: no object holds a key twice, and every number is a
/// finite double (serde_json refuses `1e400`). Nesting is bounded by serde_json's recursion
/// limit (128).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CheckVisitor)
    }
}

struct CheckVisitor;

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Checked, E> {
        if v.is_finite() {
            Ok(Checked)
        } else {
            Err(E::custom("a number out of range"))
        }
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut keys: std::collections::HashSet<Cow<'de, str>> = Default::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if !keys.insert(key.0.clone()) {
                return Err(de::Error::custom(format_args!("duplicate key {:?}", key.0)));
            }
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: IntakeLimits = IntakeLimits {
        events_per_request_max: 100,
        props_bytes_max: 64,
    };

    fn parse(body: &str) -> Result<Vec<Item<'_>>, BodyError> {
        parse_body(body.as_bytes(), &LIMITS)
    }

    fn event<'a>(item: &'a Item<'a>) -> &'a PostedEvent<'a> {
        match item {
            Item::Event(e) => e,
            Item::Bad { reason, .. } => panic!("refused: {reason}"),
        }
    }

    fn bad(item: &Item<'_>) -> (u16, String) {
        match item {
            Item::Bad { status, reason } => (*status, reason.clone()),
            Item::Event(e) => panic!("taken: {e:?}"),
        }
    }

    #[test]
    fn one_object_an_array_or_one_a_line() {
        let one = parse(r#"{"programId":"212313"}"#).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(event(&one[0]).event_type, "custom");
        let array = parse(r#" [ {"programId":"1"}, {"programId":"2"} ] "#).unwrap();
        assert_eq!(array.len(), 2);
        let lines =
            parse("{\"programId\":\"1\"}\n{\"programId\":\"2\"}\n\n{\"programId\":\"3\"}\n")
                .unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(event(&lines[2]).program_id, "3");
    }

    #[test]
    fn every_field_is_read_and_props_compacted() {
        let items = parse(
            r#"{"programId":"212313","eventId":"6f1c5b5e-8e53-4c3a-9a55-1f0d0c7c2b11",
                "type":"conversion","ts":1700000000123,
                "props":{ "value" : 12.50, "s":"a b\" }", "n":[1, 2] },"extra":true}"#,
        )
        .unwrap();
        let e = event(&items[0]);
        assert_eq!(
            e.event_id.unwrap().to_string(),
            "6f1c5b5e-8e53-4c3a-9a55-1f0d0c7c2b11"
        );
        assert_eq!(e.event_type, "conversion");
        assert_eq!(e.client_ts_ms, Some(1_700_000_000_123));
        assert_eq!(e.props, r#"{"value":12.50,"s":"a b\" }","n":[1,2]}"#);
    }

    #[test]
    fn bad_objects_are_refused_alone() {
        let items = parse(
            r#"[{"programId":"1"}, {}, {"programId":"a/b"}, {"programId":"1","eventId":"x"},
               {"programId":"1","type":"has space"}, {"programId":"1","props":[1]},
               {"programId":"1","props":{"a":1,"a":2}}, {"programId":"1","ts":-1},
               {"programId":"1","programId":"2"}, 7,
               {"programId":"1","props":{"k":"0123456789012345678901234567890123456789012345678901234567890123"}},
               {"programId":"1","props":{"big":1e400}}]"#,
        )
        .unwrap();
        assert!(matches!(items[0], Item::Event(_)));
        let reasons: Vec<(u16, String)> = items[1..].iter().map(bad).collect();
        assert_eq!(reasons[0], (400, "ProgramId missing".into()));
        assert_eq!(reasons[1].1, "ProgramId may only hold A-Z a-z 0-9 _ -");
        assert_eq!(reasons[2].1, "eventId must be a UUID");
        assert!(reasons[3].1.starts_with("type must be"));
        assert_eq!(reasons[4].1, "props must be a JSON object");
        assert!(
            reasons[5].1.contains("duplicate key \"a\""),
            "{:?}",
            reasons[5]
        );
        assert!(reasons[6].1.contains("invalid value"), "{:?}", reasons[6]);
        assert!(reasons[7].1.contains("duplicate field"), "{:?}", reasons[7]);
        assert_eq!(reasons[8].1, "an event must be a JSON object");
        assert_eq!(reasons[9].0, 413, "{:?}", reasons[9]);
        assert_eq!(reasons[10].0, 400, "{:?}", reasons[10]);
    }

    #[test]
    fn bodies_that_are_not_json_take_nothing() {
        for body in [
            "",
            "  \n",
            "[]",
            "{",
            "{\"programId\":\"1\"} x",
            "[{\"programId\":1},",
            "nul",
        ] {
            assert!(parse(body).is_err(), "{body:?}");
        }
        assert_eq!(
            parse_body(b"{\"programId\":\"\xff\"}", &LIMITS),
            Err(BodyError::NotUtf8(14))
        );
        // Nesting is refused whole past NESTING_MAX, wherever it is; brackets in strings
        // do not count.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep), Err(BodyError::TooDeep));
        let nested = |levels: usize| {
            format!(
                "[{{\"programId\":\"1\",\"x\":\"[[[{{\",\"props\":{{\"a\":{}{}}}}}]",
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        assert!(matches!(
            parse(&nested(NESTING_MAX - 3)).unwrap()[0],
            Item::Event(_)
        ));
        assert_eq!(parse(&nested(NESTING_MAX - 2)), Err(BodyError::TooDeep));
    }

    #[test]
    fn too_many_events_is_refused_whole() {
        let limits = IntakeLimits {
            events_per_request_max: 2,
            ..LIMITS
        };
        let three = r#"[{"programId":"1"},{"programId":"2"},{"programId":"3"}]"#;
        let err = parse_body(three.as_bytes(), &limits).unwrap_err();
        assert_eq!(err, BodyError::TooManyEvents(3, 2));
        assert_eq!(err.status(), 413);
        let lines = "{\"programId\":\"1\"}\n".repeat(3);
        assert!(matches!(
            parse_body(lines.as_bytes(), &limits),
            Err(BodyError::TooManyEvents(3, 2))
        ));
    }

    #[test]
    fn compacting_keeps_strings_and_numbers_as_sent() {
        assert_eq!(
            compact(" { \"a b\" : [ 1.0 , \"\\\\\" , \"\\\" x\" ] } "),
            "{\"a b\":[1.0,\"\\\\\",\"\\\" x\"]}"
        );
    }
}
