//! The blocks of interest in uploaded or stored PEM files, sorted into
//! certificates and keys: what intake and the stored-material reader share.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::{CertError, FIELD_PRIVATE_KEY};
use crate::pem_input::{Block, read_blocks};
use crate::private_key;

/// The blocks of interest found in the input files.
pub(crate) struct Collected {
    /// Certificates in file order (first file first), duplicates removed.
    pub(crate) certificates: Vec<CertificateDer<'static>>,
    /// Private key blocks in file order.
    pub(crate) keys: Vec<Block>,
    /// Whether a certificate request block was seen.
    pub(crate) saw_csr: bool,
}

impl Collected {
    /// The certificates, or why there are none.
    pub(crate) fn certificates_or_error(self) -> Result<Vec<CertificateDer<'static>>, CertError> {
        if !self.certificates.is_empty() {
            Ok(self.certificates)
        } else if self.saw_csr {
            Err(CertError::CsrNotCertificate)
        } else {
            Err(CertError::NoCertificate)
        }
    }
}

/// Splits each (file, field) into blocks and sorts them.
pub(crate) fn collect(files: &[(&[u8], &'static str)]) -> Result<Collected, CertError> {
    let mut out = Collected { certificates: Vec::new(), keys: Vec::new(), saw_csr: false };
    for &(input, field) in files {
        for block in read_blocks(input, field)? {
            match block.label.as_str() {
                "CERTIFICATE" | "X509 CERTIFICATE" => push_unique(&mut out.certificates, block.contents),
                // OpenSSL's trusted form appends trust settings after the
                // certificate; keep the certificate only.
                "TRUSTED CERTIFICATE" => {
                    let der = match X509Certificate::from_der(&block.contents) {
                        Ok((rest, _)) => block.contents[..block.contents.len() - rest.len()].to_vec(),
                        Err(_) => block.contents,
                    };
                    push_unique(&mut out.certificates, der);
                }
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => out.saw_csr = true,
                label if private_key::is_key_label(label) => out.keys.push(block),
                // EC PARAMETERS, PUBLIC KEY, PKCS7, ...: not ours to judge.
                _ => {}
            }
        }
    }
    Ok(out)
}

fn push_unique(certs: &mut Vec<CertificateDer<'static>>, der: Vec<u8>) {
    if !certs.iter().any(|c| c.as_ref() == der.as_slice()) {
        certs.push(CertificateDer::from(der));
    }
}

/// Decodes the one plain key of a stored key file.
pub(crate) fn decode_single_key(key_pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    let collected = collect(&[(key_pem, FIELD_PRIVATE_KEY)])?;
    let block = collected.keys.first().ok_or(CertError::NoPrivateKey)?;
    Ok(private_key::decode(block, None)?.der)
}
