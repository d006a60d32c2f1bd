//! Segment files: any bytes are read without a panic, every problem lies inside the file, and
//! a frame written by `put_frame` reads back as it was written, also after the bytes under test.
#![no_main]

use beacon_engine::embedded::{put_frame, read_frame, read_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut events = 0usize;
    read_segment(
        data,
        |_| events += 1,
        |offset, what| {
            assert!((offset as usize) < data.len(), "{offset} {what}");
        },
    );
    assert!(events <= data.len() / 9);

    let mut framed = Vec::new();
    put_frame(&mut framed, 0, &[data]);
    let (body, next) = read_frame(&framed, 0, 0).expect("a frame just written");
    assert_eq!(body, data);
    assert_eq!(next, framed.len());
});
