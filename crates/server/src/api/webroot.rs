//! `/api/v1/webroot`: the static content settings.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::Runtime;

/// The running static content settings.
#[utoipa::path(get, path = "/api/v1/webroot", tag = "webserver",
    responses((status = 200, body = portcullis_core::settings::WebrootSettings)))]
pub async fn get_webroot(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
) -> Json<portcullis_core::settings::WebrootSettings> {
    Json(rt.running().webroot.clone())
}

/// Set for the static content settings (public, or login required).
#[utoipa::path(put, path = "/api/v1/webroot", tag = "webserver",
    request_body = portcullis_core::settings::WebrootSettings,
    responses((status = 200, body = portcullis_core::settings::WebrootSettings), (status = 400, body = ErrorBody)))]
pub async fn put_webroot(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<portcullis_core::settings::WebrootSettings>,
) -> Result<Json<portcullis_core::settings::WebrootSettings>, ApiError> {
    let running = rt.set_webroot(settings, &admin.actor).await?;
    Ok(Json(running.webroot.clone()))
}
