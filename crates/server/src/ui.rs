//! The web UI under `/admin/`: pages and assets embedded in the binary (no
//! CDN, no front-end build step). Every page but the login page is the same
//! shell (`app.html`); `app.js` renders the page its path names, in English or
//! German, through the JSON API.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};

use crate::runtime::Runtime;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The pages of the UI (below `/admin/`); each is served the shell `app.html`.
pub const PAGES: &[&str] =
    &["", "webserver", "access-control", "profiles", "logfile", "events", "blocked", "users"];

/// The embedded assets: name below `/admin/assets/`, content type, content.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("../assets/style.css")),
    ("i18n.js", "text/javascript; charset=utf-8", include_str!("../assets/i18n.js")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("../assets/common.js")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    ("webserver.js", "text/javascript; charset=utf-8", include_str!("../assets/webserver.js")),
    ("pages.js", "text/javascript; charset=utf-8", include_str!("../assets/pages.js")),
    ("profiles.js", "text/javascript; charset=utf-8", include_str!("../assets/profiles.js")),
    ("login.js", "text/javascript; charset=utf-8", include_str!("../assets/login.js")),
    ("favicon.svg", "image/svg+xml", include_str!("../assets/favicon.svg")),
];

const APP_HTML: &str = include_str!("../assets/app.html");
const LOGIN_HTML: &str = include_str!("../assets/login.html");

fn page(body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], *body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Total size in bytes of the UI's pages and assets as embedded in the binary.
pub fn embedded_bytes() -> usize {
    APP_HTML.len() + LOGIN_HTML.len() + ASSETS.iter().map(|(_, _, b)| b.len()).sum::<usize>()
}

/// The UI's routes; pages check the login themselves (in the browser) through the API.
pub fn routes() -> Router<Arc<Runtime>> {
    let mut router = Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/login", get(|| async { page(LOGIN_HTML) }))
        .route("/admin/assets/{name}", get(asset));
    for p in PAGES {
        router = router.route(&format!("/admin/{p}"), get(|| async { page(APP_HTML) }));
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_named_once() {
        assert!(embedded_bytes() < 200 * 1024, "UI assets weigh {} bytes", embedded_bytes());
        for (i, (name, _, _)) in ASSETS.iter().enumerate() {
            assert!(!ASSETS[i + 1..].iter().any(|(n, _, _)| n == name), "{name} twice");
        }
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for html in [APP_HTML, LOGIN_HTML] {
            assert!(!html.contains("<script>"), "inline script");
            assert!(!html.contains("style="), "inline style");
            assert!(!html.contains("<style"), "inline style");
        }
    }
}
