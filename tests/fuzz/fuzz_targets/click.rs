//! The click target check: whatever the requested URL, a redirect only ever goes to an http(s)
//! URL without user info whose host (as a browser parses it) is allowed.
#![no_main]

use beacon_engine::model::click::{host_matches, target};
use libfuzzer_sys::fuzz_target;

const LANDING: &str = "https://landing.example/ad";

fuzz_target!(|requested: &str| {
    let allowed = ["shop.example.com".to_string(), "*.brand.example".to_string()];
    let Ok(to) = target(requested, Some(LANDING), &allowed) else {
        return;
    };
    assert!(
        !to.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\'),
        "{to:?}"
    );
    let url = url::Url::parse(&to).expect("a target is a URL");
    assert!(matches!(url.scheme(), "http" | "https"), "{to}");
    assert!(url.username().is_empty() && url.password().is_none(), "{to}");
    let host = url.host_str().expect("a target has a host");
    assert!(
        host == "landing.example" || allowed.iter().any(|p| host_matches(p, host)),
        "{requested:?} -> {to}"
    );
});
