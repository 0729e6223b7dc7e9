//! The web UI under `/admin/`: pages and assets embedded in the binary (no
//! CDN, no front-end build step). Every page but the login page is the same
//! shell (`app.html`); `app.js` renders the page its path names through the
//! JSON API. The pages come rendered in each language of [`Lang`]: a page is
//! served in the language the operator chose (a cookie the UI sets), else the
//! one `Accept-Language` prefers, and its `<html lang>` names it; the page
//! then loads only that language's texts (`assets/i18n/<lang>.js`).
//!
//! Caching: the assets are served under a folder named after their content
//! (`/admin/assets/<version>/…`, made by `build.rs`), which browsers keep for
//! good without asking again; the pages, which name that folder, are
//! revalidated each time (`no-cache` and a strong ETag: a 304 when
//! unchanged). Every file is embedded gzipped, made at build time, and only
//! so: it is sent as it is to clients that take gzip (every browser), and
//! unpacked for each request of a client that does not (a script, `curl`
//! without `--compressed`), which costs that request some CPU but keeps
//! half a MiB out of the binary and no unpacked copy in memory.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::conditional::{Precondition, evaluate};
use crate::error::ApiError;
use crate::i18n::Lang;
use crate::runtime::Runtime;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The pages of the UI (below `/admin/`); each is served the shell `app.html`.
pub const PAGES: &[&str] =
    &["", "webserver", "access-control", "profiles", "fleet", "logfile", "events", "blocked", "users"];

/// One file of the UI as embedded: its bytes gzipped at build time (plain
/// when that is not smaller), its length, and a strong entity tag for each
/// form.
#[derive(Debug)]
pub struct Embedded {
    /// Its name below the assets' folder (`app.js`, `i18n/de.js`), or the
    /// page's (`de-app.html`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes as the binary keeps them: gzipped if `gzipped`, else plain.
    pub stored: &'static [u8],
    /// Whether `stored` is a gzip member (it is for every text file).
    pub gzipped: bool,
    /// The length of its plain bytes.
    pub len: usize,
    /// The entity tag of the plain bytes (quoted).
    pub etag: &'static str,
    /// The entity tag of the gzipped bytes (quoted).
    pub etag_gzip: &'static str,
}

impl Embedded {
    /// Its bytes gzipped, if it is kept so.
    pub fn gzip(&self) -> Option<&'static [u8]> {
        self.gzipped.then_some(self.stored)
    }

    /// Its plain bytes: unpacked if it is kept gzipped (empty should that
    /// fail, which the tests rule out for every file).
    pub fn body(&self) -> Bytes {
        if self.gzipped {
            Bytes::from(crate::inflate::gunzip(self.stored, self.len).unwrap_or_default())
        } else {
            Bytes::from_static(self.stored)
        }
    }

    /// The length of what the wire carries: the gzipped bytes if it is kept
    /// so, else the plain ones.
    fn wire_len(&self) -> usize {
        self.gzip().map_or(self.len, <[u8]>::len)
    }
}

// ASSET_VERSION, ASSETS, APP_HTML and LOGIN_HTML, made by build.rs.
include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// How long browsers keep the assets of this build's folder: for good (a
/// year, the longest a cache is asked to keep anything), never asking again;
/// its name changes with any asset's content.
const KEEP: &str = "max-age=31536000, immutable";
/// The pages, and assets asked for outside this build's folder: kept, but
/// asked again (a 304 when unchanged) before each use.
const REVALIDATE: &str = "no-cache";

/// The path of this build's assets' folder (`/admin/assets/<version>`).
pub fn assets_path() -> String {
    format!("/admin/assets/{ASSET_VERSION}")
}

/// Whether the request takes gzip (`Accept-Encoding`: `gzip`, `x-gzip` or
/// `*` with a weight above 0; RFC 9110 §12.5.3).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim();
            let wanted = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, q)| q.trim().parse::<f32>().ok())
                .is_none_or(|q| q > 0.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(wanted);
            } else if coding == "*" {
                any = Some(wanted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// The answer with `file` to a GET or HEAD: gzipped if the client takes it,
/// its entity tag, `cache_control`; 304 when the client's copy is current,
/// 412 when `If-Match` fails. `headers` go on every answer (`Vary` is given
/// whole, Accept-Encoding added).
fn serve(
    file: &Embedded,
    request: &HeaderMap,
    cache_control: &'static str,
    mut headers: HeaderMap,
    vary: &'static str,
) -> Response {
    let gzip = file.gzip().filter(|_| accepts_gzip(request));
    let etag = if gzip.is_some() { file.etag_gzip } else { file.etag };
    headers.insert(header::ETAG, HeaderValue::from_static(etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if file.gzipped {
        headers.insert(header::VARY, HeaderValue::from_static(vary));
    }
    let (status, body) = match evaluate(request, etag, None) {
        Precondition::Failed => {
            let mut r = ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                portcullis_core::ErrorCode::PreconditionFailed,
                format!("the file's entity tag is {etag}, which If-Match does not list"),
            )
            .into_response();
            r.headers_mut().extend(headers);
            return r;
        }
        Precondition::NotModified => (StatusCode::NOT_MODIFIED, Body::empty()),
        Precondition::Proceed => {
            let body = gzip.map_or_else(|| file.body(), Bytes::from_static);
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            if gzip.is_some() {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            (StatusCode::OK, Body::from(body))
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A page in the language the request gets ([`Lang::of_page`]).
fn page(pages: &'static [Embedded; 8], request: &HeaderMap) -> Response {
    let lang = Lang::of_page(request);
    let mut h = HeaderMap::with_capacity(8);
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    h.insert(header::VARY, HeaderValue::from_static("accept-language, cookie"));
    serve(&pages[lang as usize], request, REVALIDATE, h, "accept-language, cookie, accept-encoding")
}

/// An asset: `<version>/<name>` from this build's folder (kept for good), a
/// bare `<name>` or one from another version's folder (a page loaded before
/// a firmware update) with this build's content, asked again each time.
async fn asset(Path(path): Path<String>, request: HeaderMap) -> Response {
    let (cache_control, name) = match path.split_once('/') {
        Some((v, name)) if v == ASSET_VERSION => (KEEP, name),
        Some((v, name)) if v.len() == ASSET_VERSION.len() && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (REVALIDATE, name)
        }
        _ => (REVALIDATE, path.as_str()),
    };
    match ASSETS.iter().find(|a| a.name == name) {
        Some(file) => serve(file, &request, cache_control, HeaderMap::new(), "accept-encoding"),
        None => ApiError::not_found("no such file of the web UI").into_response(),
    }
}

/// The files one page of the UI (not the login page) downloads in `lang`:
/// the shell, the style sheet, the icon, the scripts and that language's
/// texts.
fn page_files(lang: Lang) -> impl Iterator<Item = &'static Embedded> {
    let own = format!("i18n/{}.js", lang.code());
    std::iter::once(&APP_HTML[lang as usize]).chain(
        ASSETS
            .iter()
            .filter(move |a| a.name != "login.js" && (!a.name.starts_with("i18n/") || a.name == own)),
    )
}

/// What one page of the UI (not the login page) downloads in `lang`, in
/// bytes: the shell, the style sheet, the icon, the scripts and that
/// language's texts.
pub fn page_bytes(lang: Lang) -> usize {
    page_files(lang).map(|f| f.len).sum()
}

/// The same as [`page_bytes`], as a browser gets it: gzipped.
pub fn page_bytes_gzip(lang: Lang) -> usize {
    page_files(lang).map(Embedded::wire_len).sum()
}

/// Size in bytes of the UI's pages and assets: plain (as served to a client
/// that takes no gzip), and as embedded in the binary (gzipped; the few
/// files gzip does not make smaller plain).
pub fn embedded_bytes() -> (usize, usize) {
    let all = || APP_HTML.iter().chain(&LOGIN_HTML).chain(ASSETS);
    (all().map(|f| f.len).sum(), all().map(|f| f.stored.len()).sum())
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

    fn text(file: &Embedded) -> String {
        String::from_utf8(file.body().to_vec()).expect("UTF-8")
    }

    #[test]
    fn assets_are_small_and_named_once() {
        // Eight languages, each page loading only its own. Issue 21's backup
        // section, per-port addresses and block lengths and issue 22's API
        // tokens and account lockout took the heaviest page (Russian, two
        // bytes a letter) from 136 to about 158 KiB (about 46 KB gzipped, as
        // it is sent) and all assets from 500 to 522 KiB; issue 22's two-step
        // verification took the Russian page to 165 KiB (169,386 bytes, 47 KB
        // gzipped) and all assets to 555 KiB: close to both budgets.
        let (plain, stored) = embedded_bytes();
        assert!(plain + stored < 560 * 1024, "UI assets weigh {plain} bytes, {stored} as embedded");
        assert!(stored < 160 * 1024, "UI assets take {stored} bytes of the binary");
        for lang in Lang::ALL {
            assert!(page_bytes(lang) < 170 * 1024, "a page in {lang:?} weighs {} bytes", page_bytes(lang));
        }
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(!ASSETS[i + 1..].iter().any(|b| b.name == a.name), "{} twice", a.name);
        }
    }

    /// Prints the figures the README gives (`cargo test -p portcullis --lib ui_weight -- --nocapture`).
    #[test]
    fn ui_weight() {
        let (plain, stored) = embedded_bytes();
        println!("embedded: {stored} bytes (gzipped), {plain} bytes unpacked");
        for lang in Lang::ALL {
            println!(
                "a page in {}: {} bytes, {} gzipped",
                lang.code(),
                page_bytes(lang),
                page_bytes_gzip(lang)
            );
        }
        for a in ASSETS.iter().filter(|a| !a.name.starts_with("i18n/") || a.name == "i18n/en.js") {
            println!("  {}: {} bytes, {} gzipped", a.name, a.len, a.wire_len());
        }
    }

    #[test]
    fn every_page_names_its_language_and_loads_its_texts_from_this_builds_folder() {
        let folder = assets_path();
        for (i, lang) in Lang::ALL.into_iter().enumerate() {
            for file in [&APP_HTML[i], &LOGIN_HTML[i]] {
                let html = text(file);
                assert!(html.contains(&format!("<html lang=\"{}\">", lang.code())), "{lang:?}");
                assert!(html.contains(&format!("href=\"{folder}/i18n/{}.js\"", lang.code())), "{lang:?}");
                assert!(html.contains(&format!("href=\"{folder}/style.css\"")), "{lang:?}");
                assert!(!html.contains("/admin/assets/style.css"), "{lang:?}: an asset outside the folder");
                assert!(!html.contains("{{"), "{lang:?}: a placeholder left");
            }
            let texts = ASSETS.iter().find(|a| a.name == format!("i18n/{}.js", lang.code())).expect("texts");
            assert!(text(texts).starts_with("export default {\""), "{}", texts.name);
        }
        assert!(text(&LOGIN_HTML[Lang::Ja as usize]).contains("<h1 id=\"login-title\">ログイン</h1>"));
    }

    #[test]
    fn every_file_has_its_own_entity_tags_and_a_smaller_gzip() {
        let all: Vec<&Embedded> = APP_HTML.iter().chain(&LOGIN_HTML).chain(ASSETS).collect();
        let mut tags = std::collections::HashSet::new();
        for f in &all {
            for tag in [f.etag, f.etag_gzip] {
                assert!(
                    tag.starts_with('"') && tag.ends_with('"') && !tag.starts_with("W/"),
                    "{}: {tag}",
                    f.name
                );
                assert!(HeaderValue::from_str(tag).is_ok(), "{}", f.name);
                assert!(tags.insert(tag), "{}: {tag} twice", f.name);
            }
            // Every text file is worth compressing; a gzip member starts 1f 8b.
            if f.len > 1024 {
                let gz = f.gzip().unwrap_or_else(|| panic!("{}: no gzip", f.name));
                assert!(gz.starts_with(&[0x1f, 0x8b]) && gz.len() < f.len * 3 / 4, "{}", f.name);
            }
        }
        assert!(ASSET_VERSION.len() == 12 && ASSET_VERSION.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    /// What a client without gzip gets is the file itself: its length and
    /// the entity tag made from the plain bytes at build time.
    #[test]
    fn every_file_unpacks_to_the_bytes_its_tag_names() {
        use sha2::Digest as _;
        for f in APP_HTML.iter().chain(&LOGIN_HTML).chain(ASSETS) {
            let body = f.body();
            assert_eq!(body.len(), f.len, "{}", f.name);
            let tag = hex::encode(sha2::Sha256::digest(&body));
            assert_eq!(f.etag, format!("\"{}\"", &tag[..20]), "{}", f.name);
            if !f.gzipped {
                assert_eq!(&body[..], f.stored, "{}", f.name);
            }
        }
    }

    #[tokio::test]
    async fn a_client_without_gzip_gets_the_plain_file_with_its_length() {
        let file = ASSETS.iter().find(|a| a.name == "common.js").expect("common.js");
        let r = serve(file, &HeaderMap::new(), KEEP, HeaderMap::new(), "accept-encoding");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(r.headers()[header::CONTENT_LENGTH], file.len.to_string().as_str());
        assert_eq!(r.headers()[header::ETAG], file.etag);
        assert_eq!(r.headers()[header::VARY], "accept-encoding");
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
        assert_eq!(body, file.body());

        let mut gzip = HeaderMap::new();
        gzip.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let r = serve(file, &gzip, KEEP, HeaderMap::new(), "accept-encoding");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::ETAG], file.etag_gzip);
        let gz = file.gzip().expect("gzipped");
        assert_eq!(r.headers()[header::CONTENT_LENGTH], gz.len().to_string().as_str());
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.expect("body");
        assert_eq!(&body[..], gz, "the stored member as it is");
    }

    #[test]
    fn gzip_is_chosen_by_accept_encoding() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).expect("value"));
            m
        };
        assert!(!accepts_gzip(&HeaderMap::new()));
        for yes in
            ["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.5", "*", "x-gzip", "GZIP", "identity, *;q=0.1"]
        {
            assert!(accepts_gzip(&h(yes)), "{yes}");
        }
        for no in ["identity", "br", "gzip;q=0", "gzip;q=0.000, *", "*;q=0", "deflate"] {
            assert!(!accepts_gzip(&h(no)), "{no}");
        }
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for file in APP_HTML.iter().chain(&LOGIN_HTML) {
            let html = text(file);
            assert!(!html.contains("<script>"), "inline script");
            assert!(!html.contains("style="), "inline style");
            assert!(!html.contains("<style"), "inline style");
        }
    }
}
