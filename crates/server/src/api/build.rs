//! `/api/v1/build`: what this build carries.

use axum::Json;

use crate::build_info::BuildInfo;
use crate::http::Viewer;

/// What this build carries (any logged-in user).
#[utoipa::path(get, path = "/api/v1/build", tag = "system", responses((status = 200, body = BuildInfo)))]
pub async fn get_build(_v: Viewer) -> Json<BuildInfo> {
    Json(BuildInfo::current())
}
