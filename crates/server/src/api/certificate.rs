//! `/api/v1/certificate…`: show, generate, upload, download, delete (SPEC §3).

use portcullis_core::ErrorCode;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use portcullis_cert::GenerateRequest;

use crate::certs::{CertStoreError, CertificateView};
use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::{CertificateChange, Runtime};

impl From<CertStoreError> for ApiError {
    fn from(e: CertStoreError) -> Self {
        match e {
            CertStoreError::Cert(c) => {
                ApiError::new(StatusCode::BAD_REQUEST, c.code(), c.to_string()).field(c.field())
            }
            CertStoreError::State { code, message } => ApiError::conflict(code, message),
            CertStoreError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CertStoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?.map_err(ApiError::from)
}

/// The certificate in use, and whether a request is pending.
#[utoipa::path(get, path = "/api/v1/certificate", tag = "certificate",
    responses((status = 200, body = CertificateView)))]
pub async fn show(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Result<Json<CertificateView>, ApiError> {
    let files = rt.certs().files.clone();
    let now = rt.now();
    Ok(Json(blocking(move || files.view(now, Vec::new())).await?))
}

/// Delete: back to the factory certificate (a pending request goes too).
#[utoipa::path(delete, path = "/api/v1/certificate", tag = "certificate",
    responses((status = 200, body = CertificateView)))]
pub async fn delete(State(rt): State<Arc<Runtime>>, admin: Admin) -> Result<Json<CertificateView>, ApiError> {
    Ok(Json(rt.change_certificate(CertificateChange::Delete, &admin.actor).await?))
}

/// Generate: a new key (RSA 2048 by default, or ECDSA P-256), a self-signed
/// certificate in use at once, and a certificate request for the same key.
#[utoipa::path(post, path = "/api/v1/certificate/generate", tag = "certificate", request_body = GenerateRequest,
    responses((status = 200, body = CertificateView), (status = 400, body = ErrorBody)))]
pub async fn generate(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(req): ApiJson<GenerateRequest>,
) -> Result<Json<CertificateView>, ApiError> {
    Ok(Json(rt.change_certificate(CertificateChange::Generate(req), &admin.actor).await?))
}

/// Reads a multipart body: each allowed field once, unknown fields refused;
/// the whole body must arrive within [`crate::http::UPLOAD_READ_TIMEOUT`].
pub async fn fields(multipart: Multipart, allowed: &[&str]) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    let limit = crate::http::UPLOAD_READ_TIMEOUT;
    tokio::time::timeout(limit, read_fields(multipart, allowed)).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!("the upload did not arrive within {} seconds", limit.as_secs()),
        ))
    })
}

async fn read_fields(
    mut multipart: Multipart,
    allowed: &[&str],
) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    let mut out = HashMap::new();
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            ApiError::new(
                e.status(),
                ErrorCode::InvalidMultipart,
                format!("the upload is not valid multipart/form-data: {}", e.body_text()),
            )
        })?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or("").to_string();
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnknownField,
                format!("unknown upload field \"{name}\"; expected {}", allowed.join(", ")),
            )
            .field(name));
        }
        let bytes = field.bytes().await.map_err(|e| {
            ApiError::new(
                e.status(),
                ErrorCode::InvalidMultipart,
                format!("the field could not be read: {}", e.body_text()),
            )
        })?;
        if out.insert(name.clone(), bytes.to_vec()).is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::DuplicateField,
                format!("the field \"{name}\" was sent twice"),
            )
            .field(name));
        }
    }
    Ok(out)
}

/// Upload certificate and key (multipart `certificate`, optional `private_key`,
/// optional `passphrase`); deletes a pending request.
#[utoipa::path(post, path = "/api/v1/certificate/upload", tag = "certificate",
    request_body(content_type = "multipart/form-data", description = "fields: certificate (PEM, may hold the key too), private_key (PEM, optional), passphrase (optional)"),
    responses((status = 200, body = CertificateView), (status = 400, body = ErrorBody)))]
pub async fn upload(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    multipart: Multipart,
) -> Result<Json<CertificateView>, ApiError> {
    let mut f = fields(multipart, &["certificate", "private_key", "passphrase"]).await?;
    let key = f.remove("private_key").filter(|k| !k.is_empty());
    let required = || {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Required, "choose the certificate file to upload")
            .field("certificate")
    };
    // Either field may take a combined certificate+key file (the seed's
    // rule): without a certificate field, the key file must hold it.
    let cert_chosen = f.contains_key("certificate");
    let cert = match f.remove("certificate") {
        Some(cert) => cert,
        None if key.is_some() => Vec::new(),
        None => return Err(required()),
    };
    let passphrase = match f.remove("passphrase") {
        Some(p) if !p.is_empty() => Some(String::from_utf8(p).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidValue,
                "the passphrase is not UTF-8 text",
            )
            .field("passphrase")
        })?),
        _ => None,
    };
    let change = CertificateChange::Upload { certificate: cert, private_key: key, passphrase };
    match rt.change_certificate(change, &admin.actor).await {
        Ok(view) => Ok(Json(view)),
        Err(e) => {
            let e = ApiError::from(e);
            // No certificate chosen, and the key file holds none.
            if !cert_chosen && e.code == ErrorCode::Empty && e.field.as_deref() == Some("certificate") {
                return Err(required());
            }
            Err(e)
        }
    }
}

/// Upload certificate (multipart `certificate`): a CA-signed certificate for
/// the pending request's key; refused unless its public key matches.
#[utoipa::path(post, path = "/api/v1/certificate/upload-certificate", tag = "certificate",
    request_body(content_type = "multipart/form-data", description = "field: certificate (PEM, with its chain)"),
    responses((status = 200, body = CertificateView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn upload_certificate(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    multipart: Multipart,
) -> Result<Json<CertificateView>, ApiError> {
    let mut f = fields(multipart, &["certificate"]).await?;
    let cert = f.remove("certificate").ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Required, "choose the certificate file to upload")
            .field("certificate")
    })?;
    Ok(Json(rt.change_certificate(CertificateChange::UploadCertificate(cert), &admin.actor).await?))
}

fn pem_download(body: String, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

/// Download certificate and key (PEM): only when an individual certificate exists; admins only.
#[utoipa::path(get, path = "/api/v1/certificate/download", tag = "certificate",
    responses((status = 200, content_type = "application/x-pem-file", body = String), (status = 409, body = ErrorBody)))]
pub async fn download(State(rt): State<Arc<Runtime>>, admin: Admin) -> Result<Response, ApiError> {
    let files = rt.certs().files.clone();
    let pem = blocking(move || files.export()).await?;
    rt.event(
        portcullis_core::events::EventKind::CertificateDownloaded,
        &admin.actor,
        "certificate and private key downloaded",
    );
    Ok(pem_download(pem, "certificate-and-key.pem"))
}

/// Download the pending certificate request (PEM).
#[utoipa::path(get, path = "/api/v1/certificate/request", tag = "certificate",
    responses((status = 200, content_type = "application/x-pem-file", body = String), (status = 409, body = ErrorBody)))]
pub async fn request(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Result<Response, ApiError> {
    let files = rt.certs().files.clone();
    let pem = blocking(move || files.request_pem()).await?;
    Ok(pem_download(pem, "certificate-request.csr"))
}

#[cfg(feature = "acme")]
/// ACME settings (the EAB key removed) and status: managed or not, next
/// renewal, last error.
#[utoipa::path(get, path = "/api/v1/certificate/acme", tag = "certificate",
    responses((status = 200, body = crate::acme::AcmeView)))]
pub async fn get_acme(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<crate::acme::AcmeView> {
    Json(rt.acme().view())
}

#[cfg(feature = "acme")]
/// Replaces the ACME settings (written at once, like every certificate
/// operation). Omitted optional fields take their defaults; an omitted EAB
/// key keeps the stored one; a contact without `mailto:` gets it.
#[utoipa::path(put, path = "/api/v1/certificate/acme", tag = "certificate",
    request_body(content = Object, description = "directory_url, contact, identifiers, challenge (http-01|tls-alpn-01), key_type, eab_key_id, eab_hmac_key, ca_bundle_pem, enabled"),
    responses((status = 200, body = crate::acme::AcmeView), (status = 400, body = ErrorBody)))]
pub async fn put_acme(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<portcullis_core::acme::AcmeSettings>,
) -> Result<Json<crate::acme::AcmeView>, ApiError> {
    Ok(Json(rt.set_acme_settings(settings, &admin.actor).await?))
}

#[cfg(feature = "acme")]
/// Enrols now (answers when the new certificate is in use, or with the
/// CA's error; the current certificate stays in use on failure).
#[utoipa::path(post, path = "/api/v1/certificate/acme/enrol", tag = "certificate",
    responses((status = 200, body = crate::acme::AcmeStatus), (status = 400, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn enrol_acme(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
) -> Result<Json<crate::acme::AcmeStatus>, ApiError> {
    match rt.enrol_acme(&admin.actor).await {
        Ok(status) => Ok(Json(status)),
        Err(crate::acme::EnrolError::Acme(portcullis_acme::AcmeError::InvalidSettings(v))) => {
            Err(ApiError::invalid(v))
        }
        Err(crate::acme::EnrolError::Acme(e)) => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, e.code(), e.to_string()))
        }
        Err(e @ crate::acme::EnrolError::Store(_)) => Err(ApiError::internal(e)),
    }
}

#[cfg(feature = "acme")]
/// An ACME http-01 answer (public, plain HTTP, never redirected).
pub async fn http01(
    State(rt): State<Arc<Runtime>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match rt.acme().http01(&token) {
        Some(answer) => ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response(),
        None => ApiError::not_found("no such challenge").into_response(),
    }
}
