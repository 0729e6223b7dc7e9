//! After start, the server gives the code that ran only at start-up back to
//! the kernel, and goes on answering.

use std::time::Duration;

use portcullis_testkit::{Options, TestServer, wait_until};

use crate::bin;

/// Resident KiB of the mappings of process `pid`'s executable file.
fn exe_resident_kib(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    let exe = exe.to_str().expect("utf8 path");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut in_exe = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_exe = line.ends_with(exe);
        } else if in_exe && first == "Rss:" {
            kib += fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    kib
}

#[test]
fn startup_code_goes_back_to_the_kernel_and_the_server_still_answers() {
    // A copy of the binary that no other server of the suite maps: pages
    // another process maps stay resident in every process.
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("portcullis");
    std::fs::copy(bin(), &copy).expect("copy the binary");
    let server = TestServer::start_with(&copy, Options { keep_code_pages: false, ..Default::default() })
        .expect("start");
    let line = "start-up code given back to the kernel";
    assert!(wait_until(Duration::from_secs(20), || server.log().contains(line)), "log:\n{}", server.log());
    let log = server.log();
    let given: u64 = log
        .lines()
        .find(|l| l.contains(line))
        .and_then(|l| l.split("kib=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the line says how much");
    assert!(given > 1024, "only {given} KiB given back:\n{log}");
    // Before any further request: what is mapped now came back since.
    let resident = exe_resident_kib(server.pid().expect("pid"));
    assert!(
        resident < given / 2,
        "the executable still has {resident} KiB resident of {given} KiB given back"
    );

    // Still answers, over HTTP and HTTPS, the API included.
    let client = server.client();
    for url in [server.url("/healthz"), server.https_url("/healthz")] {
        let health = client.get(&url).send().expect("request");
        assert_eq!(health.status(), 200, "{url}");
    }
    let (status, body) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(status, 200, "{body}");
}

/// Reads one HTTP/1.1 answer from `conn` (head and a Content-Length body); its status.
fn read_answer(conn: &mut std::net::TcpStream) -> u16 {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).expect("read");
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("body");
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

const RELEASED: &str = "idle: HTTP state and buffers released";
const AGAIN: &str = "idle connection in use again";

fn tracing_server() -> TestServer {
    let options = Options {
        env: vec![("PORTCULLIS_LOG".into(), "info,portcullis::listen=trace".into())],
        ..Default::default()
    };
    TestServer::start_with(&bin(), options).expect("start")
}

#[test]
fn an_idle_keep_alive_connection_gives_back_its_state_and_serves_its_next_request() {
    use std::io::Write;
    let server = tracing_server();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let local = conn.local_addr().expect("addr").to_string();
    let get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    conn.write_all(get).expect("write");
    assert_eq!(read_answer(&mut conn), 200);
    let released = |s: &TestServer| s.log().lines().any(|l| l.contains(RELEASED) && l.contains(&local));
    assert!(wait_until(Duration::from_secs(10), || released(&server)), "never released:\n{}", server.log());
    // The same connection, its HTTP state made anew for the next request.
    conn.write_all(get).expect("write");
    assert_eq!(read_answer(&mut conn), 200);
    assert!(server.log().lines().any(|l| l.contains(AGAIN) && l.contains(&local)), "{}", server.log());
    conn.write_all(get).expect("write");
    assert_eq!(read_answer(&mut conn), 200);
}

#[test]
fn a_pipelined_request_begun_before_the_idle_release_is_answered_whole() {
    use std::io::Write;
    let server = tracing_server();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    // One request and the first half of the next, in one write.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/v1/webser").expect("write");
    assert_eq!(read_answer(&mut conn), 200);
    // Idle past the release time with half a request read: its bytes must
    // survive the HTTP state being made anew.
    let local = conn.local_addr().expect("addr").to_string();
    assert!(
        wait_until(Duration::from_secs(10), || server
            .log()
            .lines()
            .any(|l| l.contains("HTTP state released, a request begun")
                && l.contains(&local)
                && l.contains("kept=18"))),
        "{}",
        server.log()
    );
    conn.write_all(b"ver HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    assert_eq!(read_answer(&mut conn), 401, "the completed request is the API's, asking for credentials");
}

#[test]
fn an_idle_https_connection_serves_its_next_request_after_the_release() {
    let server = tracing_server();
    // HTTP/1.1 by ALPN: an HTTP/2 connection keeps its state (see README).
    let client = reqwest::blocking::Client::builder()
        .http1_only()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    assert_eq!(client.get(server.https_url("/healthz")).send().expect("first").status(), 200);
    assert!(
        wait_until(Duration::from_secs(10), || server.log().contains(RELEASED)),
        "never released:\n{}",
        server.log()
    );
    // reqwest reuses its pooled TLS connection: the server's side was idle, released.
    assert_eq!(client.get(server.https_url("/healthz")).send().expect("second").status(), 200);
    assert!(server.log().contains(AGAIN), "{}", server.log());
}
