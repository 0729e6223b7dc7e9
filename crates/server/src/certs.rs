//! The device's certificates as kept in the data folder, and the one place
//! that swaps the certificate served to new TLS connections.
//!
//! States (SPEC §3): the factory certificate (`certs/factory.pem`, made on the
//! first start, unique to the device) and, in one file so that no operation
//! can ever leave a mix of old and new, the individual certificate with its
//! key and the pending certificate request with its key
//! (`certs/current.json`). Both files are mode 0600.

use portcullis_core::ErrorCode;
use std::net::IpAddr;
use std::sync::Arc;

use portcullis_cert::{CertError, CertificateInfo, GenerateRequest, IntakeOptions, Material};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::{SECRET_MODE, Store, StoreError};
use crate::tls::CertResolver;

/// Factory certificate and key, one file so they can never be half-replaced.
pub const FACTORY_FILE: &str = "certs/factory.pem";
/// Individual certificate and pending request, one file for the same reason.
pub const CURRENT_FILE: &str = "certs/current.json";

/// When this firmware was built (seconds since 1970); a clock before it is unset.
pub const BUILD_UNIX: &str = env!("PORTCULLIS_BUILD_UNIX");

/// Whether `now` can be believed: a device without a battery-backed clock
/// boots in 1970, and refusing every certificate as "not yet valid" then
/// would lock the operator out of fixing it.
pub fn clock_trusted(now: OffsetDateTime) -> bool {
    let built: i64 = BUILD_UNIX.parse().unwrap_or(0);
    // A day of slack for builds made on a machine whose clock runs ahead.
    now.unix_timestamp() >= built - 86_400
}

/// Errors of the certificate store.
#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    /// Reading or writing the data folder failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A certificate operation was refused or failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The operation needs a state the device is not in (e.g. download without an individual certificate).
    #[error("{message}")]
    State {
        /// Stable code.
        code: ErrorCode,
        /// Message for a person.
        message: String,
    },
    /// The stored certificate file cannot be read.
    #[error("the stored certificate file is unreadable: {0}")]
    Corrupt(String),
}

impl CertStoreError {
    fn state(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::State { code, message: message.into() }
    }
}

/// A certificate chain and its key, as PEM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPair {
    /// Chain, leaf first.
    pub chain_pem: String,
    /// PKCS#8 private key.
    pub key_pem: String,
}

/// A pending certificate request and its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRequest {
    /// PKCS#10 request.
    pub csr_pem: String,
    /// PKCS#8 private key the request is for.
    pub key_pem: String,
}

/// Content of `certs/current.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CertState {
    /// The individual certificate, if any (else the factory one is used).
    pub individual: Option<StoredPair>,
    /// The pending certificate request, if any.
    pub request: Option<StoredRequest>,
}

/// Which certificate is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// The device's own factory certificate.
    Factory,
    /// An individual certificate (generated here or uploaded).
    Individual,
}

/// The certificate state as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateView {
    /// Which certificate is in use.
    pub source: CertSource,
    /// Whether a certificate request is pending (downloadable).
    pub csr_pending: bool,
    /// Whether an individual certificate exists (certificate and key downloadable).
    pub individual_exists: bool,
    /// The certificate in use.
    pub certificate: CertificateInfo,
    /// Warnings of the last change (e.g. validity over 825 days), empty otherwise.
    pub warnings: Vec<String>,
}

/// Names and addresses the factory certificate is issued for.
pub fn device_identity() -> (Vec<String>, Vec<IpAddr>) {
    let mut names = Vec::new();
    if let Ok(host) = gethostname::gethostname().into_string()
        && !host.is_empty()
        && host != "localhost"
    {
        names.push(host);
    }
    names.push("localhost".to_string());
    let mut addresses: Vec<IpAddr> =
        if_addrs::get_if_addrs().map(|ifs| ifs.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
    for loopback in [IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)] {
        if !addresses.contains(&loopback) {
            addresses.push(loopback);
        }
    }
    addresses.sort();
    addresses.dedup();
    (names, addresses)
}

/// Whether `material` has expired by a clock that can be believed (see
/// [`clock_trusted`]); by an unset clock, nothing has.
pub fn expired_by_trusted_clock(material: &Material, now: OffsetDateTime) -> bool {
    clock_trusted(now)
        && material
            .describe(now)
            .ok()
            .and_then(|i| {
                OffsetDateTime::parse(&i.not_after, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_some_and(|not_after| not_after <= now)
}

/// Loads the factory certificate, creating it on the first start: unique to
/// this device (generated here, never shipped), key mode 0600, valid from
/// 1970 to 9999 whatever the clock says (see [`portcullis_cert::factory_certificate`]).
///
/// A stored one that has expired, by a clock that can be believed, is made
/// again (the old file is moved aside): earlier firmware made it valid ten
/// years from the first start, which for a device first started with its
/// clock in 1970 meant expired for good once NTP set the clock. The device
/// can always make a good one, so it never serves an expired one.
pub fn load_or_create_factory(
    store: &Store,
    now: OffsetDateTime,
) -> Result<(Material, bool), CertStoreError> {
    if let Some(bytes) = store.read(FACTORY_FILE)? {
        match portcullis_cert::parse_stored(&bytes, &bytes) {
            Ok(m) if expired_by_trusted_clock(&m, now) => {
                let moved = store.move_aside(FACTORY_FILE, now.unix_timestamp())?;
                tracing::warn!(moved = %moved.display(), "the factory certificate has expired (made while the clock was unset?); moved aside, generating a new one");
            }
            Ok(m) => return Ok((m, false)),
            Err(e) => {
                let moved = store.move_aside(FACTORY_FILE, now.unix_timestamp())?;
                tracing::error!(error = %e, moved = %moved.display(), "factory certificate unreadable; moved aside, generating a new one");
            }
        }
    }
    let (names, addresses) = device_identity();
    // Serial numbers from the thread's generator (seeded by the OS).
    let generated = portcullis_cert::factory_certificate(&names, &addresses, &mut rand::rng())?;
    let bundle = format!("{}{}", generated.chain_pem, generated.key_pem);
    let material = portcullis_cert::parse_stored(bundle.as_bytes(), bundle.as_bytes())?;
    store.write_atomic(FACTORY_FILE, bundle.as_bytes(), SECRET_MODE)?;
    Ok((material, true))
}

/// The certificate files of a data folder; used by the server and by the
/// offline `portcullis cert` commands alike.
#[derive(Debug, Clone)]
pub struct CertStore {
    store: Store,
}

impl CertStore {
    /// The certificate files of `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The individual certificate and pending request.
    pub fn state(&self) -> Result<CertState, CertStoreError> {
        match self.store.read(CURRENT_FILE)? {
            None => Ok(CertState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| CertStoreError::Corrupt(e.to_string())),
        }
    }

    fn save(&self, state: &CertState) -> Result<(), CertStoreError> {
        self.store.write_json(CURRENT_FILE, state, SECRET_MODE)?;
        Ok(())
    }

    /// The certificate to serve: the individual one if any, else the factory one.
    pub fn active(&self, now: OffsetDateTime) -> Result<(Material, CertSource), CertStoreError> {
        if let Some(pair) = self.state()?.individual {
            let material = portcullis_cert::parse_stored(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes())?;
            return Ok((material, CertSource::Individual));
        }
        Ok((load_or_create_factory(&self.store, now)?.0, CertSource::Factory))
    }

    /// Generate: a new key, a self-signed certificate now in use, and a
    /// request for the same key (pending until a CA-signed certificate is uploaded).
    pub(crate) fn generate(
        &self,
        req: &GenerateRequest,
        now: OffsetDateTime,
    ) -> Result<(Material, Vec<String>), CertStoreError> {
        let generated = portcullis_cert::generate(req, now, &mut rand::rng())?;
        let material =
            portcullis_cert::parse_stored(generated.chain_pem.as_bytes(), generated.key_pem.as_bytes())?;
        let state = CertState {
            individual: Some(StoredPair {
                chain_pem: generated.chain_pem,
                key_pem: generated.key_pem.clone(),
            }),
            request: Some(StoredRequest { csr_pem: generated.csr_pem, key_pem: generated.key_pem }),
        };
        self.save(&state)?;
        Ok((material, generated.warnings))
    }

    /// Upload certificate and key (one file or two, key optionally encrypted);
    /// deletes a pending request.
    pub(crate) fn upload(
        &self,
        cert_file: &[u8],
        key_file: Option<&[u8]>,
        passphrase: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(Material, Vec<String>), CertStoreError> {
        let opts = IntakeOptions { now, clock_trusted: clock_trusted(now) };
        let (material, warnings) = portcullis_cert::intake_upload(cert_file, key_file, passphrase, &opts)?;
        let state = CertState {
            individual: Some(StoredPair { chain_pem: material.chain_pem(), key_pem: material.key_pem() }),
            request: None,
        };
        self.save(&state)?;
        Ok((material, warnings))
    }

    /// Upload certificate: a CA-signed certificate for the pending request's
    /// key, or else for the individual certificate's key; refused unless its
    /// public key matches. A fulfilled request is no longer pending.
    pub(crate) fn upload_certificate(
        &self,
        cert_file: &[u8],
        now: OffsetDateTime,
    ) -> Result<(Material, Vec<String>), CertStoreError> {
        let state = self.state()?;
        let key_pem = match (&state.request, &state.individual) {
            (Some(r), _) => r.key_pem.clone(),
            (None, Some(i)) => i.key_pem.clone(),
            (None, None) => {
                return Err(CertStoreError::state(
                    ErrorCode::NoKey,
                    "there is no certificate request or individual key to match; generate a request first, or upload a certificate with its key",
                ));
            }
        };
        let key = key_from_pem(&key_pem)?;
        let opts = IntakeOptions { now, clock_trusted: clock_trusted(now) };
        let (material, warnings) = portcullis_cert::intake_certificate_for_key(cert_file, &key, &opts)?;
        let new_state = CertState {
            individual: Some(StoredPair { chain_pem: material.chain_pem(), key_pem: material.key_pem() }),
            request: None,
        };
        self.save(&new_state)?;
        Ok((material, warnings))
    }

    /// Installs a chain and key obtained elsewhere (ACME) as the individual
    /// certificate; a pending request goes (its key is not the one in use).
    pub(crate) fn install_pair(&self, chain_pem: &str, key_pem: &str) -> Result<Material, CertStoreError> {
        let material = portcullis_cert::parse_stored(chain_pem.as_bytes(), key_pem.as_bytes())?;
        let state = CertState {
            individual: Some(StoredPair { chain_pem: material.chain_pem(), key_pem: material.key_pem() }),
            request: None,
        };
        self.save(&state)?;
        Ok(material)
    }

    /// Delete: back to the factory certificate (the pending request goes too: its key is gone).
    pub(crate) fn delete(&self) -> Result<(), CertStoreError> {
        self.save(&CertState::default())
    }

    /// PEM of the individual certificate chain and its key (download).
    pub fn export(&self) -> Result<String, CertStoreError> {
        match self.state()?.individual {
            Some(p) => Ok(format!("{}{}", p.chain_pem, p.key_pem)),
            None => Err(CertStoreError::state(
                ErrorCode::NoIndividualCertificate,
                "there is no individual certificate to download; the factory certificate's key never leaves the device",
            )),
        }
    }

    /// PEM of the pending request (download).
    pub fn request_pem(&self) -> Result<String, CertStoreError> {
        match self.state()?.request {
            Some(r) => Ok(r.csr_pem),
            None => Err(CertStoreError::state(
                ErrorCode::NoCertificateRequest,
                "there is no pending certificate request; generate one first",
            )),
        }
    }

    /// The state as the API shows it.
    pub fn view(
        &self,
        now: OffsetDateTime,
        warnings: Vec<String>,
    ) -> Result<CertificateView, CertStoreError> {
        let state = self.state()?;
        let (material, source) = self.active(now)?;
        Ok(CertificateView {
            source,
            csr_pending: state.request.is_some(),
            individual_exists: state.individual.is_some(),
            certificate: material.describe(now)?,
            warnings,
        })
    }
}

fn key_from_pem(pem: &str) -> Result<portcullis_cert::PrivateKeyDer<'static>, CertStoreError> {
    use rustls_pki_types::pem::PemObject;
    portcullis_cert::PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CertStoreError::Corrupt(e.to_string()))
}

/// The certificates of a running server.
#[derive(Debug)]
pub struct Certificates {
    /// What new TLS connections are served.
    pub resolver: Arc<CertResolver>,
    /// The files.
    pub files: CertStore,
    /// What the HSTS rule needs to know of the certificate in use.
    served: arc_swap::ArcSwap<portcullis_core::hsts::ServedCertificate>,
    /// The host names of the certificate in use (the `Host` check allows them).
    names: arc_swap::ArcSwap<Vec<String>>,
}

impl Certificates {
    /// Loads the certificate to serve from `store`.
    pub fn load(store: Store, now: OffsetDateTime) -> Result<(Self, CertificateInfo), CertStoreError> {
        let files = CertStore::new(store);
        let (material, _) = files.active(now).or_else(|e| {
            // An unreadable individual certificate must not keep HTTPS down: serve
            // the factory one and say so (the file is left as it is for inspection).
            tracing::error!(error = %e, "CERTIFICATE PROBLEM: the individual certificate is unusable; serving the factory certificate");
            load_or_create_factory(&files.store, now).map(|(m, _)| (m, CertSource::Factory))
        })?;
        let info = material.describe(now)?;
        let key = material.certified_key()?;
        let served = arc_swap::ArcSwap::from_pointee(material.served()?);
        let names = arc_swap::ArcSwap::from_pointee(portcullis_cert::host_names(&material.chain));
        Ok((Self { resolver: CertResolver::new(key), files, served, names }, info))
    }

    /// Serves `material` to new connections from now on; open ones keep theirs.
    pub(crate) fn install(&self, material: &Material) -> Result<(), CertStoreError> {
        let served = material.served()?;
        self.resolver.swap(material.certified_key()?);
        self.served.store(Arc::new(served));
        self.names.store(Arc::new(portcullis_cert::host_names(&material.chain)));
        Ok(())
    }

    /// What the HSTS rule needs to know of the certificate in use.
    pub fn served(&self) -> portcullis_core::hsts::ServedCertificate {
        **self.served.load()
    }

    /// The host names of the certificate in use, lower case (DNS names, and
    /// wildcards as `*.example.com`).
    pub fn names(&self) -> arc_swap::Guard<Arc<Vec<String>>> {
        self.names.load()
    }

    /// Reloads the certificate in use from the data folder (at reboot).
    pub(crate) fn reload(&self, now: OffsetDateTime) -> Result<(), CertStoreError> {
        let (material, _) = self.files.active(now)?;
        self.install(&material)
    }

    /// Serves a new factory certificate if the factory one in use has expired
    /// by now, with a clock that can be believed (the clock was set since it
    /// was loaded); returns the new one's description if it did.
    pub(crate) fn renew_expired_factory(
        &self,
        now: OffsetDateTime,
    ) -> Result<Option<CertificateInfo>, CertStoreError> {
        if self.files.state()?.individual.is_some() {
            return Ok(None);
        }
        let Some(bytes) = self.files.store.read(FACTORY_FILE)? else { return Ok(None) };
        let Ok(stored) = portcullis_cert::parse_stored(&bytes, &bytes) else { return Ok(None) };
        if !expired_by_trusted_clock(&stored, now) {
            return Ok(None);
        }
        let (material, _) = load_or_create_factory(&self.files.store, now)?;
        self.install(&material)?;
        Ok(Some(material.describe(now)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_in_1970_is_not_trusted() {
        assert!(!clock_trusted(OffsetDateTime::UNIX_EPOCH));
        assert!(clock_trusted(OffsetDateTime::now_utc()));
    }

    #[test]
    fn generate_upload_delete_cycle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = CertStore::new(Store::open(dir.path()).expect("store"));
        let now = OffsetDateTime::now_utc();
        let (_, source) = files.active(now).expect("factory");
        assert_eq!(source, CertSource::Factory);
        assert!(files.export().is_err(), "no download of the factory key");
        let mut req = GenerateRequest::new("cam.example");
        req.key_type = portcullis_cert::KeyType::EcdsaP256;
        files.generate(&req, now).expect("generate");
        assert!(files.request_pem().expect("csr").contains("BEGIN CERTIFICATE REQUEST"));
        let (m, source) = files.active(now).expect("individual");
        assert_eq!(source, CertSource::Individual);
        assert!(m.describe(now).expect("info").subject.contains("cam.example"));
        // Re-uploading the exported pair drops the pending request.
        let exported = files.export().expect("export");
        files.upload(exported.as_bytes(), None, None, now).expect("upload");
        assert!(files.request_pem().is_err());
        files.delete().expect("delete");
        assert_eq!(files.active(now).expect("factory").1, CertSource::Factory);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(CURRENT_FILE)).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    /// 1970-01-02, when a device without a battery-backed clock first starts.
    const IN_1970: OffsetDateTime = time::macros::datetime!(1970-01-02 00:00 UTC);

    /// A data folder holding what earlier firmware made at a first start in
    /// 1970: a factory certificate valid ten years from then.
    fn folder_with_a_1970_factory_certificate() -> (tempfile::TempDir, Store, portcullis_cert::Generated) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let mut req = GenerateRequest::new("localhost");
        req.key_type = portcullis_cert::KeyType::EcdsaP256;
        let old = portcullis_cert::generate(&req, IN_1970, &mut rand::rng()).expect("generate");
        let bundle = format!("{}{}", old.chain_pem, old.key_pem);
        store.write_atomic(FACTORY_FILE, bundle.as_bytes(), SECRET_MODE).expect("write");
        (dir, store, old)
    }

    #[test]
    fn an_expired_factory_certificate_is_made_again_once_the_clock_is_set() {
        let (dir, store, old) = folder_with_a_1970_factory_certificate();
        // Still 1970: kept (nothing can be said to have expired).
        let (m, created) = load_or_create_factory(&store, IN_1970).expect("load");
        assert!(!created);
        assert_eq!(m.chain_pem(), old.chain_pem);
        // The clock is set: expired, so made again, valid now; the old one is kept aside.
        let now = OffsetDateTime::now_utc();
        let (m, created) = load_or_create_factory(&store, now).expect("load");
        assert!(created);
        let info = m.describe(now).expect("describe");
        assert_eq!(info.not_after, "9999-12-31T23:59:59Z");
        let (again, created) = load_or_create_factory(&store, now).expect("load");
        assert!(!created, "made once");
        assert_eq!(again.chain_pem(), m.chain_pem());
        let aside = std::fs::read_dir(dir.path().join("certs")).expect("dir").count();
        assert_eq!(aside, 2, "factory.pem and the expired one moved aside");
    }

    #[test]
    fn a_running_server_renews_an_expired_factory_certificate() {
        let (_dir, store, _) = folder_with_a_1970_factory_certificate();
        crate::tls::install_default_provider();
        let (certs, info) = Certificates::load(store, IN_1970).expect("load");
        assert_eq!(info.not_after, "1979-12-31T00:00:00Z");
        assert_eq!(
            certs.renew_expired_factory(IN_1970).expect("renew"),
            None,
            "not expired by an unset clock"
        );
        let now = OffsetDateTime::now_utc();
        let renewed = certs.renew_expired_factory(now).expect("renew").expect("renewed");
        assert_eq!(renewed.not_after, "9999-12-31T23:59:59Z");
        assert_eq!(certs.renew_expired_factory(now).expect("renew"), None);
    }
}
