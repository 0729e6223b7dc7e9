//! Minimal DER reading and writing for the few private-key structures this
//! crate must look into (PKCS#1, SEC1, PKCS#8).
//!
//! Why our own ~100 lines instead of a crate: we only need to walk the top
//! level of three well-known structures (to learn the key algorithm, the RSA
//! modulus size and the EC curve, and to wrap PKCS#1/SEC1 into PKCS#8). The
//! RustCrypto `der` types would need a struct per structure, and the `sec1` /
//! `pkcs1` crates are not otherwise in the tree.

/// DER tag of an INTEGER.
pub(crate) const TAG_INTEGER: u8 = 0x02;
/// DER tag of an OCTET STRING.
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
/// DER tag of NULL.
pub(crate) const TAG_NULL: u8 = 0x05;
/// DER tag of an OBJECT IDENTIFIER.
pub(crate) const TAG_OID: u8 = 0x06;
/// DER tag of a SEQUENCE (constructed).
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
/// DER tag of the context-specific constructed `[0]`.
pub(crate) const TAG_CONTEXT_0: u8 = 0xA0;

/// OID content bytes of rsaEncryption (1.2.840.113549.1.1.1).
pub(crate) const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
/// OID content bytes of RSASSA-PSS (1.2.840.113549.1.1.10).
pub(crate) const OID_RSASSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
/// OID content bytes of id-ecPublicKey (1.2.840.10045.2.1).
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// OID content bytes of prime256v1 / P-256 (1.2.840.10045.3.1.7).
pub(crate) const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// OID content bytes of secp384r1 / P-384 (1.3.132.0.34).
pub(crate) const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
/// OID content bytes of secp521r1 / P-521 (1.3.132.0.35).
pub(crate) const OID_P521: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
/// OID content bytes of Ed25519 (1.3.101.112).
pub(crate) const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];
/// OID content bytes of Ed448 (1.3.101.113).
pub(crate) const OID_ED448: &[u8] = &[0x2B, 0x65, 0x71];
/// OID content bytes of X25519 (1.3.101.110).
pub(crate) const OID_X25519: &[u8] = &[0x2B, 0x65, 0x6E];
/// OID content bytes of X448 (1.3.101.111).
pub(crate) const OID_X448: &[u8] = &[0x2B, 0x65, 0x6F];
/// OID content bytes of id-dsa (1.2.840.10040.4.1).
pub(crate) const OID_DSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01];

/// One DER element: its tag and its content bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    /// The (single-byte) tag.
    pub(crate) tag: u8,
    /// The content octets.
    pub(crate) value: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the rest.
///
/// Only single-byte tags and definite lengths of up to four length octets
/// are accepted (all that the key structures use).
pub(crate) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None; // multi-byte tag
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
}

/// Reads `input` as exactly one element with the given tag (no trailing bytes).
pub(crate) fn read_exact(input: &[u8], tag: u8) -> Option<&[u8]> {
    match read(input)? {
        (tlv, []) if tlv.tag == tag => Some(tlv.value),
        _ => None,
    }
}

/// Splits the content of a constructed element into its children.
pub(crate) fn children(mut value: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !value.is_empty() {
        let (tlv, rest) = read(value)?;
        out.push(tlv);
        value = rest;
    }
    Some(out)
}

/// Number of significant bits of an unsigned big-endian INTEGER content.
pub(crate) fn integer_bits(value: &[u8]) -> u32 {
    let significant: &[u8] = match value.iter().position(|&b| b != 0) {
        Some(i) => &value[i..],
        None => return 0,
    };
    let len = u32::try_from(significant.len()).unwrap_or(u32::MAX / 8);
    len * 8 - significant[0].leading_zeros()
}

/// Encodes one element with a definite length.
pub(crate) fn write(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// Concatenates already encoded elements into a SEQUENCE.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    write(TAG_SEQUENCE, &parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_long_length() {
        let value = vec![7u8; 300];
        let encoded = write(TAG_OCTET_STRING, &value);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2C]);
        let (tlv, rest) = read(&encoded).expect("decodes");
        assert!(rest.is_empty());
        assert_eq!(tlv.value, &value[..]);
    }

    #[test]
    fn rejects_overlong_and_short() {
        assert!(read(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
        assert!(read(&[0x30, 0x03, 1]).is_none());
        assert!(read(&[]).is_none());
        assert!(read(&[0x1F, 0x00]).is_none());
    }

    #[test]
    fn integer_bits_ignores_leading_zero() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x7F, 0x00]), 15);
        assert_eq!(integer_bits(&[0, 0]), 0);
    }
}
