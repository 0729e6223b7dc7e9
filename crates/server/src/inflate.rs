//! Unpacking what the build script compressed into the binary: the web UI's
//! files (kept only gzipped, unpacked for the rare client that takes no
//! gzip) and each language's API error texts (kept as DEFLATE, unpacked when
//! the server first answers in that language). Storing them once, compressed,
//! saves about half a MiB of the binary; the unpacker (`miniz_oxide`, the
//! decoder alone) costs a few KiB.
//!
//! The data comes from the build, not from a client: the output size is
//! known in advance, so the output buffer is allocated once at that size and
//! a stream that would not fill it exactly is refused (never grown).

/// `deflated` (raw DEFLATE, RFC 1951) inflated, if it makes exactly `len`
/// bytes.
pub(crate) fn inflate(deflated: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = vec![0; len];
    // No zlib header, hence no Adler-32 to check.
    let n = miniz_oxide::inflate::decompress_slice_iter_to_slice(
        &mut out,
        std::iter::once(deflated),
        false,
        true,
    )
    .ok()?;
    (n == len).then_some(out)
}

/// A gzip member (RFC 1952) as the build script writes it, unpacked, if it
/// holds exactly `len` bytes. Only that member's header is taken (no name,
/// comment or extra field: flags 0); its CRC-32 is not checked, since the
/// bytes are the binary's own (the length in its trailer is).
#[cfg(feature = "ui")]
pub(crate) fn gunzip(gz: &[u8], len: usize) -> Option<Vec<u8>> {
    const HEADER: usize = 10;
    const TRAILER: usize = 8;
    if gz.len() < HEADER + TRAILER || gz[..4] != [0x1f, 0x8b, 8, 0] {
        return None;
    }
    let (body, trailer) = gz[HEADER..].split_at(gz.len() - HEADER - TRAILER);
    let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    // ISIZE is the length modulo 2^32 (the UI's files are far below 4 GiB).
    if u64::from(size) != len as u64 % (1 << 32) {
        return None;
    }
    inflate(body, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "hello, hello, hello\n" gzipped at level 9 without a name or time (flags 0).
    const HELLO_GZ: [u8; 30] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xd7, 0x51,
        0xc8, 0x40, 0xa2, 0xb8, 0x00, 0xe7, 0x42, 0x6e, 0x52, 0x14, 0x00, 0x00, 0x00,
    ];
    const HELLO: &[u8] = b"hello, hello, hello\n";

    /// The DEFLATE stream inside the member.
    fn deflated() -> &'static [u8] {
        &HELLO_GZ[10..HELLO_GZ.len() - 8]
    }

    #[test]
    fn a_stream_inflates_to_exactly_its_length() {
        assert_eq!(inflate(deflated(), HELLO.len()).as_deref(), Some(HELLO));
        // A wrong length is refused, not grown or cut.
        for len in [0, HELLO.len() - 1, HELLO.len() + 1, 1 << 20] {
            assert_eq!(inflate(deflated(), len), None, "{len}");
        }
        assert_eq!(inflate(&deflated()[..8], HELLO.len()), None, "cut short");
    }

    #[cfg(feature = "ui")]
    #[test]
    fn a_member_unpacks_to_exactly_its_length() {
        assert_eq!(gunzip(&HELLO_GZ, HELLO.len()).as_deref(), Some(HELLO));
        for len in [0, HELLO.len() - 1, HELLO.len() + 1, 1 << 20] {
            assert_eq!(gunzip(&HELLO_GZ, len), None, "{len}");
        }
    }

    #[cfg(feature = "ui")]
    #[test]
    fn anything_but_such_a_member_is_refused() {
        let mut named = HELLO_GZ;
        named[3] = 0x08; // FNAME: a header this unpacker does not read
        let mut cut = HELLO_GZ.to_vec();
        cut.truncate(20);
        // The length its trailer gives is not the one expected (the CRC-32
        // is not checked, so a flipped bit in the data may go unnoticed:
        // the bytes are the binary's own).
        let mut broken = HELLO_GZ;
        broken[26] ^= 1;
        for bad in [&named[..], &cut[..], &broken[..], &[][..], HELLO, &HELLO_GZ[..10]] {
            assert_eq!(gunzip(bad, HELLO.len()), None, "{bad:?}");
        }
    }
}
