//! Private keys: decoding PEM key blocks (plain or encrypted), learning the
//! key algorithm, converting to PKCS#8, loading with the build's provider.

use std::sync::Arc;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipherDecrypt, BlockModeDecrypt, KeyIvInit};
use md5::{Digest, Md5};
use rustls::sign::SigningKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

use crate::der;
use crate::error::CertError;
use crate::pem_input::Block;

/// Most PBKDF2 iterations we run for an encrypted PKCS#8 key (OpenSSL uses
/// 2048, modern tools up to 600 000). Bounds the CPU an upload can cost.
const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
/// Most memory (bytes) an scrypt-encrypted key may ask for: 64 MiB, 4x
/// OpenSSL's default. Larger parameters could exhaust the device's memory.
const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;

/// Elliptic curves we can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    /// NIST P-256 / prime256v1.
    P256,
    /// NIST P-384 / secp384r1.
    P384,
    /// NIST P-521 / secp521r1.
    P521,
    /// Another or an unnamed (explicit parameters) curve.
    Other,
}

impl Curve {
    /// Curve from the content bytes of its OID.
    pub(crate) fn from_oid(oid: &[u8]) -> Curve {
        match oid {
            der::OID_P256 => Curve::P256,
            der::OID_P384 => Curve::P384,
            der::OID_P521 => Curve::P521,
            _ => Curve::Other,
        }
    }

    /// Display name, as browsers show it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::Other => "unknown curve",
        }
    }

    /// Key size in bits.
    pub(crate) fn bits(self) -> u32 {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
            Curve::Other => 0,
        }
    }
}

/// The algorithm of a public or private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyAlgorithm {
    /// RSA with the modulus size in bits.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
    },
    /// ECDSA on a curve.
    Ecdsa(Curve),
    /// Ed25519.
    Ed25519,
    /// Anything else, with a human name (DSA, Ed448, ...).
    Other(String),
}

impl KeyAlgorithm {
    /// Algorithm from the OID and parameters of an AlgorithmIdentifier
    /// (`params` = the parameters element, if any) and, for RSA, the modulus.
    pub(crate) fn from_oid(oid: &[u8], params: Option<der::Tlv<'_>>, rsa_bits: u32) -> KeyAlgorithm {
        match oid {
            der::OID_RSA_ENCRYPTION => KeyAlgorithm::Rsa { bits: rsa_bits },
            der::OID_EC_PUBLIC_KEY => KeyAlgorithm::Ecdsa(match params {
                Some(p) if p.tag == der::TAG_OID => Curve::from_oid(p.value),
                _ => Curve::Other,
            }),
            der::OID_ED25519 => KeyAlgorithm::Ed25519,
            der::OID_RSASSA_PSS => KeyAlgorithm::Other("RSA-PSS".into()),
            der::OID_DSA => KeyAlgorithm::Other("DSA".into()),
            der::OID_ED448 => KeyAlgorithm::Other("Ed448".into()),
            der::OID_X25519 => KeyAlgorithm::Other("X25519".into()),
            der::OID_X448 => KeyAlgorithm::Other("X448".into()),
            _ => KeyAlgorithm::Other("unknown".into()),
        }
    }

    /// Refuses what the device does not serve: RSA under 2048 bits, curves
    /// other than P-256/P-384, DSA and the rest.
    pub(crate) fn check_supported(&self) -> Result<(), CertError> {
        match self {
            KeyAlgorithm::Rsa { bits } if *bits < 2048 => Err(CertError::RsaKeyTooSmall { bits: *bits }),
            KeyAlgorithm::Rsa { .. } | KeyAlgorithm::Ed25519 => Ok(()),
            KeyAlgorithm::Ecdsa(Curve::P256 | Curve::P384) => Ok(()),
            KeyAlgorithm::Ecdsa(curve) => {
                Err(CertError::UnsupportedKeyType { key_type: format!("ECDSA {}", curve.name()) })
            }
            KeyAlgorithm::Other(name) => Err(CertError::UnsupportedKeyType { key_type: name.clone() }),
        }
    }
}

/// Learns the algorithm of a private key from its DER.
pub(crate) fn algorithm(key: &PrivateKeyDer<'_>) -> Option<KeyAlgorithm> {
    match key {
        PrivateKeyDer::Pkcs1(k) => {
            Some(KeyAlgorithm::Rsa { bits: pkcs1_modulus_bits(k.secret_pkcs1_der())? })
        }
        PrivateKeyDer::Sec1(k) => Some(KeyAlgorithm::Ecdsa(
            sec1_curve_oid(k.secret_sec1_der()).map_or(Curve::Other, Curve::from_oid),
        )),
        PrivateKeyDer::Pkcs8(k) => {
            let info = der::children(der::read_exact(k.secret_pkcs8_der(), der::TAG_SEQUENCE)?)?;
            let (alg_id, private_key) = (info.get(1)?, info.get(2)?);
            if alg_id.tag != der::TAG_SEQUENCE || private_key.tag != der::TAG_OCTET_STRING {
                return None;
            }
            let alg = der::children(alg_id.value)?;
            let oid = alg.first().filter(|t| t.tag == der::TAG_OID)?;
            let rsa_bits =
                if oid.value == der::OID_RSA_ENCRYPTION { pkcs1_modulus_bits(private_key.value)? } else { 0 };
            Some(KeyAlgorithm::from_oid(oid.value, alg.get(1).copied(), rsa_bits))
        }
        _ => None,
    }
}

/// Modulus size of a PKCS#1 RSAPrivateKey.
fn pkcs1_modulus_bits(pkcs1: &[u8]) -> Option<u32> {
    let fields = der::children(der::read_exact(pkcs1, der::TAG_SEQUENCE)?)?;
    let modulus = fields.get(1).filter(|t| t.tag == der::TAG_INTEGER)?;
    Some(der::integer_bits(modulus.value))
}

/// The named-curve OID inside a SEC1 ECPrivateKey, if it carries one.
fn sec1_curve_oid(sec1: &[u8]) -> Option<&[u8]> {
    let fields = der::children(der::read_exact(sec1, der::TAG_SEQUENCE)?)?;
    let params = fields.iter().find(|t| t.tag == der::TAG_CONTEXT_0)?;
    der::read_exact(params.value, der::TAG_OID)
}

/// Whether `bytes` is one well-formed DER SEQUENCE starting with an INTEGER
/// (the shape of PKCS#1, SEC1 and PKCS#8 keys). Used to confirm a decryption.
fn looks_like_key(bytes: &[u8]) -> bool {
    der::read_exact(bytes, der::TAG_SEQUENCE)
        .and_then(der::children)
        .is_some_and(|c| c.len() >= 2 && c[0].tag == der::TAG_INTEGER)
}

/// Converts any supported key form to PKCS#8 (`PRIVATE KEY`), as OpenSSL 3
/// writes it. `None` for a SEC1 key without curve parameters.
pub(crate) fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Option<PrivatePkcs8KeyDer<'static>> {
    let version = der::write(der::TAG_INTEGER, &[0]);
    let (alg_id, inner) = match key {
        PrivateKeyDer::Pkcs8(k) => return Some(k.clone_key()),
        PrivateKeyDer::Pkcs1(k) => (
            der::sequence(&[
                &der::write(der::TAG_OID, der::OID_RSA_ENCRYPTION),
                &der::write(der::TAG_NULL, &[]),
            ]),
            k.secret_pkcs1_der(),
        ),
        PrivateKeyDer::Sec1(k) => {
            let curve = sec1_curve_oid(k.secret_sec1_der())?;
            (
                der::sequence(&[
                    &der::write(der::TAG_OID, der::OID_EC_PUBLIC_KEY),
                    &der::write(der::TAG_OID, curve),
                ]),
                k.secret_sec1_der(),
            )
        }
        _ => return None,
    };
    let octets = der::write(der::TAG_OCTET_STRING, inner);
    Some(PrivatePkcs8KeyDer::from(der::sequence(&[&version, &alg_id, &octets])))
}

/// PEM text of a key: PKCS#8 `PRIVATE KEY` if possible, else its own form.
pub(crate) fn to_pem(key: &PrivateKeyDer<'_>) -> String {
    let (label, der) = match to_pkcs8(key) {
        Some(pkcs8) => ("PRIVATE KEY", pkcs8.secret_pkcs8_der().to_vec()),
        None => match key {
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der().to_vec()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der().to_vec()),
            other => ("PRIVATE KEY", other.secret_der().to_vec()),
        },
    };
    ::pem::encode_config(
        &::pem::Pem::new(label, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}

/// Loads a key with the build's provider (the one the TLS server uses).
pub(crate) fn load(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, CertError> {
    crate::crypto::load_signing_key(key).map_err(|e| CertError::InvalidPrivateKey { detail: e.to_string() })
}

/// A private key taken from an upload.
pub(crate) struct DecodedKey {
    /// The plain key.
    pub(crate) der: PrivateKeyDer<'static>,
    /// Whether it was stored encrypted.
    pub(crate) was_encrypted: bool,
}

/// Whether a PEM label is a private key block.
pub(crate) fn is_key_label(label: &str) -> bool {
    label.ends_with("PRIVATE KEY")
}

/// Decodes a private key block, decrypting it with `passphrase` if needed.
pub(crate) fn decode(block: &Block, passphrase: Option<&str>) -> Result<DecodedKey, CertError> {
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let encrypted_legacy =
        block.header("Proc-Type").is_some_and(|v| v.to_ascii_uppercase().contains("ENCRYPTED"));
    let invalid =
        |what: &str| CertError::InvalidPrivateKey { detail: format!("the {what} block is not a valid key") };
    let (der, was_encrypted) = match block.label.as_str() {
        "PRIVATE KEY" => {
            if !looks_like_key(&block.contents) {
                return Err(invalid("PRIVATE KEY"));
            }
            (PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.contents.clone())), false)
        }
        "ENCRYPTED PRIVATE KEY" => {
            let pass = passphrase.ok_or(CertError::PassphraseRequired)?;
            let plain = decrypt_pkcs8(&block.contents, pass)?;
            (PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain)), true)
        }
        label @ ("RSA PRIVATE KEY" | "EC PRIVATE KEY") => {
            let plain = if encrypted_legacy {
                let pass = passphrase.ok_or(CertError::PassphraseRequired)?;
                decrypt_legacy(block, pass)?
            } else if looks_like_key(&block.contents) {
                block.contents.clone()
            } else {
                return Err(invalid(label));
            };
            let der = if label == "RSA PRIVATE KEY" {
                PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(plain))
            } else {
                PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(plain))
            };
            (der, encrypted_legacy)
        }
        "DSA PRIVATE KEY" => {
            return Err(CertError::UnsupportedKeyType { key_type: "DSA".into() });
        }
        "OPENSSH PRIVATE KEY" => {
            return Err(CertError::InvalidPrivateKey {
                detail: "OpenSSH key files are not supported; convert the key with `ssh-keygen -p -m PKCS8 -f key`".into(),
            });
        }
        other => {
            return Err(CertError::InvalidPrivateKey { detail: format!("{other} blocks are not supported") });
        }
    };
    Ok(DecodedKey { der, was_encrypted })
}

/// Decrypts a PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2) to plain PKCS#8 DER.
fn decrypt_pkcs8(der: &[u8], passphrase: &str) -> Result<Vec<u8>, CertError> {
    use pkcs8::pkcs5::{EncryptionScheme, Error as Pkcs5Error};

    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der).map_err(|e| {
        CertError::UnsupportedEncryption { detail: format!("unreadable PKCS#8 encryption parameters: {e}") }
    })?;
    match &info.encryption_algorithm {
        EncryptionScheme::Pbes2(params) => {
            let too_costly = |what: &str| CertError::UnsupportedEncryption {
                detail: format!("{what} beyond the device's limits"),
            };
            if let Some(p) = params.kdf.pbkdf2()
                && p.iteration_count > MAX_PBKDF2_ITERATIONS
            {
                return Err(too_costly("PBKDF2 iteration count"));
            }
            if let Some(s) = params.kdf.scrypt() {
                let memory = 128u64
                    .saturating_mul(u64::from(s.block_size))
                    .saturating_mul(s.cost_parameter)
                    .saturating_mul(u64::from(s.parallelization).max(1));
                if memory > MAX_SCRYPT_MEMORY {
                    return Err(too_costly("scrypt cost"));
                }
            }
        }
        _ => {
            return Err(CertError::UnsupportedEncryption { detail: "PKCS#5 v1.5 / PKCS#12 PBES1".into() });
        }
    }
    match info.decrypt(passphrase.as_bytes()) {
        Ok(doc) if looks_like_key(doc.as_bytes()) => Ok(doc.as_bytes().to_vec()),
        Ok(_) => Err(CertError::WrongPassphrase),
        Err(pkcs8::Error::EncryptedPrivateKey(
            e @ (Pkcs5Error::UnsupportedAlgorithm { .. }
            | Pkcs5Error::NoPbes1CryptSupport
            | Pkcs5Error::AlgorithmParametersInvalid { .. }),
        )) => Err(CertError::UnsupportedEncryption { detail: e.to_string() }),
        // DecryptFailed (bad padding) or a plaintext that is not DER: one
        // answer for both, so that padding is no oracle.
        Err(_) => Err(CertError::WrongPassphrase),
    }
}

/// Decrypts OpenSSL's traditional `Proc-Type: 4,ENCRYPTED` PEM body.
///
/// No maintained crate does this (RFC 7468 PEM has no headers), so it is
/// done here: key = EVP_BytesToKey(MD5, count 1, salt = first 8 IV bytes),
/// then CBC with PKCS#7 padding.
fn decrypt_legacy(block: &Block, passphrase: &str) -> Result<Vec<u8>, CertError> {
    let bad_header = || CertError::InvalidPrivateKey {
        detail: "the DEK-Info header of the encrypted key is missing or malformed".into(),
    };
    let dek = block.header("DEK-Info").ok_or_else(bad_header)?;
    let (cipher, iv_hex) = dek.split_once(',').ok_or_else(bad_header)?;
    let iv = hex::decode(iv_hex.trim()).map_err(|_| bad_header())?;
    let cipher = cipher.trim().to_ascii_uppercase();
    let (key_len, block_len) = match cipher.as_str() {
        "AES-128-CBC" => (16, 16),
        "AES-192-CBC" => (24, 16),
        "AES-256-CBC" => (32, 16),
        "DES-EDE3-CBC" => (24, 8),
        "DES-CBC" => (8, 8),
        _ => {
            return Err(CertError::UnsupportedEncryption { detail: cipher });
        }
    };
    if iv.len() != block_len {
        return Err(bad_header());
    }
    let key = evp_bytes_to_key(passphrase.as_bytes(), &iv[..8], key_len);
    let ct = &block.contents;
    let plain = match cipher.as_str() {
        "AES-128-CBC" => cbc_decrypt::<aes::Aes128>(&key, &iv, ct),
        "AES-192-CBC" => cbc_decrypt::<aes::Aes192>(&key, &iv, ct),
        "AES-256-CBC" => cbc_decrypt::<aes::Aes256>(&key, &iv, ct),
        "DES-EDE3-CBC" => cbc_decrypt::<des::TdesEde3>(&key, &iv, ct),
        _ => cbc_decrypt::<des::Des>(&key, &iv, ct),
    };
    // About 1 in 256 wrong passphrases passes the padding check: confirm by
    // the structure, and give the same answer either way.
    match plain {
        Some(plain) if looks_like_key(&plain) => Ok(plain),
        _ => Err(CertError::WrongPassphrase),
    }
}

/// CBC decryption with PKCS#7 unpadding; `None` on any failure.
fn cbc_decrypt<C>(key: &[u8], iv: &[u8], ct: &[u8]) -> Option<Vec<u8>>
where
    C: BlockCipherDecrypt,
    cbc::Decryptor<C>: KeyIvInit + BlockModeDecrypt,
{
    cbc::Decryptor::<C>::new_from_slices(key, iv).ok()?.decrypt_padded_vec::<Pkcs7>(ct).ok()
}

/// OpenSSL's EVP_BytesToKey with MD5 and one iteration.
fn evp_bytes_to_key(pass: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < len {
        let digest = Md5::new().chain_update(&prev).chain_update(pass).chain_update(salt).finalize();
        prev = digest.to_vec();
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cbc -k secret -S 0102030405060708 -P -md md5`
        let key = evp_bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 32);
        assert_eq!(
            hex::encode_upper(&key),
            "C9E5A1BD216DBE1317E230CEF48F38EE7F0E17AD64022144BCCEC4A1AA2879AB"
        );
        let again = evp_bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 16);
        assert_eq!(&key[..16], &again[..]);
    }

    #[test]
    fn unknown_blocks_are_refused() {
        let block = Block { label: "DSA PRIVATE KEY".into(), headers: vec![], contents: vec![0x30, 0x00] };
        let err = decode(&block, None).err().map(|e| e.code().as_str());
        assert_eq!(err, Some("unsupported_key_type"));
    }
}
