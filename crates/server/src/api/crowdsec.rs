//! `GET`/`PUT /api/v1/crowdsec`: the CrowdSec bouncer (and, with machine
//! credentials, signals), under the Set/Store life cycle. The bouncer key
//! and machine password are never returned; a PUT that omits one keeps it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use portcullis_core::crowdsec::CrowdSecSettings;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::Runtime;

/// The running CrowdSec settings, secrets removed.
#[utoipa::path(get, path = "/api/v1/crowdsec", tag = "fleet",
    responses((status = 200, body = CrowdSecSettings), (status = 401, body = ErrorBody), (status = 501, body = ErrorBody)))]
pub async fn get_crowdsec(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<CrowdSecSettings> {
    Json(rt.running().crowdsec.redacted())
}

/// Set: validates and makes the settings running at once (polling restarts
/// with them); nothing is written to disk until Store.
#[utoipa::path(put, path = "/api/v1/crowdsec", tag = "fleet", request_body = CrowdSecSettings,
    responses((status = 200, body = CrowdSecSettings), (status = 400, body = ErrorBody),
        (status = 409, description = "a provisional change waits for confirmation", body = ErrorBody),
        (status = 501, body = ErrorBody)))]
pub async fn put_crowdsec(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<CrowdSecSettings>,
) -> Result<Json<CrowdSecSettings>, ApiError> {
    let settings = settings.merge_secrets(&rt.running().crowdsec);
    let running = rt.set_crowdsec(settings, &admin.actor).await?;
    Ok(Json(running.crowdsec.redacted()))
}
