//! Reliability and security against the real binary: crash safety under
//! SIGKILL, slow and greedy clients, a TLS scan, API fuzzing and the login
//! form under a password-guessing attack.
//!
//! These tests are `#[ignore]`d in a plain `cargo test`: they run one after
//! another from `scripts/security` — short (`--ci`, from `scripts/test`) or
//! long (`PORTCULLIS_SECURITY_LONG=1`) — so that their timing is not disturbed
//! by the rest of the suite. Figures are printed and written under
//! `artifacts/security/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_testkit::{ADMIN_PASSWORD, TestCa, TestServer, curl_status, openssl, run, wait_until};
use rand::RngExt;
use serde_json::{Value, json};

use crate::bin;

/// Whether the long versions run (`scripts/security` without `--ci`).
fn long() -> bool {
    std::env::var_os("PORTCULLIS_SECURITY_LONG").is_some()
}

/// Where figures and reports go: `artifacts/security/` at the repository root.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../artifacts/security");
    std::fs::create_dir_all(&dir).expect("artifacts folder");
    dir
}

/// Prints a figure and appends it to `artifacts/security/figures.txt`.
fn figure(text: &str) {
    eprintln!("FIGURE {text}");
    if let Ok(mut f) =
        std::fs::OpenOptions::new().create(true).append(true).open(artifacts().join("figures.txt"))
    {
        let _ = writeln!(f, "{text}");
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

// ---------------------------------------------------------------- crash safety

/// The running settings with one number encoded in three intrusion fields,
/// so a stored file that mixed two Sets would be caught. (Ports stay as they
/// are: a Set that moved listeners would wait for confirmation.)
fn numbered_settings(running: &Value, id: u32) -> Value {
    let mut s = running.clone();
    s["intrusion_detection"]["notification_threshold"] = json!(5 + id);
    s["intrusion_detection"]["timeout_minutes"] = json!(1 + id % 10_000);
    s["intrusion_detection"]["deadtime_minutes"] = json!(id % 10_000);
    s
}

/// The number a stored configuration carries, if it is one of ours.
fn settings_number(config: &Value) -> Option<u32> {
    let id = &config["webserver"]["intrusion_detection"];
    let n = u32::try_from(id["notification_threshold"].as_u64()?.checked_sub(5)?).ok()?;
    (id["timeout_minutes"].as_u64()? == u64::from(1 + n % 10_000)
        && id["deadtime_minutes"].as_u64()? == u64::from(n % 10_000))
    .then_some(n)
}

/// The public key of a PEM certificate, CSR or private key, as openssl prints it.
fn public_key(kind: &str, pem: &str, dir: &Path) -> String {
    let file = dir.join(format!("{kind}.pem"));
    std::fs::write(&file, pem).expect("write pem");
    let path = file.to_str().expect("utf8");
    let args: Vec<&str> = match kind {
        "cert" => vec!["x509", "-noout", "-pubkey", "-in", path],
        "csr" => vec!["req", "-noout", "-pubkey", "-in", path],
        _ => vec!["pkey", "-pubout", "-in", path],
    };
    openssl(&args).unwrap_or_else(|e| panic!("{kind} in the store does not parse: {e}"))
}

fn sha256_fingerprint(cert_pem: &str, dir: &Path) -> String {
    let file = dir.join("fp.pem");
    std::fs::write(&file, cert_pem).expect("write pem");
    let out = openssl(&["x509", "-noout", "-fingerprint", "-sha256", "-in", file.to_str().expect("utf8")])
        .expect("fingerprint");
    out.trim().split_once('=').expect("=").1.to_ascii_uppercase()
}

/// Checks the data folder after a kill: the configuration is one that was
/// stored (never torn, never two Sets mixed) and the certificate store is
/// whole (each certificate matches its key). Returns the stored config
/// number and the fingerprint of the individual certificate, if any.
fn check_store(data: &Path, sent: &[u32], scratch: &Path) -> (Option<u32>, Option<String>) {
    let text = std::fs::read_to_string(data.join("config.json")).expect("config.json exists");
    let parsed = portcullis_core::config::Config::parse(&text)
        .unwrap_or_else(|e| panic!("config.json is torn or invalid: {e:?}\n{text}"));
    assert!(parsed.unknown_keys.is_empty(), "{:?}", parsed.unknown_keys);
    let value: Value = serde_json::from_str(&text).expect("json");
    let number = settings_number(&value);
    match number {
        Some(n) => assert!(sent.contains(&n), "config.json holds settings {n} that were never sent"),
        None => assert_eq!(
            value["webserver"]["intrusion_detection"]["notification_threshold"], 10,
            "config.json is neither the first stored file nor one of the Sets: {text}"
        ),
    }
    if data.join("config.json.bak").exists() {
        let bak = std::fs::read_to_string(data.join("config.json.bak")).expect("read backup");
        portcullis_core::config::Config::parse(&bak).expect("the backup parses");
    }
    let current = data.join("certs/current.json");
    let mut fingerprint = None;
    if current.exists() {
        let text = std::fs::read_to_string(&current).expect("read current.json");
        let state: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("certs/current.json is torn: {e}\n{text}"));
        if let Some(pair) = state.get("individual").filter(|p| !p.is_null()) {
            let chain = pair["chain_pem"].as_str().expect("chain_pem");
            let key = pair["key_pem"].as_str().expect("key_pem");
            assert_eq!(
                public_key("cert", chain, scratch),
                public_key("key", key, scratch),
                "the stored certificate does not match its key"
            );
            fingerprint = Some(sha256_fingerprint(chain, scratch));
        }
        if let Some(req) = state.get("request").filter(|p| !p.is_null()) {
            let csr = req["csr_pem"].as_str().expect("csr_pem");
            let key = req["key_pem"].as_str().expect("key_pem");
            assert_eq!(
                public_key("csr", csr, scratch),
                public_key("key", key, scratch),
                "the pending request does not match its key"
            );
        }
    }
    (number, fingerprint)
}

/// One operation of the soak, repeated by a worker until the server dies.
#[derive(Clone, Copy, Debug)]
enum Operation {
    SetAndStore,
    Upload,
    Generate,
}

#[test]
#[ignore = "run by scripts/security"]
fn crash_safety_sigkill_during_store_upload_and_generate() {
    let kills: usize = std::env::var("PORTCULLIS_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long() { 60 } else { 6 });
    let mut server = TestServer::start(&bin()).expect("start");
    let scratch = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&scratch.path().join("ca")).expect("ca");
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
        .map(|i| {
            let (chain, key) = ca
                .issue("localhost", &format!("soak{i}"), &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
                .expect("issue");
            (std::fs::read(chain).expect("chain"), std::fs::read(key).expect("key"))
        })
        .collect();
    let pairs = Arc::new(pairs);
    // A first Store, so that config.json exists from here on.
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    let mut sent: Vec<u32> = Vec::new();
    let mut rng = rand::rng();
    let mut hits = [0usize; 3];
    let started = Instant::now();
    for kill in 0..kills {
        let op = [Operation::SetAndStore, Operation::Upload, Operation::Generate][kill % 3];
        let base = server.url("");
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let first_id = u32::try_from(kill * 1000).expect("small");
        let (status, running) = server.admin("GET", "/api/v1/webserver", None);
        assert_eq!(status, 200, "{running}");
        let worker = {
            let (done, stop, pairs) = (done.clone(), stop.clone(), pairs.clone());
            std::thread::spawn(move || {
                let c = client();
                let mut ids = Vec::new();
                let mut k = 0u32;
                while !stop.load(Ordering::Relaxed) && k < 999 {
                    let result = match op {
                        Operation::SetAndStore => {
                            let id = first_id + k;
                            ids.push(id);
                            c.put(format!("{base}/api/v1/webserver"))
                                .basic_auth("admin", Some(ADMIN_PASSWORD))
                                .json(&numbered_settings(&running, id))
                                .send()
                                .and_then(|_| {
                                    c.post(format!("{base}/api/v1/config/store"))
                                        .basic_auth("admin", Some(ADMIN_PASSWORD))
                                        .send()
                                })
                        }
                        Operation::Upload => {
                            let (chain, key) = &pairs[k as usize % pairs.len()];
                            let form = reqwest::blocking::multipart::Form::new()
                                .part("certificate", reqwest::blocking::multipart::Part::bytes(chain.clone()))
                                .part("private_key", reqwest::blocking::multipart::Part::bytes(key.clone()));
                            c.post(format!("{base}/api/v1/certificate/upload"))
                                .basic_auth("admin", Some(ADMIN_PASSWORD))
                                .multipart(form)
                                .send()
                        }
                        Operation::Generate => c
                            .post(format!("{base}/api/v1/certificate/generate"))
                            .basic_auth("admin", Some(ADMIN_PASSWORD))
                            .json(&json!({
                                "common_name": "localhost",
                                "key_type": if k.is_multiple_of(2) { "ecdsa-p256" } else { "rsa2048" },
                            }))
                            .send(),
                    };
                    match result {
                        Ok(r) if r.status().is_success() => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("{op:?} answered {}: {}", r.status(), r.text().unwrap_or_default()),
                        Err(_) => break, // the server was killed
                    }
                    k += 1;
                }
                ids
            })
        };
        // Kill at a random moment once the worker is under way: operations
        // are in flight back to back, so the kill lands inside one most times.
        assert!(
            wait_until(Duration::from_secs(20), || done.load(Ordering::Relaxed) >= 1),
            "{op:?} never succeeded"
        );
        let delay = match op {
            Operation::Generate => rng.random_range(0..800),
            _ => rng.random_range(0..150),
        };
        std::thread::sleep(Duration::from_millis(delay));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        sent.extend(worker.join().expect("worker"));
        hits[kill % 3] += 1;
        let (number, fingerprint) = check_store(&server.data_dir(), &sent, scratch.path());
        server.restart().unwrap_or_else(|e| panic!("the server does not start after kill {kill}: {e}"));
        let (status, cs) = server.admin("GET", "/api/v1/config/status", None);
        assert_eq!(status, 200);
        assert_eq!(cs["load"]["source"], "stored", "after kill {kill}: {cs}");
        let (_, running) = server.admin("GET", "/api/v1/webserver", None);
        assert_eq!(settings_number(&json!({"webserver": running})), number, "running = stored after start");
        let (_, view) = server.admin("GET", "/api/v1/certificate", None);
        if let Some(fp) = fingerprint {
            assert_eq!(view["source"], "individual");
            assert_eq!(
                view["certificate"]["fingerprint_sha256"].as_str().map(str::to_ascii_uppercase),
                Some(fp)
            );
        }
    }
    figure(&format!(
        "crash-safety: {kills} SIGKILLs survived (set+store {}, upload {}, generate {}) in {:.0} s; \
         every time config.json and certs/current.json were whole and the server started",
        hits[0],
        hits[1],
        hits[2],
        started.elapsed().as_secs_f64()
    ));
}

// ------------------------------------------------------- slow and greedy clients

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Raises this process's open-file limit (inherited by servers started
/// after it) so that thousands of client sockets fit.
fn raise_nofile(want: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if soft < want {
        let pid = std::process::id().to_string();
        let (code, _, err) = run("prlimit", &["--pid", &pid, &format!("--nofile={want}:{want}")]);
        assert_eq!(code, 0, "cannot raise the open-file limit to {want}: {err}");
    }
}

/// A normal client: a fresh connection and `GET /healthz` every 50 ms,
/// timing each answer, until stopped.
struct NormalClient {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Option<Duration>>>,
}

impl NormalClient {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = portcullis_testkit::raw_get(port, "/healthz")
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"));
                out.push(ok.then(|| t.elapsed()));
                std::thread::sleep(Duration::from_millis(50));
            }
            out
        });
        Self { stop, handle }
    }

    /// Stops and returns (requests, failures, median, max) of the answers.
    fn finish(self) -> (usize, usize, Duration, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().expect("normal client");
        let mut ok: Vec<Duration> = samples.iter().flatten().copied().collect();
        ok.sort();
        let failures = samples.len() - ok.len();
        let median = ok.get(ok.len() / 2).copied().unwrap_or_default();
        let max = ok.last().copied().unwrap_or_default();
        (samples.len(), failures, median, max)
    }
}

fn connect(port: u16) -> TcpStream {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s
}

/// Reads what the server answers on `s` within `limit`: the text, and
/// whether the server closed the connection (end of stream or reset).
fn answer_within(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn assert_served(name: &str, normal: NormalClient, pid: u32, rss_before: u64, latency_limit: Duration) {
    let (requests, failures, median, max) = normal.finish();
    let rss = rss_kib(pid);
    figure(&format!(
        "slow-clients/{name}: normal client {requests} requests, {failures} failed, median {:.1} ms, max {:.1} ms; \
         server RSS {} MiB -> {} MiB",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        rss_before / 1024,
        rss / 1024
    ));
    assert!(requests >= 1, "{name}: the normal client ran {requests} requests");
    assert_eq!(failures, 0, "{name}: the normal client was refused {failures} times");
    assert!(max < latency_limit, "{name}: the normal client waited {max:?}");
    assert!(rss < rss_before + 200 * 1024, "{name}: server memory grew from {rss_before} KiB to {rss} KiB");
}

#[test]
#[ignore = "run by scripts/security"]
fn slowloris_is_cut_off_at_the_header_timeout_while_a_normal_client_is_served() {
    let server = TestServer::start(&bin()).expect("start");
    let pid = server.pid().expect("pid");
    let port = server.http_ports[0];
    let rss_before = rss_kib(pid);
    let normal = NormalClient::start(port);
    let count = if long() { 500 } else { 100 };
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = (0..count)
        .map(|_| {
            let mut s = connect(port);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").expect("write");
            s
        })
        .collect();
    // Dribble one header byte per connection every 500 ms until the server
    // cuts them off (header timeout: 10 s) or 20 s pass.
    let mut cut = vec![None; count];
    while started.elapsed() < Duration::from_secs(20) && cut.iter().any(Option::is_none) {
        for (i, s) in conns.iter_mut().enumerate() {
            if cut[i].is_none() && s.write_all(b"X").is_err() {
                cut[i] = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        for (i, s) in conns.iter_mut().enumerate() {
            if cut[i].is_none() {
                s.set_nonblocking(true).expect("nonblocking");
                let mut b = [0u8; 512];
                if s.read(&mut b).is_ok() {
                    cut[i] = Some(started.elapsed());
                }
                let _ = s.set_nonblocking(false);
            }
        }
    }
    let cut_times: Vec<Duration> = cut.iter().flatten().copied().collect();
    assert_eq!(cut_times.len(), count, "every slowloris connection is cut off within 20 s");
    let first = cut_times.iter().min().copied().unwrap_or_default();
    let last = cut_times.iter().max().copied().unwrap_or_default();
    figure(&format!(
        "slow-clients/slowloris: {count} connections dribbling headers, all cut off after {:.1}-{:.1} s",
        first.as_secs_f64(),
        last.as_secs_f64()
    ));
    assert!(first >= Duration::from_secs(9), "cut off before the header timeout: {first:?}");
    assert_served("slowloris", normal, pid, rss_before, Duration::from_secs(2));
}

#[test]
#[ignore = "run by scripts/security"]
fn slow_bodies_and_idle_connections_beyond_the_limit_leave_a_normal_client_served() {
    raise_nofile(8192);
    let server = TestServer::start(&bin()).expect("start");
    let pid = server.pid().expect("pid");
    let port = server.http_ports[0];
    let rss_before = rss_kib(pid);
    let normal = NormalClient::start(port);
    // Slow bodies: a login whose body comes one byte every 200 ms.
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(port);
            s.write_all(
                b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
            )
            .expect("write");
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect();
    // When each slow body was cut off: answered 408 (the body-read timeout,
    // 20 s), or closed; a client that goes on sending after the server
    // stopped reading gets a reset, which may discard the 408 before it is read.
    let mut cut_off: Vec<Option<Duration>> = vec![None; slow.len()];
    let mut dribble = |slow: &mut Vec<TcpStream>| {
        for (i, s) in slow.iter_mut().enumerate() {
            if cut_off[i].is_some() {
                continue;
            }
            let wrote = s.write_all(b" ");
            let mut b = [0u8; 64];
            let closed = match s.read(&mut b) {
                Ok(0) => true,
                Ok(n) => {
                    assert!(
                        b.starts_with(b"HTTP/1.1 408"),
                        "slow body answered: {}",
                        String::from_utf8_lossy(&b[..n])
                    );
                    true
                }
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if closed || wrote.is_err() {
                cut_off[i] = Some(opened.elapsed());
            }
        }
    };
    // 2000 idle connections: more than the server's 1024. The slow bodies
    // keep dribbling meanwhile, so they are never the idlest.
    let idle_count = 2000;
    let mut idle: Vec<TcpStream> = Vec::with_capacity(idle_count);
    for i in 0..idle_count {
        if i % 100 == 0 {
            dribble(&mut slow);
        }
        match TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(5)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("idle connection {i} refused: {e}"),
        }
    }
    // Long enough for the body timeout in the long version.
    let hold = if long() { Duration::from_secs(30) } else { Duration::from_secs(5) };
    let t = Instant::now();
    while t.elapsed() < hold {
        dribble(&mut slow);
        std::thread::sleep(Duration::from_millis(200));
    }
    // The server kept at most its limit: the rest were closed (idlest first).
    let mut closed = 0;
    for s in idle.iter_mut() {
        s.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    let answered: Vec<Duration> = cut_off.iter().flatten().copied().collect();
    let open_slow = slow.len() - answered.len();
    let (first, last) = (answered.iter().min().copied(), answered.iter().max().copied());
    figure(&format!(
        "slow-clients/idle: {idle_count} idle connections + 50 slow bodies held {} s: {closed} idle closed by the server \
         (limit 1024, idlest first); {}/50 slow bodies cut off (408 and closed: body timeout 20 s), between {} and {} \
         after their header; {open_slow} still open",
        hold.as_secs(),
        answered.len(),
        first.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        last.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
    ));
    assert!(
        closed + answered.len() >= idle_count + 50 - 1024,
        "the server holds at most 1024 connections: only {closed} idle closed"
    );
    if long() {
        assert_eq!(
            answered.len(),
            50,
            "every slow body is cut off by the 20 s body timeout within the 30 s hold"
        );
        assert!(
            first.is_some_and(|d| d >= portcullis::http::BODY_READ_TIMEOUT),
            "not cut off before 20 s: {first:?}"
        );
    }
    assert_served("idle+slow-body", normal, pid, rss_before, Duration::from_secs(2));
}

/// The `Authorization` value reqwest sends for Basic credentials.
fn basic_header(user: &str, password: &str) -> String {
    let request = reqwest::blocking::Client::new()
        .get("http://127.0.0.1/")
        .basic_auth(user, Some(password))
        .build()
        .expect("request");
    request.headers()["authorization"].to_str().expect("ascii").to_string()
}

#[test]
#[ignore = "run by scripts/security"]
fn oversized_headers_bodies_and_pipelined_garbage_are_refused_and_closed() {
    let server = TestServer::start(&bin()).expect("start");
    let pid = server.pid().expect("pid");
    let port = server.http_ports[0];
    let rss_before = rss_kib(pid);
    let normal = NormalClient::start(port);
    let rounds = if long() { 200 } else { 20 };
    let mut tally = [0usize; 3];
    for _ in 0..rounds {
        // Header block over 16 KiB: 431, then the connection ends.
        let mut s = connect(port);
        let big = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(32 * 1024));
        let _ = s.write_all(big.as_bytes());
        let (answer, closed) = answer_within(&mut s, Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 431"), "oversized header: {answer:?}");
        assert!(closed, "the connection ends after 431");
        tally[0] += 1;
        // JSON body over 1 MiB, authenticated: 413 without reading it all.
        let mut s = connect(port);
        let auth = basic_header("admin", ADMIN_PASSWORD);
        let head = format!(
            "PUT /api/v1/webserver HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            8 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).expect("write");
        let _ = s.write_all(&vec![b' '; 64 * 1024]);
        let (answer, _) = answer_within(&mut s, Duration::from_secs(3));
        assert!(answer.starts_with("HTTP/1.1 413"), "oversized body: {answer:?}");
        tally[1] += 1;
        // A valid request, then garbage on the same connection: 200, then 400 and close.
        let mut s = connect(port);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02 NOT HTTP \xff\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
            .expect("write");
        let (answer, closed) = answer_within(&mut s, Duration::from_secs(5));
        assert!(closed, "the connection ends after garbage: {answer:?}");
        assert!(answer.starts_with("HTTP/1.1 200"), "first request: {answer:?}");
        assert!(answer.contains("HTTP/1.1 400"), "garbage: {answer:?}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "nothing after the garbage is served: {answer:?}");
        tally[2] += 1;
    }
    figure(&format!(
        "slow-clients/oversized: {} oversized headers -> 431 + close, {} oversized bodies -> 413, {} pipelined garbage -> 400 + close",
        tally[0], tally[1], tally[2]
    ));
    assert_served("oversized+garbage", normal, pid, rss_before, Duration::from_secs(2));
}

// -------------------------------------------------------------------- TLS scan

/// testssl's JSON findings of severity MEDIUM or above.
fn serious_findings(report: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(report)
        .unwrap_or_else(|e| panic!("no testssl report {}: {e}", report.display()));
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl JSON");
    findings
        .into_iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .collect()
}

fn testssl(port: u16, report: &Path, extra: &[&str]) -> (i32, String) {
    let _ = std::fs::remove_file(report);
    let target = format!("localhost:{port}");
    let mut args = vec![
        "150",
        "testssl",
        "--quiet",
        "--color",
        "0",
        "--warnings",
        "off",
        "--ip",
        "127.0.0.1",
        "--severity",
        "MEDIUM",
        "--jsonfile",
    ];
    let report_path = report.to_str().expect("utf8");
    args.push(report_path);
    args.extend_from_slice(extra);
    args.push(&target);
    let (code, out, err) = run("timeout", &args);
    (code, format!("{out}{err}"))
}

/// Trust and issuance findings: about who issued the certificate and what the
/// CA put in it (chain of trust, revocation URIs), not about the server's TLS
/// setup; an operator's CA decides them.
fn is_trust_finding(f: &Value) -> bool {
    let id = f["id"].as_str().unwrap_or("");
    id.starts_with("cert_chain_of_trust")
        || id.starts_with("cert_trust")
        || id == "cert_caIssuers"
        || id == "cert_revocation"
}

#[test]
#[ignore = "run by scripts/security"]
fn tls_scan_finds_nothing_of_medium_severity_with_a_ca_certificate() {
    assert_eq!(
        run("sh", &["-c", "command -v testssl"]).0,
        0,
        "testssl is not installed: run scripts/install-test-deps"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) =
        ca.issue("localhost", "scan", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]).expect("issue");
    let mut server = TestServer::start(&bin()).expect("start");
    server.kill();
    let data = server.data_dir().display().to_string();
    let (code, out, err) = run(
        bin().to_str().expect("utf8"),
        &["cert", "import", "--cert", &chain, "--key", &key, "--data-dir", &data],
    );
    assert_eq!(code, 0, "cert import: {out}{err}");
    server.restart().expect("restart");
    let root = ca.path("root.pem");
    let report = artifacts().join("testssl-ca.json");
    let started = Instant::now();
    // Protocols, cipher categories, forward secrecy, server defaults
    // (certificate), server preferences and every vulnerability check.
    let (code, output) =
        testssl(server.https_port, &report, &["--add-ca", &root, "-p", "-s", "-f", "-S", "-P", "-U"]);
    let elapsed = started.elapsed();
    std::fs::write(artifacts().join("testssl-ca.txt"), &output).expect("save output");
    let (issuance, findings): (Vec<Value>, Vec<Value>) =
        serious_findings(&report).into_iter().partition(is_trust_finding);
    let issuance: Vec<String> =
        issuance.iter().map(|f| format!("{} ({}): {}", f["id"], f["severity"], f["finding"])).collect();
    figure(&format!(
        "tls-scan: testssl against a test-CA certificate (398 days) in {:.0} s, exit {code}: {} findings of MEDIUM \
         or above about the TLS setup; about the test CA's issuance (listed, not failing): {issuance:?}",
        elapsed.as_secs_f64(),
        findings.len()
    ));
    assert!(findings.is_empty(), "testssl findings of MEDIUM or above:\n{findings:#?}\n{output}");
    assert!(!output.contains("SSLv3      offered") && !output.contains("TLS 1      offered"), "{output}");
    if long() {
        // The factory certificate: self-signed, so trust findings are expected;
        // they are listed apart and only other findings fail.
        server.kill();
        let (code, out, err) = run(bin().to_str().expect("utf8"), &["cert", "delete", "--data-dir", &data]);
        assert_eq!(code, 0, "cert delete: {out}{err}");
        server.restart().expect("restart");
        let report = artifacts().join("testssl-factory.json");
        let (_, output) = testssl(server.https_port, &report, &["-p", "-s", "-f", "-S", "-P", "-U"]);
        std::fs::write(artifacts().join("testssl-factory.txt"), &output).expect("save output");
        // A 10-year validity is the factory certificate's design (the device's
        // own identity, not a publicly trusted certificate): listed with trust.
        let (trust, other): (Vec<Value>, Vec<Value>) = serious_findings(&report)
            .into_iter()
            .partition(|f| is_trust_finding(f) || f["id"] == "cert_validityPeriod");
        let trust_ids: Vec<String> =
            trust.iter().map(|f| format!("{} ({}): {}", f["id"], f["severity"], f["finding"])).collect();
        figure(&format!(
            "tls-scan/factory: trust findings (expected: self-signed, 10 years): {trust_ids:?}; other findings: {}",
            other.len()
        ));
        assert!(other.is_empty(), "findings against the factory certificate beyond trust: {other:#?}");
    }
}

// ------------------------------------------------------------------ API fuzzing

/// The schemathesis of `.venv-security/` (made by scripts/install-test-deps).
#[cfg(all(feature = "openapi", feature = "email", feature = "ip-notify", feature = "sip"))]
fn schemathesis() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-security/bin/schemathesis");
    assert!(path.exists(), "schemathesis is not installed: run scripts/install-test-deps");
    path
}

#[cfg(all(feature = "openapi", feature = "email", feature = "ip-notify", feature = "sip"))]
#[test]
#[ignore = "run by scripts/security"]
fn api_fuzzing_finds_no_server_errors_and_no_schema_mismatch() {
    let server = TestServer::start(&bin()).expect("start");
    let examples = if long() { "200" } else { "15" };
    let report = artifacts().join("schemathesis.txt");
    let junit = artifacts().join("schemathesis-junit.xml");
    let url = server.url("/api/v1/openapi.json");
    let auth = format!("admin:{ADMIN_PASSWORD}");
    let exe = schemathesis();
    // Schemathesis keeps caches and reports in its working folder
    // (`.schemathesis/`): a temporary one, so nothing is left in the clone.
    let work = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let output = std::process::Command::new("timeout")
        .current_dir(work.path())
        .args([
            "600",
            exe.to_str().expect("utf8"),
            "run",
            &url,
            "--auth",
            &auth,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--max-examples",
            examples,
            "--workers",
            "2",
            "--seed",
            "7",
            // No example database left in the working folder.
            "--generation-database",
            "none",
            // Operations that would take the API away from the fuzzer itself:
            // moving the ports, denying the fuzzer's address with force=true,
            // changing or deleting the admin account, logging out, rebinding
            // the listeners; and sending a test notification (it would reach
            // whatever host a generated profile names: loopback only here).
            "--exclude-path-regex",
            "^/api/v1/(webserver|access-control|users/\\{name\\}|reboot|profiles/\\{kind\\}/\\{name\\}/test)$",
            "--exclude-method",
            "DELETE",
            "--report-junit-path",
            junit.to_str().expect("utf8"),
            "--no-color",
        ])
        .output()
        .expect("run schemathesis");
    let code = output.status.code().unwrap_or(-1);
    let output =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    std::fs::write(&report, &output).expect("save report");
    figure(&format!(
        "api-fuzzing: schemathesis --max-examples {examples} in {:.0} s, exit {code} (report artifacts/security/schemathesis.txt)",
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(code, 0, "schemathesis found problems:\n{output}");
    // The server is still healthy afterwards.
    assert_eq!(server.admin("GET", "/api/v1/config/status", None).0, 200);
}

// ---------------------------------------------------------------- attack tools

/// Status of a form login (`POST /api/v1/session`, JSON) from `source`.
fn login_status(source: &str, url: &str, password: &str) -> u16 {
    let body = json!({"user": "admin", "password": password}).to_string();
    curl_status(source, url, &["-H", "Content-Type: application/json", "--data", &body])
}

/// A server with threshold 5, blocking on, access control on.
fn guarded_server() -> TestServer {
    let mut server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    // The test's own admin requests come from another source than the attacker.
    server.source = "127.0.0.3".parse().expect("ip");
    server
}

/// Failed attempts of `ip` in the logfile.
fn failed_attempts(server: &TestServer, ip: &str) -> u64 {
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == ip && e["authorized"] == false)
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum()
}

/// A legitimate client logging in by the form from 127.0.0.3 until stopped:
/// (status, time) of each login.
fn legitimate_logins(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(u16, Duration)>> {
    std::thread::spawn(move || {
        let mut statuses = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            statuses.push((login_status("127.0.0.3", &url, ADMIN_PASSWORD), t.elapsed()));
        }
        statuses
    })
}

fn wordlist() -> Vec<String> {
    let mut list: Vec<String> = (0..40).map(|i| format!("guess-{i}")).collect();
    list.push(ADMIN_PASSWORD.to_string());
    list
}

/// The login form under a dictionary attack. hydra's `http-post-form` can
/// send the JSON body (`H=Content-Type\: application/json`), but it gives up
/// on any 401 answer ("the target is using HTTP auth, not a web form"), and
/// the API answers a wrong login with 401; so the form attack is driven by
/// four parallel `curl` loops over the same word list, and hydra attacks the
/// same credentials with Basic (`http-get`) on `GET /api/v1/session`.
#[test]
#[ignore = "run by scripts/security"]
fn login_form_attack_is_blocked_at_the_threshold_while_a_legitimate_client_is_served() {
    let server = guarded_server();
    let login_url = server.url("/api/v1/session");
    // Form encoding, as a browser form or hydra's default sends it, is refused.
    assert_eq!(
        curl_status("127.0.0.4", &login_url, &["--data", "user=admin&password=x"]),
        415,
        "the login takes JSON only"
    );
    let words = Arc::new(wordlist());
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let legit = legitimate_logins(login_url.clone(), stop.clone());
    let started = Instant::now();
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let (words, next, url) = (words.clone(), next.clone(), login_url.clone());
            std::thread::spawn(move || {
                let mut found = false;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(word) = words.get(i) else { break };
                    match login_status("127.0.0.1", &url, word) {
                        0 => break, // refused at the connection: blocked
                        200 => found = true,
                        _ => {}
                    }
                }
                found
            })
        })
        .collect();
    let found = attackers.into_iter().any(|a| a.join().expect("attacker"));
    let attack_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let statuses = legit.join().expect("legitimate client");
    assert!(!found, "the dictionary attack must not reach the password");
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "127.0.0.1", "{blocked}");
    let attempts = failed_attempts(&server, "127.0.0.1");
    let worst = statuses.iter().map(|(_, d)| *d).max().unwrap_or_default();
    figure(&format!(
        "attack-tools/login-form (4 parallel curl loops, JSON): {} words, blocked after {attempts} failed logins in {:.1} s; \
         legitimate form logins: {}, all 200: {}, slowest {:.0} ms",
        words.len(),
        attack_time.as_secs_f64(),
        statuses.len(),
        statuses.iter().all(|(s, _)| *s == 200),
        worst.as_secs_f64() * 1000.0
    ));
    assert!((6..=12).contains(&attempts), "attempts before the block: {attempts}");
    assert!(
        !statuses.is_empty() && statuses.iter().all(|(s, _)| *s == 200),
        "legitimate client: {statuses:?}"
    );

    // hydra, Basic on the session path, against a fresh server.
    assert_eq!(
        run("sh", &["-c", "command -v hydra"]).0,
        0,
        "hydra is not installed: run scripts/install-test-deps"
    );
    drop(server);
    let server = guarded_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let word_file = dir.path().join("words.txt");
    std::fs::write(&word_file, words.join("\n")).expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    let legit = legitimate_logins(server.url("/api/v1/session"), stop.clone());
    let started = Instant::now();
    let (out, err) = crate::hydra_http_get(server.http_ports[0], &word_file, "/api/v1/session");
    let attack_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let statuses = legit.join().expect("legitimate client");
    std::fs::write(artifacts().join("hydra-session-basic.txt"), format!("{out}\n{err}")).expect("save");
    assert!(
        !out.contains(&format!("password: {ADMIN_PASSWORD}")),
        "hydra must not find the password:\n{out}\n{err}"
    );
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "127.0.0.1", "{blocked}");
    let attempts = failed_attempts(&server, "127.0.0.1");
    let worst = statuses.iter().map(|(_, d)| *d).max().unwrap_or_default();
    figure(&format!(
        "attack-tools/hydra http-get (Basic) on /api/v1/session: blocked after {attempts} failed attempts, hydra ran {:.1} s; \
         legitimate form logins: {}, all 200: {}, slowest {:.0} ms",
        attack_time.as_secs_f64(),
        statuses.len(),
        statuses.iter().all(|(s, _)| *s == 200),
        worst.as_secs_f64() * 1000.0
    ));
    assert!((6..=12).contains(&attempts), "attempts before the block: {attempts}\n{out}\n{err}");
    assert!(
        !statuses.is_empty() && statuses.iter().all(|(s, _)| *s == 200),
        "legitimate client: {statuses:?}"
    );
}

/// A tmpfs mounted over a folder for one test; lazily unmounted when dropped
/// (the server may still hold files in it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB over `dir`, keeping what `dir` held.
    /// `None` (and the reason) when this machine cannot mount one.
    fn over(dir: &Path, kib: u32) -> Result<Self, String> {
        let saved = dir.with_extension("saved");
        let (code, _, err) = run("cp", &["-a", &dir.display().to_string(), &saved.display().to_string()]);
        assert_eq!(code, 0, "{err}");
        let options = format!("size={kib}k,mode=0700");
        let (code, _, err) =
            run("mount", &["-t", "tmpfs", "-o", &options, "tmpfs", &dir.display().to_string()]);
        if code != 0 {
            return Err(err);
        }
        let mounted = Self(dir.to_path_buf());
        let (code, _, err) =
            run("cp", &["-a", &format!("{}/.", saved.display()), &dir.display().to_string()]);
        assert_eq!(code, 0, "{err}");
        Ok(mounted)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.0.display().to_string()]);
    }
}

/// Fills the file system of `dir` with `dir/filler` until it refuses.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = [0u8; 4096];
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
}

#[test]
fn storage_full_is_said_recorded_and_alerted_and_changes_nothing() {
    // The alert's peer: a TCP listener keeping what arrives.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp_port = listener.local_addr().expect("addr").port();
    let got = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut text = String::new();
            let _ = conn.read_to_string(&mut text);
            sink.lock().expect("lock").push(text);
        }
    });
    let mut server = TestServer::start(&bin()).expect("start");
    let (status, body) = server.admin(
        "PUT",
        "/api/v1/profiles/ip-notify/net",
        Some(json!({"destinations": [format!("127.0.0.1:{tcp_port}")], "protocol": "tcp", "body": "ALERT {event}: {message}"})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["ip_notify_profile"] = json!("net");
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s.clone())).0, 200);
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);

    // The data folder on a 600 KiB file system, as a device's flash.
    server.kill();
    let data = server.data_dir();
    let _mounted = match Tmpfs::over(&data, 600) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED storage_full test: cannot mount a tmpfs here (needs root): {why}");
            return;
        }
    };
    server.restart().expect("restart on the small file system");
    let config_before = std::fs::read(data.join("config.json")).expect("config");
    let (_, cert_before) = server.admin("GET", "/api/v1/certificate", None);
    fill(&data);

    // A Set stays in memory; Store and Generate say what happened.
    s["intrusion_detection"]["notification_threshold"] = json!(9);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    let (status, err) = server.admin("POST", "/api/v1/config/store", None);
    assert_eq!(status, 507, "{err}");
    assert_eq!(err["error"]["code"], "storage_full", "{err}");
    assert_eq!(err["error"]["message"], "the device's storage is full; nothing was changed", "{err}");
    let (status, err) = server.admin(
        "POST",
        "/api/v1/certificate/generate",
        Some(json!({"common_name": "full.portcullis.test", "key_type": "ecdsa-p256"})),
    );
    assert_eq!(status, 507, "{err}");
    assert_eq!(err["error"]["code"], "storage_full", "{err}");
    // Nothing changed: the stored file, the certificate in use; still serving.
    assert_eq!(std::fs::read(data.join("config.json")).expect("config"), config_before);
    let (_, cert_after) = server.admin("GET", "/api/v1/certificate", None);
    assert_eq!(cert_after["certificate"], cert_before["certificate"]);
    let (_, status_now) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status_now["unsaved_changes"], true, "{status_now}");

    // In the event log at once, and one alert for both.
    let (_, events) = server.admin("GET", "/api/v1/events?limit=1000", None);
    let full: Vec<&Value> =
        events["events"].as_array().expect("events").iter().filter(|e| e["kind"] == "storage_full").collect();
    assert_eq!(full.len(), 2, "{events}");
    assert!(
        wait_until(Duration::from_secs(20), || got
            .lock()
            .expect("lock")
            .iter()
            .any(|m| m.contains("ALERT storage_full"))),
        "no alert arrived: {:?}",
        got.lock().expect("lock")
    );

    // Space back: the event log on disk records it, and Store works.
    std::fs::remove_file(data.join("filler")).expect("rm filler");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(data.join("events.json"))
            .is_ok_and(|t| t.contains("storage_full"))),
        "the event log on disk lacks it"
    );
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    let alerts = got.lock().expect("lock").iter().filter(|m| m.contains("ALERT storage_full")).count();
    assert_eq!(alerts, 1, "one alert per hour at most");
}
