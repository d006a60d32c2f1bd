//! The body of `POST /events`: whatever the bytes, no panic, and every event it takes is one
//! the GET routes would take (a valid id), with a bounded type and props that are a JSON object
//! within the limit.
#![no_main]

use beacon_engine::model::check_id;
use beacon_engine::model::intake::{parse_body, IntakeLimits, Item, EVENT_TYPE_BYTES_MAX};
use libfuzzer_sys::fuzz_target;

const LIMITS: IntakeLimits = IntakeLimits {
    events_per_request_max: 16,
    props_bytes_max: 256,
};

fuzz_target!(|body: &[u8]| {
    let Ok(items) = parse_body(body, &LIMITS) else {
        return;
    };
    assert!(!items.is_empty() && items.len() <= LIMITS.events_per_request_max);
    for item in &items {
        match item {
            Item::Event(e) => {
                assert!(check_id(&e.program_id).is_ok(), "{e:?}");
                assert!(!e.event_type.is_empty() && e.event_type.len() <= EVENT_TYPE_BYTES_MAX);
                assert!(e.props.len() <= LIMITS.props_bytes_max);
                if !e.props.is_empty() {
                    let v: serde_json::Value = serde_json::from_str(&e.props)
                        .unwrap_or_else(|err| panic!("props {:?}: {err}", e.props));
                    assert!(v.is_object());
                    assert!(!e.props.contains('\n'), "compact: {:?}", e.props);
                }
            }
            Item::Bad { status, reason } => {
                assert!(matches!(status, 400 | 413), "{status}");
                assert!(!reason.is_empty());
            }
        }
    }
});
