//! `/healthz`: whether the server answers (open without login).

use axum::Json;
use axum::response::IntoResponse;
use http::header;
use serde::Serialize;
use utoipa::ToSchema;

/// Health of the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always "ok" when the server answers.
    pub status: &'static str,
}

/// Liveness check, open without login.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz() -> impl IntoResponse {
    // A stored answer would say the server lives when it may not.
    ([(header::CACHE_CONTROL, "no-store")], Json(Health { status: "ok" }))
}
