//! Length + CRC framing of records in a file, shared by the segment files and the Kinesis
//! sink's spool:
//!
//! ```text
//! u32 LE length | u32 LE CRC-32 of the body | body
//! ```
//!
//! A body may start with a fixed-size tag that the length does not count (`uncounted` bytes:
//! the segment files' format byte), so each file format keeps its layout while one piece of
//! code writes and checks frames. A frame whose length runs past the end of the data is torn
//! (a crash during the write); a frame whose CRC does not match is damaged.

/// Bytes of a frame's header: length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Why a frame could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The data ends inside the frame: the tail of an interrupted write.
    Torn,
    /// The body does not match its CRC.
    Checksum,
}

impl FrameError {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameError::Torn => "torn record at end of file",
            FrameError::Checksum => "checksum mismatch",
        }
    }
}

/// Appends one frame whose body is `parts` concatenated; the length counts all but the first
/// `uncounted` bytes of the body.
pub fn put_frame(out: &mut Vec<u8>, uncounted: usize, parts: &[&[u8]]) {
    let body: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(body >= uncounted);
    let len = u32::try_from(body - uncounted).expect("a framed record is under 4 GiB");
    let mut crc = crc32fast::Hasher::new();
    for p in parts {
        crc.update(p);
    }
    out.reserve(FRAME_HEADER_BYTES + body);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The frame at `at` in `bytes`: its body and where the next frame starts.
pub fn read_frame(bytes: &[u8], at: usize, uncounted: usize) -> Result<(&[u8], usize), FrameError> {
    let header = bytes
        .get(at..at + FRAME_HEADER_BYTES)
        .ok_or(FrameError::Torn)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let start = at + FRAME_HEADER_BYTES;
    let end = start
        .checked_add(len + uncounted)
        .filter(|&end| end <= bytes.len())
        .ok_or(FrameError::Torn)?;
    let body = &bytes[start..end];
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Checksum);
    }
    Ok((body, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_told_from_a_torn_tail() {
        let mut out = Vec::new();
        put_frame(&mut out, 1, &[&[2], b"first"]);
        put_frame(&mut out, 0, &[b"ab", b"second"]);
        let (body, next) = read_frame(&out, 0, 1).unwrap();
        assert_eq!(body, b"\x02first");
        assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 5);
        let (body, end) = read_frame(&out, next, 0).unwrap();
        assert_eq!((body, end), (&b"absecond"[..], out.len()));

        assert_eq!(
            read_frame(&out[..out.len() - 1], next, 0),
            Err(FrameError::Torn)
        );
        assert_eq!(read_frame(&out[..next + 3], next, 0), Err(FrameError::Torn));
        let mut flipped = out.clone();
        flipped[next + FRAME_HEADER_BYTES] ^= 1;
        assert_eq!(read_frame(&flipped, next, 0), Err(FrameError::Checksum));
        let mut huge = out.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_frame(&huge, 0, 1), Err(FrameError::Torn));
    }
}
