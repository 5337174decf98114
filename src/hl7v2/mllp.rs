//! MLLP framing (Release 2: `0x0B` message `0x1C 0x0D`) as a tokio codec. Bytes before a start
//! block are skipped (a sender's stray newline must not kill the connection); a frame larger
//! than the limit is an error, after which the connection is closed, since its end cannot be
//! found safely.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("an MLLP frame exceeds {0} bytes")]
    TooLarge(usize),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// The codec: frames in, ACK frames out.
pub struct Mllp {
    max: usize,
    /// Bytes of the current frame already searched for its end.
    scanned: usize,
}

impl Mllp {
    pub fn new(max: usize) -> Self {
        Mllp { max, scanned: 0 }
    }
}

impl Decoder for Mllp {
    type Item = Vec<u8>;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, FrameError> {
        // Skip anything before the start block.
        match buf.iter().position(|b| *b == START) {
            Some(0) => {}
            Some(i) => {
                buf.advance(i);
                self.scanned = 0;
            }
            None => {
                buf.clear();
                self.scanned = 0;
                return Ok(None);
            }
        }
        let from = self.scanned.max(1);
        let end = buf[from..].windows(2).position(|w| w == END).map(|i| from + i);
        match end {
            Some(end) => {
                let frame = buf[1..end].to_vec();
                buf.advance(end + 2);
                self.scanned = 0;
                if frame.len() > self.max {
                    return Err(FrameError::TooLarge(self.max));
                }
                Ok(Some(frame))
            }
            None if buf.len() > self.max + 3 => Err(FrameError::TooLarge(self.max)),
            None => {
                // The last byte may be the first half of the end block.
                self.scanned = buf.len().saturating_sub(1).max(1);
                Ok(None)
            }
        }
    }
}

impl Encoder<Vec<u8>> for Mllp {
    type Error = FrameError;

    fn encode(&mut self, item: Vec<u8>, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(item.len() + 3);
        dst.put_u8(START);
        dst.put_slice(&item);
        dst.put_slice(&END);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_skip_garbage_and_limit() {
        let mut c = Mllp::new(16);
        let mut buf = BytesMut::from(&b"\r\nnoise\x0bMSH|a\x1c"[..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\r\x0bMSH|b\x1c\r");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), b"MSH|a");
        assert_eq!(c.decode(&mut buf).unwrap().unwrap(), b"MSH|b");
        assert!(c.decode(&mut buf).unwrap().is_none());
        let mut big = BytesMut::from(&b"\x0b0123456789012345678901"[..]);
        assert!(matches!(c.decode(&mut big), Err(FrameError::TooLarge(16))));
        let mut out = BytesMut::new();
        c.encode(b"ACK".to_vec(), &mut out).unwrap();
        assert_eq!(&out[..], b"\x0bACK\x1c\r");
    }
}
