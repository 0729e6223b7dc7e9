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
