//! KPL aggregated records (what the consumers read): any bytes decode or are refused.
//!
//! A mutated record almost never keeps its MD5 trailer, so inputs starting with an odd byte
//! get a correct trailer added: the protobuf decoding behind the digest check is fuzzed too.
#![no_main]

use beacon_kinesis::aggregate::deaggregate;
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

const MAGIC: [u8; 4] = [0xf3, 0x89, 0x9a, 0xc2];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let record = match mode % 2 {
        0 => rest.to_vec(),
        _ => [&MAGIC[..], rest, Md5::digest(rest).as_slice()].concat(),
    };
    if let Some(entries) = deaggregate(&record) {
        // Every record came out of the input: together they cannot be larger than it.
        let inner: usize = entries.iter().map(|e| e.data.len()).sum();
        assert!(inner <= record.len());
    }
});
