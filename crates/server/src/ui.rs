//! The web UI under `/admin/`: pages and assets embedded in the binary (no
//! CDN, no front-end build step). Every page but the login page is the same
//! shell (`app.html`); `app.js` renders the page its path names through the
//! JSON API. The pages come rendered in each language of [`Lang`]: a page is
//! served in the language the operator chose (a cookie the UI sets), else the
//! one `Accept-Language` prefers, and its `<html lang>` names it; the page
//! then loads only that language's texts (`assets/i18n/<lang>.js`).

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::i18n::Lang;
use crate::runtime::Runtime;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The pages of the UI (below `/admin/`); each is served the shell `app.html`.
pub const PAGES: &[&str] =
    &["", "webserver", "access-control", "profiles", "fleet", "logfile", "events", "blocked", "users"];

/// The embedded assets: name below `/admin/assets/`, content type, content.
pub const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("../assets/style.css")),
    ("i18n.js", "text/javascript; charset=utf-8", include_str!("../assets/i18n.js")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("../assets/common.js")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("../assets/app.js")),
    ("webserver.js", "text/javascript; charset=utf-8", include_str!("../assets/webserver.js")),
    ("pages.js", "text/javascript; charset=utf-8", include_str!("../assets/pages.js")),
    ("profiles.js", "text/javascript; charset=utf-8", include_str!("../assets/profiles.js")),
    ("fleet.js", "text/javascript; charset=utf-8", include_str!("../assets/fleet.js")),
    ("login.js", "text/javascript; charset=utf-8", include_str!("../assets/login.js")),
    ("favicon.svg", "image/svg+xml", include_str!("../assets/favicon.svg")),
    ("i18n/en.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-en.js"))),
    ("i18n/de.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-de.js"))),
    ("i18n/es.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-es.js"))),
    ("i18n/fr.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-fr.js"))),
    ("i18n/it.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-it.js"))),
    ("i18n/ja.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-ja.js"))),
    ("i18n/ru.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-ru.js"))),
    ("i18n/zh.js", "text/javascript; charset=utf-8", include_str!(concat!(env!("OUT_DIR"), "/i18n-zh.js"))),
];

/// `app.html` rendered in each language, in the order of [`Lang::ALL`].
const APP_HTML: [&str; 8] = [
    include_str!(concat!(env!("OUT_DIR"), "/en-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/de-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/es-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/fr-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/it-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/ja-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/ru-app.html")),
    include_str!(concat!(env!("OUT_DIR"), "/zh-app.html")),
];

/// `login.html` rendered in each language, in the order of [`Lang::ALL`].
const LOGIN_HTML: [&str; 8] = [
    include_str!(concat!(env!("OUT_DIR"), "/en-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/de-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/es-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/fr-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/it-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/ja-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/ru-login.html")),
    include_str!(concat!(env!("OUT_DIR"), "/zh-login.html")),
];

/// A page in the language the request gets ([`Lang::of_page`]).
fn page(pages: &'static [&'static str; 8], headers: &HeaderMap) -> Response {
    let lang = Lang::of_page(headers);
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], pages[lang as usize]).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    h.insert(header::VARY, HeaderValue::from_static("accept-language, cookie"));
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

/// What one page of the UI (not the login page) downloads in `lang`, in
/// bytes: the shell, the style sheet, the icon, the scripts and that
/// language's texts.
pub fn page_bytes(lang: Lang) -> usize {
    let own = format!("i18n/{}.js", lang.code());
    APP_HTML[lang as usize].len()
        + ASSETS
            .iter()
            .filter(|(n, _, _)| *n != "login.js" && (!n.starts_with("i18n/") || *n == own))
            .map(|(_, _, b)| b.len())
            .sum::<usize>()
}

/// Total size in bytes of the UI's pages and assets as embedded in the binary.
pub fn embedded_bytes() -> usize {
    APP_HTML.iter().chain(&LOGIN_HTML).map(|p| p.len()).sum::<usize>()
        + ASSETS.iter().map(|(_, _, b)| b.len()).sum::<usize>()
}

/// The UI's routes; pages check the login themselves (in the browser) through the API.
pub fn routes() -> Router<Arc<Runtime>> {
    let mut router = Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/login", get(|headers: HeaderMap| async move { page(&LOGIN_HTML, &headers) }))
        .route("/admin/assets/{*name}", get(asset));
    for p in PAGES {
        router = router.route(
            &format!("/admin/{p}"),
            get(|headers: HeaderMap| async move { page(&APP_HTML, &headers) }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_named_once() {
        // Eight languages, each page loading only its own.
        assert!(embedded_bytes() < 400 * 1024, "UI assets weigh {} bytes", embedded_bytes());
        for lang in Lang::ALL {
            assert!(page_bytes(lang) < 140 * 1024, "a page in {lang:?} weighs {} bytes", page_bytes(lang));
        }
        for (i, (name, _, _)) in ASSETS.iter().enumerate() {
            assert!(!ASSETS[i + 1..].iter().any(|(n, _, _)| n == name), "{name} twice");
        }
    }

    /// Prints the figures the README gives (`cargo test -p portcullis --lib ui_weight -- --nocapture`).
    #[test]
    fn ui_weight() {
        println!("embedded: {} bytes", embedded_bytes());
        for lang in Lang::ALL {
            println!("a page in {}: {} bytes", lang.code(), page_bytes(lang));
        }
    }

    #[test]
    fn every_page_names_its_language_and_loads_its_texts() {
        for (i, lang) in Lang::ALL.into_iter().enumerate() {
            for html in [APP_HTML[i], LOGIN_HTML[i]] {
                assert!(html.contains(&format!("<html lang=\"{}\">", lang.code())), "{lang:?}");
                assert!(
                    html.contains(&format!("href=\"/admin/assets/i18n/{}.js\"", lang.code())),
                    "{lang:?}"
                );
                assert!(!html.contains("{{"), "{lang:?}: a placeholder left");
            }
            let (name, _, texts) =
                ASSETS.iter().find(|(n, _, _)| *n == format!("i18n/{}.js", lang.code())).expect("texts");
            assert!(texts.starts_with("export default {\""), "{name}");
        }
        assert!(LOGIN_HTML[Lang::Ja as usize].contains("<h1 id=\"login-title\">ログイン</h1>"));
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for html in APP_HTML.iter().chain(&LOGIN_HTML) {
            assert!(!html.contains("<script>"), "inline script");
            assert!(!html.contains("style="), "inline style");
            assert!(!html.contains("<style"), "inline style");
        }
    }
}
