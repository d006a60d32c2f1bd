//! The request path: route classification and the campaign id check.
#![no_main]

use beacon_engine::config::CAMPAIGN_ID_BYTES_MAX;
use beacon_engine::model::{check_id, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let (route, id) = Route::of_path(path);
    let tracking = matches!(route, Route::Event | Route::Pixel);
    assert_eq!(tracking, id.is_some(), "{path:?} -> {route:?}");
    if let Some(id) = id {
        assert!(path.contains(id));
        if check_id(id).is_ok() {
            assert!(!id.is_empty() && id.len() <= CAMPAIGN_ID_BYTES_MAX);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        }
    }
});
