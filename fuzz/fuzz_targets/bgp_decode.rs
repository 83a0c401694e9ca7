//! Feeds arbitrary bytes to the BGP codec: framing and decoding must never panic, in either
//! AS-number width. Whatever decodes with 4-octet AS numbers must survive re-encoding: encoding
//! it and decoding again gives the same message (decoding normalises, so this is a fixed point).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tabby_bgp::wire::{self, Context};

fuzz_target!(|data: &[u8]| {
    // Framing on the raw stream, then every framed message, as the session reads them.
    let mut rest = data;
    while let Ok(Some(len)) = wire::frame(rest) {
        let (msg, tail) = rest.split_at(len);
        rest = tail;
        let _ = wire::decode(msg, Context { four_octet_as: false });
        let four = Context { four_octet_as: true };
        let Ok((decoded, _faults)) = wire::decode(msg, four) else {
            continue;
        };
        // Re-encoding may legitimately not fit (one capability per parameter grows an OPEN).
        let Ok(bytes) = wire::encode(&decoded, four) else {
            continue;
        };
        let (again, _) = wire::decode(&bytes, four)
            .unwrap_or_else(|e| panic!("re-encoded {decoded:?} does not decode: {e}"));
        assert_eq!(again, decoded, "decode(encode(m)) differs");
    }
});
