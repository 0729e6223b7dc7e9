//! `/api/v1/webserver` (+ `/factory`) and `/api/v1/listeners`: the "Web
//! Server" settings under the Set/Store life cycle, and the listeners open now.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use portcullis_core::settings::{ListenerSpec, WebServerSettings};

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::Runtime;

use super::config::{ProvisionalChange, set_answer};

/// The running "Web Server" settings.
#[utoipa::path(get, path = "/api/v1/webserver", tag = "webserver",
    responses((status = 200, body = WebServerSettings), (status = 401, body = ErrorBody)))]
pub async fn get_webserver(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<WebServerSettings> {
    Json(rt.running().webserver.clone())
}

/// Set: validates and makes the settings running at once (listeners opened and
/// closed); nothing is written to disk until Store. A Set that closes the port
/// it came through is provisional: 202 with the deadline, confirmed by
/// `POST /api/v1/config/confirm` through a port it keeps or opens.
#[utoipa::path(put, path = "/api/v1/webserver", tag = "webserver", request_body = WebServerSettings,
    responses((status = 200, body = WebServerSettings),
        (status = 202, description = "applied provisionally: confirm before the deadline or it is rolled back", body = ProvisionalChange),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "a port cannot be opened", body = ErrorBody)))]
pub async fn put_webserver(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    info: Option<axum::Extension<crate::conn::ConnInfo>>,
    ApiJson(settings): ApiJson<WebServerSettings>,
) -> Result<Response, ApiError> {
    let via = info.map(|i| i.via());
    let (running, pending) = rt.set_webserver(settings, &admin.actor, via).await?;
    Ok(set_answer(&running.webserver, pending))
}

/// Factory: the factory defaults of the dialog (to load into the form; a Set applies them).
#[utoipa::path(get, path = "/api/v1/webserver/factory", tag = "webserver",
    responses((status = 200, body = WebServerSettings)))]
pub async fn get_factory(_v: Viewer) -> Json<WebServerSettings> {
    Json(WebServerSettings::default())
}

/// The listeners open now.
#[utoipa::path(get, path = "/api/v1/listeners", tag = "webserver", responses((status = 200, body = Vec<ListenerSpec>)))]
pub async fn listeners(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<Vec<ListenerSpec>> {
    Json(rt.open_listeners().await)
}
