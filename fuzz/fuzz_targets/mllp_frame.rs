//! The MLLP decoder fed in chunks whose sizes come from the input, with a small frame limit.
//! Invariants: no panic; every frame it yields is at most `max` bytes and holds no end block
//! (`0x1C 0x0D`); the buffer it keeps never grows past what was fed; after an error, stop
//! (the listener closes the connection).
#![no_main]

use bytes::BytesMut;
use hearth::hl7v2::mllp::{FrameError, Mllp};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // Limit 64..=4159 from two bytes; chunk size 1..=256 from the third.
    let max = 64 + (u16::from_le_bytes([data[0], data[1]]) as usize % 4096);
    let chunk = data[2] as usize + 1;
    let stream = &data[3..];
    let mut codec = Mllp::new(max);
    let mut buf = BytesMut::new();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut chunked_failed = false;
    'feed: for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        // Decode until it asks for more bytes, as FramedRead does.
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame of {} bytes over the limit {max}", frame.len());
                    assert!(!frame.windows(2).any(|w| w == [0x1C, 0x0D]), "frame holds an end block");
                    assert!(buf.len() < before, "a frame came out but no byte was consumed");
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(buf.len() <= before);
                    break;
                }
                Err(FrameError::TooLarge(n)) => {
                    assert_eq!(n, max);
                    chunked_failed = true;
                    break 'feed;
                }
                Err(e) => panic!("unexpected error from an in-memory decode: {e}"),
            }
        }
        // Bounded memory: a buffer still waiting for its end holds at most max + 3 bytes
        // (start block, frame, the first byte of an end block).
        assert!(buf.len() <= max + 3, "buffer of {} bytes kept with limit {max}", buf.len());
    }
    // Chunking changes nothing: the same frames, and the same error, as the whole stream
    // decoded in one piece.
    let mut whole = Mllp::new(max);
    let mut wbuf = BytesMut::from(stream);
    let mut wframes = Vec::new();
    let mut failed = false;
    loop {
        match whole.decode(&mut wbuf) {
            Ok(Some(f)) => wframes.push(f),
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert_eq!(chunked_failed, failed, "chunking changed the outcome (chunk {chunk}, max {max})");
    assert_eq!(frames, wframes, "chunking changed the frames (chunk {chunk}, max {max})");
});
