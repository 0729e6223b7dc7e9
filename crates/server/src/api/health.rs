//! `/healthz`: whether the server answers (open without login).

use axum::Json;
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
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}
