//! The HTTPS client that talks to the ACME server: our trust anchors, the build's crypto provider, bounded waits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::error::AcmeError;
use portcullis_core::acme::{AcmeSettings, parse_ca_bundle};

/// Longest wait for a TCP connection to the ACME server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the response head of one ACME request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// instant-acme's hyper client with a deadline on every request, so that a
/// server that accepts connections but never answers cannot hang an enrolment.
pub(crate) struct TimedClient {
    inner: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    timeout: Duration,
}

impl HttpClient for TimedClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.inner.request(req);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, response).await {
                Ok(result) => {
                    result.map(BytesResponse::from).map_err(|e| instant_acme::Error::Other(Box::new(e)))
                }
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {} s", timeout.as_secs()).into(),
                )),
            }
        })
    }
}

/// A client trusting `ca_bundle_pem` only when set (a private CA's ACME
/// server), else the system's trust store. The build's provider is passed
/// explicitly so no process-wide default provider is needed.
pub(crate) fn build(
    settings: &AcmeSettings,
    connect: Duration,
    request: Duration,
) -> Result<TimedClient, AcmeError> {
    let unreachable = |detail: String| AcmeError::Unreachable { url: settings.directory_url.clone(), detail };
    let mut roots = rustls::RootCertStore::empty();
    match settings.ca_bundle_pem.as_deref() {
        Some(pem) => {
            for cert in parse_ca_bundle(pem).map_err(|m| unreachable(format!("ca_bundle_pem: {m}")))? {
                roots.add(cert).map_err(|e| unreachable(format!("ca_bundle_pem: {e}")))?;
            }
        }
        None => {
            // Certificates the system store holds but rustls cannot parse are skipped, as browsers do.
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(unreachable(
                    "the system has no trusted CA certificates; set ca_bundle_pem to trust the ACME server"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(portcullis_cert::crypto::provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreachable(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(connect));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        // HTTP/1.1 only (see the workspace's hyper-rustls line): a handful
        // of requests every two months do not need HTTP/2's code.
        .enable_http1()
        .wrap_connector(tcp);
    Ok(TimedClient { inner: Client::builder(TokioExecutor::new()).build(https), timeout: request })
}
