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

#[cfg(feature = "ui")]
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
    // If-Match and If-Unmodified-Since (RFC 9110 §13.1.1, §13.1.4): 412 when
    // the file is not the version named.
    let r = c.get(server.url("/")).header("if-match", "\"other\"").send().expect("get");
    assert_eq!(r.status(), 412);
    assert_security_headers(&r);
    assert_eq!(r.json::<serde_json::Value>().expect("json")["error"]["code"], "precondition_failed");
    assert_eq!(c.get(server.url("/")).header("if-match", &etag).send().expect("get").status(), 200);
    assert_eq!(c.get(server.url("/")).header("if-match", "*").send().expect("get").status(), 200);
    let long_ago = "Sun, 06 Nov 1994 08:49:37 GMT";
    assert_eq!(
        c.get(server.url("/")).header("if-unmodified-since", long_ago).send().expect("get").status(),
        412
    );
    assert_eq!(
        c.get(server.url("/")).header("if-unmodified-since", &last_modified).send().expect("get").status(),
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
    assert_eq!(r.json::<serde_json::Value>().expect("json")["error"]["code"], "range_not_satisfiable");
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

#[cfg(feature = "ui")]
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

/// A connection from `source` (a loopback address) to the server's first HTTP port.
#[cfg(all(feature = "ui", feature = "acme"))]
fn connect_from(source: &str, server: &TestServer) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], server.http_ports[0]));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("source")).expect("bind");
    let stream = runtime.block_on(socket.connect(target)).expect("connect").into_std().expect("std");
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    stream
}

/// One request on a keep-alive connection: the status line and the body.
#[cfg(all(feature = "ui", feature = "acme"))]
fn exchange(s: &mut std::net::TcpStream, path: &str) -> (String, Vec<u8>) {
    use std::io::Write;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let (head, body) = read_answer(s);
    (head.lines().next().unwrap_or("").to_string(), body)
}

#[cfg(all(feature = "ui", feature = "acme"))]
#[test]
fn the_public_webroot_is_behind_the_same_checks_and_shadows_no_route() {
    let (server, content) = with_webroot();
    let www = content.path().join("www");
    std::fs::write(www.join("healthz"), "a file").expect("write");
    std::fs::create_dir_all(www.join("admin")).expect("mkdir");
    std::fs::write(www.join("admin/login"), "a file").expect("write");
    std::fs::write(www.join("administrator.html"), "a file").expect("write");
    let c = server.client();
    // Routes outside the prefixes keep their paths; files of the same name do not shadow them.
    let r = c.get(server.url("/healthz")).send().expect("get");
    assert_eq!(r.json::<serde_json::Value>().expect("health json")["status"], "ok");
    let r = c.get(server.url("/.well-known/acme-challenge/unknown")).send().expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().expect("json")["error"]["message"], "no such challenge");
    let r = c.get(server.url("/admin/login")).send().expect("get");
    assert!(r.text().expect("page").contains("<html"), "the UI's login page, not the file");
    // A path that only looks like the UI's is the webroot's.
    assert_eq!(c.get(server.url("/administrator.html")).send().expect("get").text().expect("body"), "a file");

    // A keep-alive connection opened before its client is blocked gets
    // nothing more on it: every request is checked, not only the connection.
    let mut s = connect_from("127.0.0.2", &server);
    let (status, body) = exchange(&mut s, "/snap.jpg");
    assert_eq!((status.as_str(), body.len()), ("HTTP/1.1 200 OK", 1024));
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["intrusion_detection"]["notification_threshold"] = json!(5);
    ws["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    for _ in 0..6 {
        assert_eq!(curl_status("127.0.0.2", &server.url("/api/v1/webserver"), &["-u", "admin:wrong"]), 401);
    }
    let (status, body) = exchange(&mut s, "/snap.jpg");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert!(String::from_utf8_lossy(&body).contains("access_denied"));
    // Another client is still served.
    assert_eq!(c.get(server.url("/snap.jpg")).send().expect("get").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedders_routes_keep_their_paths_beside_the_webroot() {
    // Device routes may claim any path, so the webroot never answers before
    // the router when there are some.
    let dir = tempfile::tempdir().expect("tempdir");
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).expect("mkdir");
    std::fs::write(www.join("snapshot.jpg"), "the file").expect("write");
    std::fs::write(www.join("manual.txt"), "the manual").expect("write");
    let device = axum::Router::new().route("/snapshot.jpg", axum::routing::get(|| async { "the device" }));
    let port = portcullis_testkit::free_port();
    let server = portcullis::ServerBuilder::new(dir.path().join("data"))
        .port_overrides(portcullis::PortOverrides {
            http_ports: Some(vec![port]),
            https_port: Some(portcullis_testkit::free_port()),
        })
        .admin_password(Some(ADMIN_PASSWORD.into()))
        .bind_addresses(vec!["127.0.0.1".parse().expect("ip")])
        .webroot(Some(www))
        .routes(device)
        .start()
        .await
        .expect("start");
    let got = tokio::task::spawn_blocking(move || {
        let c = reqwest::blocking::Client::new();
        let get = |path: &str, login: bool| {
            let r = c.get(format!("http://127.0.0.1:{port}{path}"));
            let r = if login { r.basic_auth("admin", Some(ADMIN_PASSWORD)) } else { r };
            let r = r.send().expect("get");
            (r.status().as_u16(), r.text().expect("body"))
        };
        [get("/snapshot.jpg", false), get("/snapshot.jpg", true), get("/manual.txt", false)]
    })
    .await
    .expect("client");
    assert_eq!(got[0].0, 401, "device routes need a login");
    assert_eq!(got[1], (200, "the device".to_string()));
    assert_eq!(got[2], (200, "the manual".to_string()));
    server.shutdown().await;
}

/// A handler that panics ends its own HTTP/2 stream, not the connection
/// its stream shares with others (the connection's task polls them all).
#[cfg(feature = "http2")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_ends_its_http2_stream_not_the_connection() {
    async fn boom() -> &'static str {
        panic!("a device route's bug")
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let device = axum::Router::new()
        .route("/boom", axum::routing::get(boom))
        .route("/fine", axum::routing::get(|| async { "fine" }));
    let (port, tls_port) = (portcullis_testkit::free_port(), portcullis_testkit::free_port());
    let server = portcullis::ServerBuilder::new(dir.path().join("data"))
        .port_overrides(portcullis::PortOverrides {
            http_ports: Some(vec![port]),
            https_port: Some(tls_port),
        })
        .admin_password(Some(ADMIN_PASSWORD.into()))
        .bind_addresses(vec!["127.0.0.1".parse().expect("ip")])
        .routes(device)
        .start()
        .await
        .expect("start");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let (boom, fine) =
            (format!("https://127.0.0.1:{tls_port}/boom"), format!("https://127.0.0.1:{tls_port}/fine"));
        let login = format!("admin:{ADMIN_PASSWORD}");
        // HTTP/2 by ALPN; both URLs on one connection when it lives.
        run(
            "curl",
            &[
                "-sS",
                "--max-time",
                "30",
                "-k",
                "--http2",
                "-u",
                &login,
                "-w",
                "\n%{http_code} %{num_connects}\n",
                &boom,
                &fine,
            ],
        )
    })
    .await
    .expect("client");
    // /boom's stream is reset (curl's error 92, an HTTP/2 stream error);
    // the exit status is the last transfer's.
    assert!(err.contains("(92)"), "/boom's stream reset: {err}");
    assert_eq!(code, 0, "/fine answered: {err}");
    assert!(
        out.ends_with("fine\n200 0\n"),
        "/fine on the connection /boom used, none opened for it: {out} {err}"
    );
    server.shutdown().await;
}

/// A folder of the webroot replaced by a link to the data folder after a
/// first request (which filled every cache) serves nothing of the data
/// folder: neither the factory key nor the configuration, small or large.
#[test]
fn a_folder_swapped_for_a_link_to_the_data_folder_serves_nothing_of_it() {
    let (server, content) = with_webroot();
    let www = content.path().join("www");
    let data = server.data_dir();
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200, "config.json written");
    let secret_big: Vec<u8> = (0..300_000u32).map(|i| b'A' + (i % 7) as u8).collect();
    std::fs::write(data.join("big.bin"), &secret_big).expect("write");
    std::fs::create_dir_all(www.join("sub/certs")).expect("mkdir");
    let public_big = vec![b'p'; 300_000];
    std::fs::write(www.join("sub/certs/factory.pem"), "public pem").expect("write");
    std::fs::write(www.join("sub/config.json"), "{\"public\": true}").expect("write");
    std::fs::write(www.join("sub/big.bin"), &public_big).expect("write");
    let c = server.client();
    let get = |path: &str| {
        let r = c.get(server.url(path)).send().expect("get");
        (r.status().as_u16(), r.bytes().expect("body").to_vec())
    };
    assert_eq!(get("/sub/certs/factory.pem"), (200, b"public pem".to_vec()));
    assert_eq!(get("/sub/config.json"), (200, b"{\"public\": true}".to_vec()));
    assert_eq!(get("/sub/big.bin"), (200, public_big));
    std::fs::rename(www.join("sub"), content.path().join("old-sub")).expect("move aside");
    std::os::unix::fs::symlink(&data, www.join("sub")).expect("symlink");
    let key = std::fs::read_to_string(data.join("certs/factory.pem")).expect("factory.pem");
    assert!(key.contains("PRIVATE KEY"));
    for path in ["/sub/certs/factory.pem", "/sub/config.json", "/sub/big.bin"] {
        let (status, body) = get(path);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("\"version\"") && !text.contains("ABCDEFG"),
            "{path} served the data folder: {}",
            &text[..text.len().min(200)]
        );
        assert_eq!(status, 404, "{path}");
        // Over HTTPS, with a range, and again (nothing remembered leads there either).
        let r = c.get(server.https_url(path)).header("range", "bytes=0-99").send().expect("get");
        assert_eq!(r.status(), 404, "{path} over HTTPS");
    }
}

/// Reads one answer's head from `s`, byte by byte (nothing of what follows).
fn read_head(s: &mut impl std::io::Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("read"), 1, "connection closed in the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).to_string()
}

/// Reads one answer from `s`: its head and, by its Content-Length, its body.
fn read_answer(s: &mut impl std::io::Read) -> (String, Vec<u8>) {
    let head = read_head(s);
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0; len];
    s.read_exact(&mut body).expect("body");
    (head, body)
}

/// Large files (streamed in chunks, not held in memory) arrive byte for
/// byte: whole, in ranges across a chunk's edge, one after another on a
/// kept-alive connection and pipelined with a HEAD, over HTTP and HTTPS.
#[test]
fn large_files_arrive_byte_for_byte_whole_in_ranges_and_pipelined() {
    use std::io::Write as _;
    let (server, content) = with_webroot();
    // Many chunks (124 KiB), not a multiple of one.
    let big = pattern(3 * 1024 * 1024 + 12_345);
    std::fs::write(content.path().join("www/big.bin"), &big).expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let (one, two) = (out.path().join("one"), out.path().join("two"));
    // curl: two downloads on one kept-alive connection.
    let url = server.url("/big.bin");
    let (code, _, err) = run(
        "curl",
        &["-sS", "--fail", "-o", &one.display().to_string(), &url, "-o", &two.display().to_string(), &url],
    );
    assert_eq!(code, 0, "curl: {err}");
    assert!(std::fs::read(&one).expect("one") == big, "first download differs");
    assert!(std::fs::read(&two).expect("two") == big, "second download differs");

    // A range across a placeholder's edge.
    let c = server.client();
    let r = c.get(server.url("/big.bin")).header("range", "bytes=1000000-2100000").send().expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-length"], "1100001");
    assert!(r.bytes().expect("body")[..] == big[1_000_000..=2_100_000], "the range differs");

    // Pipelined: a large file, a small one, a HEAD and the large one again,
    // sent at once; the answers come in order, each whole.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let req = |m: &str, p: &str| format!("{m} {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let all =
        [req("GET", "/big.bin"), req("GET", "/index.html"), req("HEAD", "/big.bin"), req("GET", "/big.bin")];
    s.write_all(all.concat().as_bytes()).expect("write");
    let (head, body) = read_answer(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body == big, "the pipelined large file differs");
    let (_, body) = read_answer(&mut s);
    assert_eq!(body, b"<h1>camera</h1>");
    // A HEAD answer has a Content-Length but no body.
    assert!(read_head(&mut s).contains(&format!("content-length: {}", big.len())));
    let (_, body) = read_answer(&mut s);
    assert!(body == big, "the large file after a HEAD differs");

    // HTTPS: the same bytes.
    let r = c.get(server.https_url("/big.bin")).send().expect("https");
    assert!(r.bytes().expect("body")[..] == big[..], "the HTTPS download differs");
}

/// Many files of mixed sizes asked for at once on one HTTP/2 connection
/// arrive whole (the connection's streams are polled by its own task, and
/// their small writes are gathered until it flushes: a write left
/// gathered would hang a transfer here, a mixed-up one would differ).
#[cfg(feature = "http2")]
#[test]
fn files_multiplexed_on_one_http2_connection_arrive_whole() {
    let (server, content) = with_webroot();
    let www = content.path().join("www");
    let out = tempfile::tempdir().expect("tempdir");
    // 1 KiB files each with its own bytes, a few of 100 KiB and two large
    // ones (streamed in chunks, many DATA frames).
    let mut files = Vec::new();
    for i in 0..40 {
        let bytes: Vec<u8> = pattern(1024 + i).into_iter().map(|b| b.wrapping_add(i as u8)).collect();
        files.push((format!("s{i}.bin"), bytes));
    }
    for i in 0..4 {
        files.push((format!("m{i}.bin"), pattern(100 * 1024 + i * 17)));
    }
    for i in 0..2 {
        files.push((format!("b{i}.bin"), pattern(2 * 1024 * 1024 + 7 + i)));
    }
    let mut args: Vec<String> = [
        "-sS",
        "-k",
        "--http2",
        "--parallel",
        "--parallel-max",
        "64",
        "-w",
        "%{http_code} %{http_version} %{num_connects}\\n",
    ]
    .map(String::from)
    .to_vec();
    for (name, bytes) in &files {
        std::fs::write(www.join(name), bytes).expect("write");
        args.extend([
            "-o".into(),
            out.path().join(name).display().to_string(),
            server.https_url(&format!("/{name}")),
        ]);
    }
    // One small answer alone: nothing else would push its bytes out.
    let url = server.https_url("/s3.bin");
    let alone = out.path().join("alone");
    let (code, _, err) =
        run("curl", &["-sS", "-k", "--max-time", "30", "--http2", "-o", &alone.display().to_string(), &url]);
    assert_eq!(code, 0, "curl: {err}");
    assert!(std::fs::read(&alone).expect("downloaded") == files[3].1, "s3.bin alone differs");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, err) = run("curl", &args);
    assert_eq!(code, 0, "curl: {err}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "{stdout}");
    assert!(lines.iter().all(|l| l.starts_with("200 2 ")), "each over HTTP/2 with 200: {stdout}");
    let connections: u32 =
        lines.iter().map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u32>().ok()).expect("count")).sum();
    assert_eq!(connections, 1, "all on one connection: {stdout}");
    for (name, bytes) in &files {
        assert!(std::fs::read(out.path().join(name)).expect("downloaded") == *bytes, "{name} differs");
    }
}
