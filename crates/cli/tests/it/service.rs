//! The server as a device's service: SIGHUP reloads, systemd's readiness
//! and watchdog notifications, and `--user` (as root).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use portcullis_testkit::{Options, TestServer, run, wait_until};
use serde_json::{Value, json};

use crate::bin;

/// One keep-alive `GET /healthz` on an open connection; the status code.
fn keep_alive_get(conn: &mut TcpStream) -> u16 {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    status.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn events(server: &TestServer) -> Vec<Value> {
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    body["events"].as_array().cloned().unwrap_or_default()
}

fn threshold(server: &TestServer) -> Value {
    server.admin("GET", "/api/v1/webserver", None).1["intrusion_detection"]["notification_threshold"].clone()
}

#[test]
fn sighup_reloads_the_stored_configuration_and_keeps_open_connections() {
    let mut server = TestServer::start(&bin()).expect("start");
    let mut conn = TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    assert_eq!(keep_alive_get(&mut conn), 200);

    // A Set that is not stored: a reload must take it back.
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["intrusion_detection"]["notification_threshold"] = json!(9);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    assert_eq!(threshold(&server), 9);

    server.signal("HUP").expect("SIGHUP");
    assert!(
        wait_until(Duration::from_secs(10), || events(&server)
            .iter()
            .any(|e| e["kind"] == "reboot" && e["message"].as_str().is_some_and(|m| m.contains("SIGHUP")))),
        "no reload event; log:\n{}",
        server.log()
    );
    assert!(!server.exited(), "the server died on SIGHUP:\n{}", server.log());
    assert_eq!(threshold(&server), 10, "the stored (factory) value is running again");
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["unsaved_changes"], false);
    // The connection opened before the reload still serves: its port stayed.
    assert_eq!(keep_alive_get(&mut conn), 200);

    // A second SIGHUP, then SIGTERM still ends it gracefully.
    server.signal("HUP").expect("SIGHUP");
    assert!(wait_until(Duration::from_secs(10), || events(&server)
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains("SIGHUP")))
        .count()
        == 2));
    assert_eq!(server.terminate(), Some(0));
}

/// Collects the datagrams sent to `socket` until `until` holds for one of
/// them or `limit` passes; every line received.
fn receive_until(socket: &UnixDatagram, limit: Duration, until: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
            ))
            .expect("timeout");
        let Ok(n) = socket.recv(&mut buf) else { break };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = until(&text);
        lines.extend(text.lines().map(str::to_string));
        if done {
            break;
        }
    }
    lines
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
    let options = Options {
        env: vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            // WatchdogSec=0.3: a ping every 150 ms.
            ("WATCHDOG_USEC".into(), "300000".into()),
        ],
        ..Default::default()
    };
    let mut server = TestServer::start_with(&bin(), options).expect("start");

    let lines = receive_until(&socket, Duration::from_secs(10), |m| m.contains("READY=1"));
    assert!(lines.iter().any(|l| l == "READY=1"), "no READY=1: {lines:?}");
    // Sent once the listeners were open: the status names them.
    let status = format!("STATUS=serving HTTP on {}, HTTPS on {}", server.http_ports[0], server.https_port);
    assert!(lines.contains(&status), "{lines:?}");

    // WatchdogSec=0.3: a ping every 150 ms, so some ten within 1.5 s.
    let lines = receive_until(&socket, Duration::from_millis(1500), |_| false);
    assert!(lines.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3, "watchdog pings: {lines:?}");

    server.signal("HUP").expect("SIGHUP");
    let lines = receive_until(&socket, Duration::from_secs(10), |m| m.contains("READY=1"));
    let reloading = lines.iter().position(|l| l == "RELOADING=1").expect("RELOADING=1");
    assert!(lines.iter().any(|l| l.starts_with("MONOTONIC_USEC=")), "{lines:?}");
    let ready = lines.iter().rposition(|l| l == "READY=1").expect("READY=1 after the reload");
    assert!(reloading < ready, "{lines:?}");

    server.signal("TERM").expect("SIGTERM");
    let lines = receive_until(&socket, Duration::from_secs(10), |m| m.contains("STOPPING=1"));
    assert!(lines.iter().any(|l| l == "STOPPING=1"), "{lines:?}");
    assert!(wait_until(Duration::from_secs(20), || server.exited()));
}

/// Whether the tests run as root (`--user` needs it).
fn root() -> bool {
    run("id", &["-u"]).1.trim() == "0"
}

/// The uid of `nobody`, if the system has that account.
fn nobody() -> Option<u32> {
    let (code, out, _) = run("id", &["-u", "nobody"]);
    (code == 0).then(|| out.trim().parse().ok()).flatten()
}

/// A port below 1024 that is free on 127.0.0.1 now.
fn free_low_port() -> Option<u16> {
    (900..1024).rev().find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// The value of `key` in /proc/PID/status.
fn proc_status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
}

#[test]
fn user_switches_account_keeps_only_the_bind_capability_and_owns_its_files() {
    let (true, Some(uid)) = (root(), nobody()) else {
        eprintln!("skipped: needs root and a `nobody` account");
        return;
    };
    let options =
        Options { open_dir: true, extra_args: vec!["--user".into(), "nobody".into()], ..Default::default() };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let pid = server.pid().expect("pid");
    let ids = format!("{uid}\t{uid}\t{uid}\t{uid}");
    assert_eq!(proc_status(pid, "Uid:"), ids);
    assert_eq!(
        proc_status(pid, "Groups:").split_whitespace().filter(|g| *g == "0").count(),
        0,
        "root's group kept"
    );
    // CAP_NET_BIND_SERVICE is bit 10, and the only one.
    assert_eq!(proc_status(pid, "CapEff:"), "0000000000000400");
    assert_eq!(proc_status(pid, "CapPrm:"), "0000000000000400");
    // Everything the first start created belongs to the account.
    use std::os::unix::fs::MetadataExt;
    for f in ["", "users.json", "certs", "certs/factory.pem"] {
        let meta = std::fs::metadata(server.data_dir().join(f)).expect(f);
        assert_eq!(meta.uid(), uid, "{f}");
    }
    // A later Set may still open a port below 1024.
    let low = free_low_port().expect("a free port below 1024");
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["http_ports"] = json!([server.http_ports[0], low]);
    let (status, body) = server.admin("PUT", "/api/v1/webserver", Some(ws));
    assert_eq!(status, 200, "{body}");
    let (_, out, _) = run("curl", &["-s", &format!("http://127.0.0.1:{low}/healthz")]);
    assert!(out.contains("ok"), "{out}");
    // Storing works: the account can write its folder.
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
}

#[test]
fn user_refuses_a_data_folder_that_belongs_to_someone_else() {
    if !root() || nobody().is_none() {
        eprintln!("skipped: needs root and a `nobody` account");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data");
    std::fs::write(data.join("config.json"), "{}").expect("config");
    let port = portcullis_testkit::free_port().to_string();
    let bin = bin();
    let (code, _, err) = run(
        "timeout",
        &[
            "20",
            bin.to_str().expect("utf8"),
            "serve",
            "--user",
            "nobody",
            "--data-dir",
            data.to_str().expect("utf8"),
            "--listen",
            "127.0.0.1",
            "--http-port",
            &port,
        ],
    );
    assert_eq!(code, 1, "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains("belongs to uid 0, not to nobody") && last.contains("chown -R nobody:"), "{err}");
    // Nothing was created or changed.
    let names: Vec<_> =
        std::fs::read_dir(&data).expect("read").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
}

/// The repository's root.
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the binary accepts `args` (with `--help` after them: clap
/// refuses an unknown option before it prints the help).
fn accepted(args: &[String]) -> bool {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.push("--help");
    let bin = bin();
    run(bin.to_str().expect("utf8"), &all).0 == 0
}

#[test]
fn the_service_examples_are_in_the_readme_and_their_command_lines_work() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let unit = std::fs::read_to_string(repo().join("packaging/systemd/portcullis.service")).expect("unit");
    let init = repo().join("packaging/openwrt/portcullis.init");
    let procd = std::fs::read_to_string(&init).expect("procd script");
    assert!(readme.contains(unit.trim_end()), "the README shows another systemd unit than packaging/");
    assert!(readme.contains(procd.trim_end()), "the README shows another procd script than packaging/");

    // systemd: the service's command line.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    let args: Vec<String> = exec.split_whitespace().skip(1).map(str::to_string).collect();
    assert_eq!(args.first().map(String::as_str), Some("serve"));
    assert!(accepted(&args), "ExecStart: {args:?}");
    assert!(unit.contains("Type=notify-reload") && unit.contains("WatchdogSec="));
    assert!(!accepted(&["serve".into(), "--no-such-option".into()]), "the check itself must be able to fail");

    // procd: the shell parses it, and start_service asks for a command the binary takes.
    let (code, _, err) = run("sh", &["-n", init.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let stub = format!(
        "procd_open_instance() {{ :; }}; procd_close_instance() {{ :; }}; \
         procd_set_param() {{ [ \"$1\" = command ] || return 0; shift; printf '%s\\n' \"$@\"; }}; \
         . '{}'; start_service",
        init.display()
    );
    let (code, out, err) = run("sh", &["-c", &stub]);
    assert_eq!(code, 0, "{err}");
    let command: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(command.first().map(String::as_str), Some("/usr/bin/portcullis"), "{command:?}");
    assert!(command.contains(&"--user".to_string()), "{command:?}");
    assert!(accepted(&command[1..]), "procd command: {command:?}");
}
