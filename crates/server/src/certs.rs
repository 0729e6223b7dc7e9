//! The device's certificates as kept in the data folder, and the one place
//! that swaps the certificate served to new TLS connections.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_cert::{CertificateInfo, Material};
use time::OffsetDateTime;

use crate::store::{SECRET_MODE, Store, StoreError};
use crate::tls::CertResolver;

/// Factory certificate and key, one file so they can never be half-replaced.
pub const FACTORY_FILE: &str = "certs/factory.pem";

/// Errors of the certificate store.
#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    /// Reading or writing the data folder failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A certificate operation failed.
    #[error(transparent)]
    Cert(#[from] portcullis_cert::CertError),
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

/// Loads the factory certificate, creating it on the first start: unique to
/// this device (generated here, never shipped), key mode 0600.
pub fn load_or_create_factory(
    store: &Store,
    now: OffsetDateTime,
) -> Result<(Material, bool), CertStoreError> {
    if let Some(bytes) = store.read(FACTORY_FILE)? {
        match portcullis_cert::parse_stored(&bytes, &bytes) {
            Ok(m) => return Ok((m, false)),
            Err(e) => {
                let moved = store.move_aside(FACTORY_FILE, now.unix_timestamp())?;
                tracing::error!(error = %e, moved = %moved.display(), "factory certificate unreadable; moved aside, generating a new one");
            }
        }
    }
    let (names, addresses) = device_identity();
    let generated = portcullis_cert::factory_certificate(&names, &addresses, now)?;
    let bundle = format!("{}{}", generated.chain_pem, generated.key_pem);
    let material = portcullis_cert::parse_stored(bundle.as_bytes(), bundle.as_bytes())?;
    store.write_atomic(FACTORY_FILE, bundle.as_bytes(), SECRET_MODE)?;
    Ok((material, true))
}

/// The certificates of a running server.
#[derive(Debug)]
pub struct Certificates {
    /// What new TLS connections are served.
    pub resolver: Arc<CertResolver>,
    current: std::sync::Mutex<Material>,
}

impl Certificates {
    /// Certificates serving `material`.
    pub fn new(material: Material) -> Result<Self, CertStoreError> {
        let key = material.certified_key()?;
        Ok(Self { resolver: CertResolver::new(key), current: std::sync::Mutex::new(material) })
    }

    /// Serves `material` to new connections from now on; open ones keep theirs.
    pub fn install(&self, material: Material) -> Result<(), CertStoreError> {
        let key = material.certified_key()?;
        self.resolver.swap(key);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = material;
        Ok(())
    }

    /// Description of the certificate in use.
    pub fn describe(&self, now: OffsetDateTime) -> Result<CertificateInfo, CertStoreError> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        Ok(portcullis_cert::describe(&current.chain, now)?)
    }

    /// Reloads the certificate in use from the data folder (at reboot).
    pub fn reload(&self, store: &Store, now: OffsetDateTime) -> Result<(), CertStoreError> {
        let (material, _) = load_or_create_factory(store, now)?;
        self.install(material)
    }
}
