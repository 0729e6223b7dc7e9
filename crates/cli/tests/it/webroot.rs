//! Static content from `serve --webroot DIR`.

use portcullis_testkit::{ADMIN_PASSWORD, Options, TestServer, curl_status, run};
use serde_json::json;

use crate::bin;

fn with_webroot() -> (TestServer, tempfile::TempDir) {
    let content = tempfile::tempdir().expect("tempdir");
    let www = content.path().join("www");
    std::fs::create_dir_all(www.join("docs")).expect("mkdir");
    std::fs::write(www.join("index.html"), "<h1>camera</h1>").expect("write");
    std::fs::write(www.join("docs/manual.pdf"), pattern(300_000)).expect("write");
    std::fs::write(www.join("snap.jpg"), vec![0xFF; 1024]).expect("write");
    std::fs::write(www.join(".htpasswd"), "secret").expect("write");
    std::fs::write(content.path().join("outside.txt"), "outside").expect("write");
    std::os::unix::fs::symlink(content.path().join("outside.txt"), www.join("escape.txt")).expect("symlink");
    let options =
        Options { extra_args: vec!["--webroot".into(), www.display().to_string()], ..Default::default() };
    (TestServer::start_with(&bin(), options).expect("start"), content)
}

/// The headers every answer carries, whatever produced it.
#[track_caller]
fn assert_security_headers(r: &reqwest::blocking::Response) {
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{}", r.url());
    assert_eq!(h["x-frame-options"], "DENY", "{}", r.url());
    assert_eq!(h["referrer-policy"], "same-origin", "{}", r.url());
    for name in ["x-content-type-options", "x-frame-options", "referrer-policy", "content-type", "etag"] {
        assert!(h.get_all(name).iter().count() <= 1, "{name} sent twice to {}", r.url());
    }
}

/// Bytes that differ from their neighbours, so a chunk out of place shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn files_with_types_validators_and_ranges() {
    let (server, _content) = with_webroot();
    let c = server.client();
    let r = c.get(server.url("/")).send().expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html");
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    let last_modified = r.headers()["last-modified"].to_str().expect("lm").to_string();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_security_headers(&r);
    assert_eq!(r.text().expect("body"), "<h1>camera</h1>");
    let r = c.get(server.url("/snap.jpg")).send().expect("get");
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(r.headers()["content-length"], "1024");
    // The same file by another path: the same answer.
    let r = c.get(server.url("/index.html")).send().expect("get");
    assert_eq!(r.headers()["etag"].to_str().expect("etag"), etag);
    assert_security_headers(&r);
    // Conditional requests.
    let r = c.get(server.url("/")).header("if-none-match", &etag).send().expect("get");
    assert_eq!(r.status(), 304);
    assert_security_headers(&r);
    assert_eq!(
        c.get(server.url("/")).header("if-modified-since", &last_modified).send().expect("get").status(),
        304
    );
    assert_eq!(
        c.get(server.url("/")).header("if-none-match", "\"other\"").send().expect("get").status(),
        200
    );
    // Ranges, over HTTPS too, for a file larger than the in-memory cache limit.
    let r = c.get(server.https_url("/docs/manual.pdf")).header("range", "bytes=100-199").send().expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/300000");
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_security_headers(&r);
    assert_eq!(r.bytes().expect("body").len(), 100);
    let r = c.get(server.url("/docs/manual.pdf")).send().expect("get");
    assert_eq!(r.bytes().expect("body").as_ref(), pattern(300_000).as_slice());
    // A range across the streaming chunks (124 KiB each).
    let r = c.get(server.url("/docs/manual.pdf")).header("range", "bytes=120000-260000").send().expect("get");
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().expect("body").as_ref(), &pattern(300_000)[120_000..=260_000]);
    let r = c.get(server.url("/snap.jpg")).header("range", "bytes=5000-").send().expect("get");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */1024");
    assert_security_headers(&r);
    let r = c.get(server.url("/no-such-file.txt")).send().expect("get");
    assert_eq!(r.status(), 404);
    assert_security_headers(&r);
    assert_eq!(r.json::<serde_json::Value>().expect("json")["error"]["code"], "not_found");
    let r = c
        .get(server.url("/snap.jpg"))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .expect("get");
    assert_eq!(r.status(), 200, "If-Range with another ETag gets the whole file");
    let r = c.head(server.url("/snap.jpg")).send().expect("head");
    assert_eq!(r.headers()["content-length"], "1024");
    // The API and the UI keep their prefixes.
    assert_eq!(c.get(server.url("/admin/login")).send().expect("get").status(), 200);
    assert_eq!(c.get(server.url("/healthz")).send().expect("get").status(), 200);
    assert_eq!(c.post(server.url("/snap.jpg")).send().expect("post").status(), 405);
}

#[test]
fn a_changed_file_is_served_as_it_is_now() {
    let (server, content) = with_webroot();
    let c = server.client();
    let www = content.path().join("www");
    let first = c.get(server.url("/snap.jpg")).send().expect("get");
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(first.bytes().expect("body").len(), 1024, "now in the memory cache");
    // Another length, and then the same length with another modification time:
    // both must be seen at once (the cache is checked against the file every request).
    std::fs::write(www.join("snap.jpg"), b"new picture").expect("write");
    let r = c.get(server.url("/snap.jpg")).send().expect("get");
    let etag2 = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_ne!(etag2, etag);
    assert_eq!(r.text().expect("body"), "new picture");
    let f = std::fs::File::options().write(true).open(www.join("snap.jpg")).expect("open");
    std::io::Write::write_all(&mut &f, b"NEW").expect("write");
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).expect("mtime");
    drop(f);
    let r = c.get(server.url("/snap.jpg")).header("if-none-match", &etag2).send().expect("get");
    assert_eq!(r.status(), 200, "the old ETag no longer matches");
    assert_eq!(r.text().expect("body"), "NEW picture");
    // A large file replaced by another one.
    std::fs::write(www.join("docs/manual.pdf"), vec![7u8; 400_000]).expect("write");
    let r = c.get(server.url("/docs/manual.pdf")).send().expect("get");
    assert_eq!(r.bytes().expect("body").as_ref(), vec![7u8; 400_000].as_slice());
    std::fs::remove_file(www.join("snap.jpg")).expect("rm");
    assert_eq!(c.get(server.url("/snap.jpg")).send().expect("get").status(), 404);
}

#[test]
fn nothing_outside_the_folder_is_served() {
    let (server, _content) = with_webroot();
    let port = server.http_ports[0].to_string();
    for path in [
        "/../outside.txt",
        "/docs/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/docs/%2e%2e/%2e%2e/outside.txt",
        "/.htpasswd",
        "/escape.txt",
        "/..%2foutside.txt",
        "/%2e%2e%2foutside.txt",
        "/docs/..%5c..%5coutside.txt",
    ] {
        // curl --path-as-is sends the path exactly as written, without normalising "..".
        let url = format!("http://127.0.0.1:{port}{path}");
        let (_, out, _) = run("curl", &["-s", "--path-as-is", "-w", "\n%{http_code}", &url]);
        assert!(!out.contains("outside") && !out.contains("secret"), "{path}: {out}");
        assert!(out.ends_with("404") || out.ends_with("400"), "{path}: {out}");
    }
}

#[test]
fn login_can_be_required_and_blocked_clients_get_nothing() {
    let (server, _content) = with_webroot();
    let (status, _) = server.admin("PUT", "/api/v1/webroot", Some(json!({"login_required": true})));
    assert_eq!(status, 200);
    let c = server.client();
    assert_eq!(c.get(server.url("/snap.jpg")).send().expect("get").status(), 401);
    let r = c.get(server.url("/snap.jpg")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().expect("get");
    assert_eq!(r.status(), 200);
    // Protected by the same intrusion detection and access control.
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    server.admin("PUT", "/api/v1/webserver", Some(s));
    server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true})));
    let url = server.url("/snap.jpg");
    for _ in 0..6 {
        assert_eq!(curl_status("127.0.0.2", &url, &["-u", "admin:wrong"]), 401);
    }
    let (_, out, _) =
        run("curl", &["-s", "--interface", "127.0.0.2", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(out, "000", "blocked at the connection");
}

#[test]
fn without_a_webroot_the_root_leads_to_the_ui() {
    let server = TestServer::start(&bin()).expect("start");
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(server.url("/"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/");
    assert_eq!(server.client().get(server.url("/snap.jpg")).send().expect("get").status(), 404);
}
