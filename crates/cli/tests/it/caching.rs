//! HTTP caching as linters (REDbot, HTTPolice) check it: the UI's files with
//! validators, kept for good under their content-named folder, gzipped at
//! build time; `/healthz` never stored.

#[cfg(feature = "ui")]
use std::io::Write as _;
#[cfg(feature = "ui")]
use std::process::{Command, Stdio};

use portcullis_testkit::TestServer;

use crate::bin;

/// `bytes` gunzipped by the system's `gzip`.
#[cfg(feature = "ui")]
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut child =
        Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("gzip");
    child.stdin.take().expect("stdin").write_all(bytes).expect("write");
    let out = child.wait_with_output().expect("gzip");
    assert!(out.status.success(), "not a gzip member");
    out.stdout
}

#[test]
fn healthz_is_never_stored() {
    let server = TestServer::start(&bin()).expect("start");
    let r = server.client().get(server.url("/healthz")).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[cfg(feature = "ui")]
#[test]
fn ui_files_have_validators_long_caching_and_gzip() {
    let server = TestServer::start(&bin()).expect("start");
    let c = server.client();

    // The page: revalidated each time, a strong ETag, gzip when taken.
    let plain = c.get(server.url("/admin/login")).send().expect("get");
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    assert!(plain.headers().get("content-encoding").is_none());
    let page_tag = plain.headers()["etag"].to_str().expect("etag").to_string();
    assert!(page_tag.starts_with('"'), "strong: {page_tag}");
    let html = plain.text().expect("body");
    let gz = c.get(server.url("/admin/login")).header("accept-encoding", "gzip, br").send().expect("get");
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert!(gz.headers()["vary"].to_str().expect("vary").contains("accept-encoding"));
    let gz_tag = gz.headers()["etag"].to_str().expect("etag").to_string();
    assert_ne!(gz_tag, page_tag, "each form its own tag");
    let gz_bytes = gz.bytes().expect("body");
    assert!(gz_bytes.len() < html.len() / 2, "{} of {}", gz_bytes.len(), html.len());
    assert_eq!(gunzip(&gz_bytes), html.as_bytes());
    let r = c.get(server.url("/admin/login")).header("if-none-match", &page_tag).send().expect("get");
    assert_eq!(r.status(), 304);
    assert!(r.bytes().expect("body").is_empty(), "a 304 has no body");

    // The page names this build's folder; its assets are kept for good.
    let start = html.find("/admin/assets/").expect("an asset") + "/admin/assets/".len();
    let folder = &html[start..start + 12];
    assert!(folder.bytes().all(|b| b.is_ascii_hexdigit()), "{folder}");
    assert!(html.contains(&format!("/admin/assets/{folder}/style.css")), "{html}");
    let url = server.url(&format!("/admin/assets/{folder}/common.js"));
    let r = c.get(&url).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "max-age=31536000, immutable");
    assert!(r.headers()["content-type"].to_str().expect("type").starts_with("text/javascript"));
    let tag = r.headers()["etag"].to_str().expect("etag").to_string();
    let js = r.bytes().expect("body");
    let r = c.get(&url).header("accept-encoding", "gzip").send().expect("get");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz_tag = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(gunzip(&r.bytes().expect("body")), js.as_ref());
    let r =
        c.get(&url).header("accept-encoding", "gzip").header("if-none-match", &gz_tag).send().expect("get");
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().expect("etag"), gz_tag);
    // The plain tag does not stand for the gzipped bytes (a strong validator per form).
    let r = c.get(&url).header("accept-encoding", "gzip").header("if-none-match", &tag).send().expect("get");
    assert_eq!(r.status(), 200);
    // RFC 9110 §13.1.1: If-Match naming another version fails with 412.
    let r = c.get(&url).header("if-match", "\"other\"").send().expect("get");
    assert_eq!(r.status(), 412);
    assert_eq!(r.json::<serde_json::Value>().expect("json")["error"]["code"], "precondition_failed");
    assert_eq!(c.get(&url).header("if-match", &tag).send().expect("get").status(), 200);

    // Outside this build's folder (a page loaded before an update): the same
    // file, asked again each time.
    let r = c.get(server.url("/admin/assets/common.js")).send().expect("get");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.bytes().expect("body"), js);
    let r = c.get(server.url(&format!("/admin/assets/{folder}/no-such.js"))).send().expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().expect("json")["error"]["code"], "not_found");
}
