//! `/api/v1/authentication`: which authentication schemes are on.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::Runtime;

/// The running authentication settings.
#[utoipa::path(get, path = "/api/v1/authentication", tag = "users",
    responses((status = 200, body = portcullis_core::settings::AuthenticationSettings)))]
pub async fn get_authentication(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
) -> Json<portcullis_core::settings::AuthenticationSettings> {
    Json(rt.running().authentication.clone())
}

/// Set for the authentication schemes (Digest on or off). Switching Digest
/// off removes every stored Digest secret at once; switched on, each user's
/// secret is derived at its next password change or password login.
#[utoipa::path(put, path = "/api/v1/authentication", tag = "users",
    request_body = portcullis_core::settings::AuthenticationSettings,
    responses((status = 200, body = portcullis_core::settings::AuthenticationSettings), (status = 400, body = ErrorBody)))]
pub async fn put_authentication(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<portcullis_core::settings::AuthenticationSettings>,
) -> Result<Json<portcullis_core::settings::AuthenticationSettings>, ApiError> {
    if settings.digest && !crate::build_info::built("digest") {
        return Err(crate::build_info::not_built_error("digest"));
    }
    let running = rt.set_authentication(settings, &admin.actor).await?;
    Ok(Json(running.authentication.clone()))
}
