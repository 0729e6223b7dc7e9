//! `GET`/`PUT /api/v1/syslog`: the export of the event log (and optionally
//! the logfile) to syslog collectors, under the Set/Store life cycle. The
//! TLS client key is never returned; a PUT that omits it keeps it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portcullis_core::syslog::SyslogSettings;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::Runtime;

/// The running syslog export settings, secrets removed.
#[utoipa::path(get, path = "/api/v1/syslog", tag = "fleet",
    responses((status = 200, body = SyslogSettings), (status = 401, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn get_syslog(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<SyslogSettings> {
    Json(rt.running().syslog.redacted())
}

/// Set: validates and makes the settings running at once (the exporter is
/// restarted with them); nothing is written to disk until Store.
#[utoipa::path(put, path = "/api/v1/syslog", tag = "fleet", request_body = SyslogSettings,
    responses((status = 200, body = SyslogSettings), (status = 400, body = ErrorBody),
        (status = 409, description = "a provisional change waits for confirmation", body = ErrorBody),
        (status = 501, body = ErrorBody)))]
pub async fn put_syslog(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<SyslogSettings>,
) -> Result<Json<SyslogSettings>, ApiError> {
    let settings = settings.merge_secrets(&rt.running().syslog);
    let running = rt.set_syslog(settings, &admin.actor).await?;
    Ok(Json(running.syslog.redacted()))
}
