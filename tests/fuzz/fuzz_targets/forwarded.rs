//! `X-Forwarded-For`: the client address is an address that is in the header, or the peer.
#![no_main]

use beacon_engine::model::client_ip;
use libfuzzer_sys::fuzz_target;

const PEER: &str = "192.0.2.1";

fuzz_target!(|data: &[u8]| {
    let Some((&hops, header)) = data.split_first() else {
        return;
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let ip = client_ip(Some(header), usize::from(hops % 5), PEER);
    if ip != PEER {
        assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip:?}");
        assert!(header.contains(ip));
    }
});
