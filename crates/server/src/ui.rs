//! The web UI under `/admin/`: pages and assets embedded in the binary (no CDN).

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, header};

use crate::runtime::Runtime;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

fn page(body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The UI's routes; pages check the login themselves (in the browser) through the API.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(|| async { page(include_str!("../assets/index.html")) }))
        .route("/admin/login", get(|| async { page(include_str!("../assets/login.html")) }))
        .route(
            "/admin/assets/style.css",
            get(|| async { asset("text/css", include_str!("../assets/style.css")) }),
        )
        .route(
            "/admin/assets/login.js",
            get(|| async { asset("text/javascript", include_str!("../assets/login.js")) }),
        )
        .route(
            "/admin/assets/index.js",
            get(|| async { asset("text/javascript", include_str!("../assets/index.js")) }),
        )
}
