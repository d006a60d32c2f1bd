//! Core-data announcements on the Redis channel: any payload is parsed or rejected, never a panic.
#![no_main]

use beacon_engine::model::check_id;
use beacon_engine::ports::CoreDataUpdate;
use beacon_redis::schema::{parse_message, Rejected};
use libfuzzer_sys::fuzz_target;

const BYTES_MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    match parse_message(data, BYTES_MAX) {
        Err(Rejected::TooLarge) => assert!(data.len() > BYTES_MAX),
        Err(_) => {}
        Ok(CoreDataUpdate::Upsert(c)) => {
            assert!(check_id(&c.program_id).is_ok(), "{:?}", c.program_id)
        }
        Ok(CoreDataUpdate::Delete { id, .. }) => assert!(check_id(&id).is_ok(), "{id:?}"),
        Ok(CoreDataUpdate::Resync) => {}
    }
});
