//! Automatic certificates (ACME, RFC 8555); built with the `acme` feature.
//!
//! The ACME settings and status are certificate management, so like every
//! certificate operation they are written at once (`certs/acme.json`, 0600:
//! it holds the External Account Binding key), not through Set/Store. The
//! account key is kept in `certs/acme-account.json` (0600). An issued chain
//! becomes the individual certificate, hot-swapped; it is renewed by itself
//! at two thirds of its lifetime, and a failure is retried with backoff while
//! the current certificate keeps being served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use portcullis_acme::ChallengeResponder;
use portcullis_core::acme::AcmeSettings;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::{SECRET_MODE, Store};
use crate::tls::CertResolver;

/// ACME settings and status.
pub const ACME_FILE: &str = "certs/acme.json";
/// The ACME account credentials.
pub const ACME_ACCOUNT_FILE: &str = "certs/acme-account.json";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// What ACME is doing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AcmeStatus {
    /// Whether the certificate in use was issued by ACME.
    pub managed: bool,
    /// End of the ACME certificate's validity (RFC 3339).
    pub not_after: Option<String>,
    /// When it is renewed (or the next retry), RFC 3339.
    pub next_renewal: Option<String>,
    /// The last error, cleared by a success.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

/// `certs/acme.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct AcmeFile {
    settings: AcmeSettings,
    status: AcmeStatus,
}

/// The ACME state as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AcmeView {
    /// Settings (the EAB key removed).
    #[schema(value_type = Object)]
    pub settings: AcmeSettings,
    /// Status.
    pub status: AcmeStatus,
}

/// Why an enrolment did not end with the new certificate in use.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// The enrolment itself failed, or the CA's certificate is unusable.
    #[error(transparent)]
    Acme(#[from] portcullis_acme::AcmeError),
    /// The certificate was issued, but the data folder could not take it:
    /// the device's fault, not the CA's.
    #[error("the issued certificate could not be stored: {0}")]
    Store(#[source] crate::certs::CertStoreError),
}

impl EnrolError {
    /// The code for the API and the event log.
    pub fn code(&self) -> portcullis_core::ErrorCode {
        match self {
            EnrolError::Acme(e) => e.code(),
            EnrolError::Store(_) => portcullis_core::ErrorCode::InternalError,
        }
    }
}

/// Sorts a failure to install an issued certificate: a certificate that
/// does not load is the CA's (`invalid_certificate`), a data folder that
/// cannot be written is the device's.
pub(crate) fn install_error(e: crate::certs::CertStoreError) -> EnrolError {
    match e {
        crate::certs::CertStoreError::Cert(c) => {
            EnrolError::Acme(portcullis_acme::AcmeError::InvalidCertificate { detail: c.to_string() })
        }
        other => EnrolError::Store(other),
    }
}

/// ACME state of a running server.
pub struct Acme {
    file: Mutex<AcmeFile>,
    http01: RwLock<HashMap<String, String>>,
    resolver: Arc<CertResolver>,
    running: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").finish_non_exhaustive()
    }
}

impl ChallengeResponder for Acme {
    fn publish_http01(&self, token: &str, key_authorization: &str) {
        self.http01
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
    }
    fn publish_tls_alpn01(&self, identifier: &str, cert: Arc<CertifiedKey>) {
        self.resolver.set_challenge(identifier, cert);
    }
    fn clear(&self) {
        self.http01.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.resolver.clear_challenges();
    }
}

impl Acme {
    /// The ACME state stored in the data folder.
    pub fn load(store: &Store, resolver: Arc<CertResolver>) -> Self {
        let file = match store.read(ACME_FILE) {
            Ok(Some(b)) => serde_json::from_slice::<AcmeFile>(&b).unwrap_or_else(|e| {
                tracing::error!(error = %e, "ACME settings unreadable; ACME stays off until they are set again");
                AcmeFile::default()
            }),
            _ => AcmeFile::default(),
        };
        Self {
            file: Mutex::new(file),
            http01: RwLock::new(HashMap::new()),
            resolver,
            running: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The key authorization for an http-01 `token`, while an order is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    /// Settings (redacted) and status.
    pub fn view(&self) -> AcmeView {
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        AcmeView { settings: f.settings.redacted(), status: f.status.clone() }
    }

    /// The settings with their secrets.
    pub fn settings(&self) -> AcmeSettings {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).settings.clone()
    }

    fn save(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone();
        store.write_json(ACME_FILE, &f, SECRET_MODE)
    }

    /// Replaces the settings (already validated by the core) and writes them
    /// at once; wakes the renewal task. Called by the runtime's change path.
    pub(crate) fn set_settings(
        &self,
        store: &Store,
        settings: AcmeSettings,
    ) -> Result<(), crate::store::StoreError> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).settings = settings;
        self.save(store)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Holds off other enrolments while one runs.
    pub(crate) async fn one_at_a_time(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.running.lock().await
    }

    /// Runs the ACME protocol with `settings`: the issued certificate, not
    /// yet installed (the runtime installs it like any other).
    pub(crate) async fn issue(
        &self,
        store: &Store,
        settings: &AcmeSettings,
    ) -> Result<portcullis_acme::Enrolled, EnrolError> {
        let account = store.read(ACME_ACCOUNT_FILE).ok().flatten().and_then(|b| String::from_utf8(b).ok());
        let (enrolled, account) = portcullis_acme::enrol(settings, account.as_deref(), self).await?;
        if let Err(e) = store.write_atomic(ACME_ACCOUNT_FILE, account.as_bytes(), SECRET_MODE) {
            tracing::error!(error = %e, "cannot store the ACME account");
        }
        Ok(enrolled)
    }

    /// Records that `enrolled` is in use: managed, renewed at two thirds of its lifetime.
    pub(crate) fn succeeded(&self, store: &Store, enrolled: &portcullis_acme::Enrolled) -> AcmeStatus {
        let status = AcmeStatus {
            managed: true,
            not_after: Some(rfc3339(enrolled.not_after)),
            next_renewal: Some(rfc3339(portcullis_core::acme::renewal_time(
                enrolled.not_before,
                enrolled.not_after,
            ))),
            last_error: None,
            failures: 0,
        };
        self.file.lock().unwrap_or_else(|e| e.into_inner()).status = status.clone();
        let _ = self.save(store);
        self.wake.notify_one();
        status
    }

    /// Records a failed attempt and when to retry (the core's backoff).
    pub(crate) fn failed(&self, store: &Store, now: OffsetDateTime, e: &EnrolError) {
        {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            f.status.failures += 1;
            f.status.last_error = Some(e.to_string());
            f.status.next_renewal = Some(rfc3339(portcullis_core::acme::retry_time(now, f.status.failures)));
        }
        let _ = self.save(store);
    }

    /// Whether the renewal task should enrol now (the core's rule).
    pub(crate) fn is_due(&self, now: OffsetDateTime) -> bool {
        let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let next = f.status.next_renewal.as_deref().and_then(|next| {
            OffsetDateTime::parse(next, &time::format_description::well_known::Rfc3339).ok()
        });
        portcullis_core::acme::is_due(f.settings.enabled, f.status.managed, next, now)
    }

    /// Waits until `every` has passed or the settings or status changed.
    pub(crate) async fn next_check(&self, every: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_is_not_blamed_on_the_certificate() {
        let store = crate::certs::CertStoreError::Store(crate::store::StoreError::Io {
            action: "write",
            path: crate::certs::CURRENT_FILE.into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        });
        let e = install_error(store);
        assert!(matches!(e, EnrolError::Store(_)), "{e:?}");
        assert_eq!(e.code(), "internal_error");

        let unusable = crate::certs::CertStoreError::Cert(portcullis_cert::CertError::NoCertificate);
        let e = install_error(unusable);
        assert_eq!(e.code(), "invalid_certificate");
        assert!(matches!(e, EnrolError::Acme(portcullis_acme::AcmeError::InvalidCertificate { .. })));
    }
}
