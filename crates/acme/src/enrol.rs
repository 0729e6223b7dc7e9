//! One ACME enrolment: account, order, challenges, CSR, certificate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier,
    NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use portcullis_cert::KeyType;
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::client::{self, CONNECT_TIMEOUT, REQUEST_TIMEOUT};
use crate::error::{AcmeError, describe, describe_problem, problem_type};
use portcullis_core::acme::{AcmeSettings, Challenge, Ident, decode_eab_key};

/// Longest a whole enrolment may take, from the directory fetch to the certificate.
pub const ENROL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest wait for the CA to validate the challenges, and again for it to issue.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(2 * 60);

/// Bounds of one enrolment; [`Limits::default`] is what [`enrol`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a TCP connection to the ACME server.
    pub connect: Duration,
    /// Longest wait for the response head of one ACME request.
    pub request: Duration,
    /// Longest wait for the CA to validate, and again for it to issue.
    pub poll: Duration,
    /// Longest the whole enrolment may take.
    pub total: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { connect: CONNECT_TIMEOUT, request: REQUEST_TIMEOUT, poll: POLL_TIMEOUT, total: ENROL_TIMEOUT }
    }
}

/// Where the server publishes challenge answers; implemented by the server.
pub trait ChallengeResponder: Send + Sync {
    /// http-01: serve `key_authorization` at `/.well-known/acme-challenge/<token>` (plain HTTP listener).
    fn publish_http01(&self, token: &str, key_authorization: &str);
    /// tls-alpn-01: serve `cert` to ClientHellos offering ALPN `acme-tls/1` with SNI `identifier`
    /// (a DNS name, or for an IP address its reverse name as RFC 8738 says, e.g. `7.2.0.192.in-addr.arpa`).
    fn publish_tls_alpn01(&self, identifier: &str, cert: Arc<CertifiedKey>);
    /// Removes everything published for an order.
    fn clear(&self);
    /// Called as soon as a new account is registered, with its credentials JSON
    /// (the same [`enrol`] returns on success): store it (0600) right away, so
    /// that a failed enrolment's retry reuses it. CAs limit new accounts
    /// (Let's Encrypt: 10 per IP address in 3 hours), and retries back off
    /// from one minute. The default does nothing.
    fn account_created(&self, credentials_json: &str) {
        let _ = credentials_json;
    }
}

/// An issued certificate with its new private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The chain, leaf first, PEM.
    pub chain_pem: String,
    /// The certificate's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"[secret key elided]")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

/// Clears the responder however the enrolment ends, also when its future is dropped.
struct ClearOnDrop<'a>(&'a dyn ChallengeResponder);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Enrols a certificate for `settings.identifiers`: opens the stored account
/// (or creates one, with EAB if configured), orders, answers the challenges
/// through `responder`, sends a CSR for a new key of `settings.key_type`,
/// and fetches the chain. Returns it with the account credentials JSON to
/// store (0600); they change when a new account had to be created.
///
/// The settings are normalized and validated first (enrolment requires a
/// directory URL and identifiers even when `enabled` is false). The whole
/// enrolment is bounded by [`ENROL_TIMEOUT`], each wait for the CA by
/// [`POLL_TIMEOUT`], each request by [`REQUEST_TIMEOUT`].
/// Accepting the CA's terms of service is implied by configuring it.
pub async fn enrol(
    settings: &AcmeSettings,
    account: Option<&str>,
    responder: &dyn ChallengeResponder,
) -> Result<(Enrolled, String), AcmeError> {
    enrol_with(settings, account, responder, Limits::default()).await
}

/// [`enrol`] with other bounds (tests; a CA known to be slow).
pub async fn enrol_with(
    settings: &AcmeSettings,
    account: Option<&str>,
    responder: &dyn ChallengeResponder,
    limits: Limits,
) -> Result<(Enrolled, String), AcmeError> {
    let settings = settings.normalized();
    settings.validate_for_enrolment()?;
    // Leftovers of an interrupted enrolment would be served forever otherwise.
    responder.clear();
    let _clear = ClearOnDrop(responder);
    match tokio::time::timeout(limits.total, run(&settings, account, responder, limits)).await {
        Ok(result) => result,
        Err(_) => Err(AcmeError::Timeout { stage: "enrolling", after: limits.total }),
    }
}

async fn run(
    settings: &AcmeSettings,
    stored: Option<&str>,
    responder: &dyn ChallengeResponder,
    limits: Limits,
) -> Result<(Enrolled, String), AcmeError> {
    let idents = settings.parsed_identifiers()?;
    let acme_ids: Vec<Identifier> = idents
        .iter()
        .map(|i| match i {
            Ident::Dns(d) => Identifier::Dns(d.clone()),
            Ident::Ip(ip) => Identifier::Ip(*ip),
        })
        .collect();
    // Key generation (RSA: up to ~0.5 s) runs beside the network round trips.
    let key_type = settings.key_type;
    let csr_idents = idents.clone();
    let csr_task = tokio::task::spawn_blocking(move || key_and_csr(key_type, &csr_idents));

    let (account, mut credentials, reused) = open_account(settings, stored, limits).await?;
    if !reused {
        responder.account_created(&credentials);
    }
    let new_order = NewOrder::new(&acme_ids);
    let mut order = match account.new_order(&new_order).await {
        // The CA forgot the account (a test CA restarted, or it was deactivated): start afresh once.
        Err(e) if reused && problem_type(&e) == Some("accountDoesNotExist") => {
            tracing::warn!("the CA no longer knows the stored ACME account; creating a new one");
            let (account, fresh) = create_account(settings, limits).await?;
            responder.account_created(&fresh);
            credentials = fresh;
            account.new_order(&new_order).await.map_err(order_error)?
        }
        other => {
            let order = other.map_err(order_error)?;
            if reused {
                // The stored account keeps the contacts it was created with;
                // the settings may have changed them since. Not worth failing over.
                let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
                if let Err(e) = account.update_contacts(&contact).await {
                    tracing::warn!("updating the ACME account's contacts failed: {}", describe(&e));
                }
            }
            order
        }
    };

    answer_challenges(&mut order, settings.challenge, responder).await?;
    let policy =
        RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(limits.poll);
    let status = match order.poll_ready(&policy).await {
        Ok(status) => status,
        Err(instant_acme::Error::Timeout(_)) => {
            return Err(AcmeError::Timeout { stage: "waiting for the CA to validate", after: limits.poll });
        }
        Err(instant_acme::Error::Api(problem)) => return Err(validation_failure(&mut order, &problem).await),
        Err(e) => return Err(AcmeError::Protocol { detail: describe(&e) }),
    };
    if status != OrderStatus::Ready {
        let problem = instant_acme::Problem {
            r#type: None,
            detail: Some(format!("the order became {status:?}")),
            status: None,
            subproblems: Vec::new(),
        };
        return Err(validation_failure(&mut order, &problem).await);
    }

    let (key_pem, csr_der) =
        csr_task.await.map_err(|e| AcmeError::KeyGeneration { detail: e.to_string() })??;
    order.finalize_csr(&csr_der).await.map_err(order_error)?;
    let chain_pem = match order.poll_certificate(&policy).await {
        Ok(chain) => chain,
        Err(instant_acme::Error::Timeout(_)) => {
            return Err(AcmeError::Timeout { stage: "waiting for the certificate", after: limits.poll });
        }
        Err(e) => return Err(order_error(e)),
    };
    Ok((check_issued(&chain_pem, &key_pem)?, credentials))
}

/// The stored account when it belongs to the configured directory, else a new one.
/// Returns the account, its credentials JSON, and whether it was the stored one.
async fn open_account(
    settings: &AcmeSettings,
    stored: Option<&str>,
    limits: Limits,
) -> Result<(Account, String, bool), AcmeError> {
    if let Some(json) = stored {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(value)
                if value.get("directory").and_then(|d| d.as_str())
                    == Some(settings.directory_url.as_str()) =>
            {
                match serde_json::from_value::<AccountCredentials>(value) {
                    Ok(creds) => {
                        let account = Account::builder_with_http(Box::new(client::build(
                            settings,
                            limits.connect,
                            limits.request,
                        )?))
                        .from_credentials(creds)
                        .await
                        .map_err(|e| unreachable(settings, &e))?;
                        return Ok((account, json.to_owned(), true));
                    }
                    Err(e) => tracing::warn!("stored ACME account unreadable ({e}); creating a new one"),
                }
            }
            Ok(_) => tracing::info!("ACME directory changed; creating a new account"),
            Err(e) => tracing::warn!("stored ACME account unreadable ({e}); creating a new one"),
        }
    }
    let (account, json) = create_account(settings, limits).await?;
    Ok((account, json, false))
}

/// Registers a new account (with EAB when configured).
async fn create_account(settings: &AcmeSettings, limits: Limits) -> Result<(Account, String), AcmeError> {
    let eab = match (&settings.eab_key_id, &settings.eab_hmac_key) {
        (Some(id), Some(key)) => {
            // Validation checked the encoding; the error names no part of the key.
            let bytes = decode_eab_key(key).ok_or_else(|| AcmeError::AccountRejected {
                detail: "the EAB HMAC key is not base64url".to_owned(),
            })?;
            Some(ExternalAccountKey::new(id.clone(), &bytes))
        }
        _ => None,
    };
    let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
    let new_account =
        NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) =
        Account::builder_with_http(Box::new(client::build(settings, limits.connect, limits.request)?))
            .create(&new_account, settings.directory_url.clone(), eab.as_ref())
            .await
            .map_err(|e| match &e {
                instant_acme::Error::Api(p) => match problem_type(&e) {
                    Some("externalAccountRequired") => AcmeError::ExternalAccountRequired,
                    Some("rateLimited") => AcmeError::RateLimited { detail: describe_problem(p) },
                    _ => AcmeError::AccountRejected { detail: describe_problem(p) },
                },
                _ => unreachable(settings, &e),
            })?;
    let json = serde_json::to_string(&credentials)
        .map_err(|e| AcmeError::Protocol { detail: format!("account credentials: {e}") })?;
    Ok((account, json))
}

fn unreachable(settings: &AcmeSettings, e: &instant_acme::Error) -> AcmeError {
    let detail = match e {
        instant_acme::Error::Json(_) => format!("the answer is not an ACME directory ({})", describe(e)),
        _ => describe(e),
    };
    AcmeError::Unreachable { url: settings.directory_url.clone(), detail }
}

fn order_error(e: instant_acme::Error) -> AcmeError {
    match &e {
        instant_acme::Error::Api(p) => match problem_type(&e) {
            Some("rateLimited") => AcmeError::RateLimited { detail: describe_problem(p) },
            Some("rejectedIdentifier" | "unsupportedIdentifier" | "caa" | "badCSR" | "malformed") => {
                AcmeError::OrderRejected { detail: describe_problem(p) }
            }
            Some("unauthorized") => {
                AcmeError::ValidationFailed { identifier: "order".into(), detail: describe_problem(p) }
            }
            _ => AcmeError::Protocol { detail: describe_problem(p) },
        },
        _ => AcmeError::Protocol { detail: describe(&e) },
    }
}

/// Publishes the answer to every pending authorization and tells the CA to validate.
async fn answer_challenges(
    order: &mut Order,
    challenge: Challenge,
    responder: &dyn ChallengeResponder,
) -> Result<(), AcmeError> {
    let wanted = match challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(order_error)?;
        let identifier = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            // Reused from an earlier order of the same account: nothing to prove.
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::ValidationFailed {
                    identifier,
                    detail: format!("the authorization is {other:?}"),
                });
            }
        }
        let mut handle = authz.challenge(wanted.clone()).ok_or_else(|| AcmeError::ChallengeNotOffered {
            identifier: identifier.clone(),
            challenge: challenge.as_str(),
        })?;
        let key_authorization = handle.key_authorization();
        match challenge {
            Challenge::Http01 => responder.publish_http01(&handle.token, key_authorization.as_str()),
            Challenge::TlsAlpn01 => {
                let (sni, cert) =
                    alpn_certificate(handle.identifier().identifier, key_authorization.digest().as_ref())?;
                responder.publish_tls_alpn01(&sni, cert);
            }
        }
        handle.set_ready().await.map_err(|e| match &e {
            instant_acme::Error::Api(p) => {
                AcmeError::ValidationFailed { identifier: identifier.clone(), detail: describe_problem(p) }
            }
            _ => AcmeError::Protocol { detail: describe(&e) },
        })?;
    }
    Ok(())
}

/// The most specific explanation of a failed validation: the first
/// challenge error the CA recorded, else `problem`.
async fn validation_failure(order: &mut Order, problem: &instant_acme::Problem) -> AcmeError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        // A failed refresh only loses detail; the order's problem is still reported.
        if authz.refresh().await.is_err() {
            continue;
        }
        let identifier = authz.identifier().to_string();
        if let Some(error) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
            return AcmeError::ValidationFailed { identifier, detail: describe_problem(error) };
        }
        if authz.status == AuthorizationStatus::Invalid {
            return AcmeError::ValidationFailed { identifier, detail: describe_problem(problem) };
        }
    }
    AcmeError::ValidationFailed { identifier: "order".to_owned(), detail: describe_problem(problem) }
}

/// The SNI a tls-alpn-01 validation uses: the DNS name, or for an IP
/// address its reverse-DNS name (RFC 8738 §6).
pub fn tls_alpn01_sni(identifier: &Identifier) -> Option<String> {
    match identifier {
        Identifier::Dns(d) => Some(d.clone()),
        Identifier::Ip(IpAddr::V4(v4)) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]))
        }
        Identifier::Ip(IpAddr::V6(v6)) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0F, byte >> 4));
            }
            name.push_str("ip6.arpa");
            Some(name)
        }
        _ => None,
    }
}

/// The self-signed tls-alpn-01 certificate (RFC 8737 §3): SAN = the
/// identifier, critical acmeIdentifier extension = SHA-256 of the key
/// authorization. Returns it with the SNI it answers.
fn alpn_certificate(
    identifier: &Identifier,
    digest: &[u8],
) -> Result<(String, Arc<CertifiedKey>), AcmeError> {
    let failed =
        |detail: String| AcmeError::KeyGeneration { detail: format!("tls-alpn-01 certificate: {detail}") };
    let san = match identifier {
        Identifier::Dns(d) => {
            SanType::DnsName(d.as_str().try_into().map_err(|e: rcgen::Error| failed(e.to_string()))?)
        }
        Identifier::Ip(ip) => SanType::IpAddress(*ip),
        other => return Err(failed(format!("unsupported identifier {other:?}"))),
    };
    let sni = tls_alpn01_sni(identifier).ok_or_else(|| failed("unsupported identifier".into()))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| failed(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "ACME tls-alpn-01 challenge");
    params.subject_alt_names = vec![san];
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| failed(e.to_string()))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = portcullis_cert::crypto::load_signing_key(&key_der).map_err(|e| failed(e.to_string()))?;
    Ok((sni, Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))))
}

/// A new key of `key_type` and a CSR (DER) for all identifiers as SANs.
fn key_and_csr(key_type: KeyType, idents: &[Ident]) -> Result<(String, Vec<u8>), AcmeError> {
    let failed = |e: rcgen::Error| AcmeError::KeyGeneration { detail: e.to_string() };
    // The same generation as the operator's "generate" (RSA through the
    // `rsa` crate when the provider is ring, which cannot make RSA keys).
    let key = portcullis_cert::new_key_pair(key_type)
        .map_err(|e| AcmeError::KeyGeneration { detail: e.to_string() })?;
    let mut params = CertificateParams::default();
    // CAs take the names from the SANs; the CN (first DNS name, if it fits
    // X.520's 64 characters) is only for older clients that display it.
    params.distinguished_name = DistinguishedName::new();
    if let Some(Ident::Dns(d)) = idents.iter().find(|i| matches!(i, Ident::Dns(d) if d.len() <= 64)) {
        params.distinguished_name.push(DnType::CommonName, d.clone());
    }
    params.subject_alt_names = idents
        .iter()
        .map(|i| {
            Ok(match i {
                Ident::Dns(d) => SanType::DnsName(d.as_str().try_into()?),
                Ident::Ip(ip) => SanType::IpAddress(*ip),
            })
        })
        .collect::<Result<_, rcgen::Error>>()
        .map_err(failed)?;
    let csr = params.serialize_request(&key).map_err(failed)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

/// Checks the issued chain against the key and reads the leaf's validity.
fn check_issued(chain_pem: &str, key_pem: &str) -> Result<Enrolled, AcmeError> {
    let material = portcullis_cert::parse_stored(chain_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|e| AcmeError::InvalidCertificate { detail: e.to_string() })?;
    let (not_before, not_after) = leaf_validity(&material.chain)?;
    Ok(Enrolled { chain_pem: material.chain_pem(), key_pem: material.key_pem(), not_before, not_after })
}

fn leaf_validity(chain: &[CertificateDer<'_>]) -> Result<(OffsetDateTime, OffsetDateTime), AcmeError> {
    let leaf = chain.first().ok_or_else(|| AcmeError::InvalidCertificate { detail: "empty chain".into() })?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| AcmeError::InvalidCertificate { detail: e.to_string() })?;
    let validity = cert.validity();
    Ok((validity.not_before.to_datetime(), validity.not_after.to_datetime()))
}

/// The validity of the first certificate of a PEM chain, e.g. of a stored ACME certificate.
pub fn validity(chain_pem: &str) -> Result<(OffsetDateTime, OffsetDateTime), AcmeError> {
    use rustls_pki_types::pem::PemObject;
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::InvalidCertificate { detail: e.to_string() })?;
    leaf_validity(&chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        let v4 = Identifier::Ip("192.0.2.7".parse().expect("ip"));
        assert_eq!(tls_alpn01_sni(&v4).as_deref(), Some("7.2.0.192.in-addr.arpa"));
        let v6 = Identifier::Ip("2001:db8::1".parse().expect("ip"));
        assert_eq!(
            tls_alpn01_sni(&v6).as_deref(),
            Some("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")
        );
        assert_eq!(tls_alpn01_sni(&Identifier::Dns("a.example".into())).as_deref(), Some("a.example"));
    }

    #[test]
    fn csr_has_all_names() {
        let idents = vec![Ident::Dns("a.example".into()), Ident::Ip("192.0.2.7".parse().expect("ip"))];
        let (key_pem, der) = key_and_csr(KeyType::EcdsaP256, &idents).expect("csr");
        assert!(key_pem.contains("PRIVATE KEY"));
        let (_, csr) =
            <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<
                _,
            >>::from_der(&der)
            .expect("parses");
        let sans: Vec<String> = csr
            .requested_extensions()
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) => Some(san),
                _ => None,
            })
            .flat_map(|san| san.general_names.iter().map(|n| n.to_string()))
            .collect();
        assert_eq!(sans, vec!["DNSName(a.example)", "IPAddress(c0:00:02:07)"], "{sans:?}");
    }

    #[test]
    fn alpn_certificate_carries_the_digest() {
        let digest = [0xAB; 32];
        let (sni, ck) = alpn_certificate(&Identifier::Dns("a.example".into()), &digest).expect("cert");
        assert_eq!(sni, "a.example");
        let (_, cert) = x509_parser::parse_x509_certificate(&ck.cert[0]).expect("parses");
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&digest));
    }
}
