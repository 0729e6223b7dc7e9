//! `/api/v1/config/export` and `/api/v1/config/import`: configuration
//! backup and restore (README "Backup and restore"), one encrypted file.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use portcullis_core::ErrorCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::backup::{BackupError, ImportOutcome};
use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson};
use crate::runtime::Runtime;

use super::config::{ProvisionalChange, set_answer};

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        let status = match e {
            BackupError::Failed(_) => return ApiError::internal(e),
            BackupError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let field = e.field();
        match e {
            // Worded for people, as a Set's refusal is.
            BackupError::Invalid(v) => ApiError::invalid(v),
            other => ApiError::new(status, other.code(), other.to_string()).field(field),
        }
    }
}

/// The backup file as the OpenAPI document shows it: binary, age format.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BackupFile(pub Vec<u8>);

/// What to export.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The passphrase the file is encrypted with: at least 12 characters.
    /// Nothing opens the file without it.
    #[serde(default)]
    pub passphrase: String,
    /// Whether to include the individual certificate and its private key
    /// (default false: a backup meant for other devices must not give them
    /// this one's identity, and a key is best kept in one place).
    #[serde(default)]
    pub include_certificate: bool,
}

portcullis_core::input!(ExportRequest);

impl std::fmt::Debug for ExportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The passphrase never reaches a log.
        f.debug_struct("ExportRequest")
            .field("passphrase", &"(hidden)")
            .field("include_certificate", &self.include_certificate)
            .finish()
    }
}

/// Export: a backup of the device as one file, encrypted with the
/// passphrase (age, scrypt): the stored configuration (what a start or
/// Reboot loads; Store first to include unsaved Sets) with every secret,
/// the accounts with their password hashes, and the individual certificate
/// with its key if asked for. Recorded in the event log (`config_exported`).
#[utoipa::path(post, path = "/api/v1/config/export", tag = "config", request_body = ExportRequest,
    responses((status = 200, description = "the backup file (age format, binary), as an attachment",
            content_type = "application/octet-stream", body = BackupFile),
        (status = 400, description = "the passphrase is shorter than 12 characters (passphrase_too_short)", body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn export(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(req): ApiJson<ExportRequest>,
) -> Result<Response, ApiError> {
    let (file, info) = rt.export_backup(req.passphrase, req.include_certificate, &admin.actor).await?;
    let stamp = info.created.replace(['-', ':'], "");
    let host: String = info
        .host_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(64)
        .collect();
    let name = format!("portcullis-backup-{host}-{}.age", stamp.split('.').next().unwrap_or(&stamp));
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"portcullis-backup.age\""));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        file,
    )
        .into_response())
}

/// A yes/no multipart field: `true`/`1`/`on`, or `false`/`0`/empty.
fn flag(value: Option<Vec<u8>>, name: &str) -> Result<bool, ApiError> {
    match value.as_deref().map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "true" | "1" | "on" | "yes") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "off" | "no" | "") => Ok(false),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidValue,
            format!("\"{name}\" must be true or false"),
        )
        .field(name)),
    }
}

/// Import: reads a backup (multipart `file` and `passphrase`), checks all
/// of it — every section as its Set checks it, the accounts, the
/// certificate — and only then applies it as one change, or refuses it
/// whole (a wrong passphrase, a damaged file, a newer version: 400 with
/// its code, nothing changed). The settings become running and are kept by
/// Store, as a Set's are; the answer is a Set's: 200, or 202 when the
/// change is provisional because it closes the port it came through, or
/// its access rules deny this address (refused as `would_lock_out` unless
/// the field `force=true` is sent). The accounts are written at once. The
/// backup's certificate is installed only with `include_certificate=true`;
/// otherwise the device keeps its own and the answer says `skipped`.
#[utoipa::path(post, path = "/api/v1/config/import", tag = "config",
    request_body(content_type = "multipart/form-data", description = "fields: file (the backup), passphrase, include_certificate (optional, true to install the backup's certificate and key), force (optional, true to apply access rules that deny this address provisionally)"),
    responses((status = 200, body = ImportOutcome),
        (status = 202, description = "applied provisionally: confirm before the deadline or the settings are rolled back", body = ProvisionalChange),
        (status = 400, description = "wrong_passphrase, backup_damaged, backup_newer_version, or a section's own refusal", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "another change waits for confirmation, a port cannot be opened, or would_lock_out", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn import(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    info: Option<axum::Extension<crate::conn::ConnInfo>>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let mut f =
        super::certificate::fields(multipart, &["file", "passphrase", "include_certificate", "force"])
            .await?;
    let file = f.remove("file").filter(|b| !b.is_empty()).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Required, "choose the backup file").field("file")
    })?;
    let passphrase =
        f.remove("passphrase").map(|p| String::from_utf8_lossy(&p).into_owned()).unwrap_or_default();
    if passphrase.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Required,
            "give the passphrase the backup was made with",
        )
        .field("passphrase"));
    }
    let install_certificate = flag(f.remove("include_certificate"), "include_certificate")?;
    let force = flag(f.remove("force"), "force")?;
    let now = rt.now();
    let checked = tokio::task::spawn_blocking(move || crate::backup::open(&file, &passphrase)?.checked(now))
        .await
        .map_err(ApiError::internal)??;
    let via = info.map(|i| i.via());
    let outcome = rt.import_backup(checked, install_certificate, force, &admin.actor, via).await?;
    Ok(set_answer(&outcome, rt.pending()))
}
