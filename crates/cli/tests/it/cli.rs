//! The offline commands of the binary.

use portcullis_testkit::{TestServer, run};

use crate::bin;

fn portcullis(args: &[&str]) -> (i32, String, String) {
    run(bin().to_str().expect("utf8 path"), args)
}

#[test]
fn help_is_everywhere() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["user", "--help"],
        &["config", "--help"],
        &["user", "add", "--help"],
    ] {
        let (code, out, _) = portcullis(args);
        assert_eq!(code, 0, "{args:?}");
        assert!(out.contains("Usage"), "{args:?}: {out}");
    }
}

#[test]
fn a_bad_log_filter_is_one_clear_line_and_touches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let port = portcullis_testkit::free_port().to_string();
    let (code, out, err) = portcullis(&[
        "serve",
        "--data-dir",
        data.to_str().expect("utf8"),
        "--http-port",
        &port,
        "--log",
        "portcullis=loud",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("invalid --log filter \"portcullis=loud\""), "{err}");
    assert_eq!(err.matches("expected one of").count(), 1, "the cause once: {err}");
    assert!(!data.exists(), "nothing was created before the refusal");
}

#[test]
fn users_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let data = data.to_str().expect("utf8");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "operator-password\n").expect("write");
    let pw = pw.to_str().expect("utf8");
    let (code, _, err) =
        portcullis(&["user", "add", "ops", "--group", "admins", "--password-file", pw, "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = portcullis(&["user", "add", "ops", "--password-file", pw, "--data-dir", data]);
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");
    let (code, out, _) = portcullis(&["user", "add", "viewer", "--data-dir", data]);
    assert_eq!(code, 0);
    assert!(out.trim().len() >= 16, "a generated password is printed: {out}");
    let (_, list, _) = portcullis(&["user", "list", "--data-dir", data]);
    assert_eq!(list, "ops\tadmins\nviewer\tusers\n");
    let (code, _, err) = portcullis(&["user", "add", "bad name", "--password-file", pw, "--data-dir", data]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    let (code, _, err) = portcullis(&["user", "delete", "ops", "--data-dir", data]);
    assert_eq!(code, 1, "the last admin stays");
    assert!(err.contains("last member"), "{err}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(std::path::Path::new(data).join("users.json")).expect("users.json").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn config_offline_and_locked_while_serving() {
    let mut server = TestServer::start(&bin()).expect("start");
    let data = server.data_dir();
    let data = data.to_str().expect("utf8").to_string();
    let (code, _, err) = portcullis(&["config", "factory-reset", "--data-dir", &data]);
    assert_eq!(code, 1, "refused while a server runs");
    assert!(err.contains("in use by a running portcullis server"), "{err}");
    server.kill();
    let (code, _, err) = portcullis(&["config", "factory-reset", "--data-dir", &data]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = portcullis(&["config", "check", "--data-dir", &data]);
    assert_eq!(code, 0);
    assert!(out.contains("valid"));
    let (code, out, _) = portcullis(&["config", "show", "--data-dir", &data]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["webserver"]["http_ports"], serde_json::json!([80]));
    let bad = std::path::Path::new(&data).join("bad.json");
    std::fs::write(&bad, r#"{"webserver": {"http_ports": [8080, 8080]}}"#).expect("write");
    let (code, _, err) = portcullis(&["config", "check", bad.to_str().expect("utf8"), "--data-dir", &data]);
    assert_eq!(code, 1);
    assert!(err.contains("listed twice"), "{err}");
}

#[test]
fn an_invalid_start_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let data_arg = data.to_str().expect("utf8");
    let free = portcullis_testkit::free_port().to_string();
    for (what, ports, said) in [
        ("port 0", vec!["--http-port", "0", "--https-port", &free], "port 0"),
        ("one port twice", vec!["--http-port", &free, "--https-port", &free], "http_ports"),
    ] {
        let args = [&["serve", "--data-dir", data_arg, "--listen", "127.0.0.1"][..], &ports].concat();
        let (code, out, err) = portcullis(&args);
        assert_eq!(code, 1, "{what}: {out}{err}");
        let refusal: Vec<&str> = err.lines().filter(|l| l.starts_with("portcullis: ")).collect();
        assert_eq!(refusal.len(), 1, "{what}: {err}");
        assert!(refusal[0].contains(said), "{what}: {err}");
        assert_eq!(refusal[0].matches(said).count(), 1, "{what}: the cause said once: {err}");
        assert!(!err.contains("created the account"), "{what}: {err}");
        assert!(!data.exists(), "{what}: the data folder was created");
    }
    // A folder that exists keeps only what it had: no account, no certificate.
    std::fs::create_dir(&data).expect("mkdir");
    let (code, _, err) =
        portcullis(&["serve", "--data-dir", data_arg, "--listen", "127.0.0.1", "--http-port", "0"]);
    assert_eq!(code, 1, "{err}");
    let left: Vec<String> = std::fs::read_dir(&data)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("file"), "").expect("file");
    let data = dir.path().join("file/data");
    let (code, _, err) = portcullis(&["user", "list", "--data-dir", data.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}

#[test]
fn a_first_start_is_no_warning() {
    let server = TestServer::start(&bin()).expect("start");
    let log = server.log();
    assert!(log.contains("no configuration stored yet"), "{log}");
    assert!(!log.contains("WARN"), "a first start reads like a fault: {log}");
    // An event with its actor: plain values in the log line, no debug forms.
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    assert!(
        portcullis_testkit::wait_until(std::time::Duration::from_secs(5), || server
            .log()
            .contains("running configuration stored permanently")),
        "{}",
        server.log()
    );
    let log = server.log();
    let line = log.lines().find(|l| l.contains("running configuration stored permanently")).expect("line");
    assert!(line.contains("user=admin") && line.contains("client_ip=127.0.0.1"), "{line}");
    assert!(!line.contains("Some("), "a debug form in the log: {line}");
}
