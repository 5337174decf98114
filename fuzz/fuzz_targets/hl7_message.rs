//! Arbitrary bytes through everything the HL7 v2 path does before the database: decoding,
//! parsing, the ACK, and the ADT/VXU mapping. Then, for UTF-8 input, the message accessors.
#![no_main]

use hearth::hl7v2::message::{V2, unescape};
use hearth::hl7v2::process::map_only;
use libfuzzer_sys::fuzz_target;

const SEGMENTS: &[&str] = &["MSH", "EVN", "PID", "PV1", "ORC", "RXA", "RXR", "OBX", "MRG", "ERR"];

// Field numbers start at 1 (field 0 is "absent").
fn accessors(m: &V2<'_>) {
    let sep = m.separators();
    for seg in SEGMENTS {
        for n in 1..30 {
            for c in 0..10 {
                let _ = m.get(seg, n, c);
            }
            let Some(f) = m.field(seg, n) else { continue };
            let reps = m.repeats(f);
            for rep in 0..reps.min(4) + 1 {
                for c in 0..10 {
                    let _ = m.component(f, rep, c);
                }
                // `sub` is 1-based in both component and subcomponent (documented).
                for c in 1..10 {
                    for s in 1..5 {
                        let _ = m.sub(f, rep, c, s);
                    }
                }
            }
            let _ = unescape(f.raw_value(), sep);
        }
    }
    for seg in &m.message.segments {
        for n in 1..30 {
            for c in 0..4 {
                let _ = m.at(seg, n, c);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = map_only(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = V2::parse(text) {
            accessors(&m);
            let _ = unescape(text, m.separators());
        }
    }
});
