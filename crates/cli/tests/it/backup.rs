//! Configuration backup and restore: `POST /api/v1/config/export` and
//! `/import` driven with curl, and `portcullis config export|import` offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_testkit::{ADMIN_PASSWORD, TestServer, run};
use serde_json::{Value, json};

use crate::bin;

const PASSPHRASE: &str = "correct horse battery staple";
const OPERATOR_PASSWORD: &str = "operator-password-1";

/// Exports through the API with curl as `user`; status, headers, and the file written to `out`.
fn export_as(server: &TestServer, user: &str, password: &str, body: &Value, out: &Path) -> (u16, String) {
    let headers = out.with_extension("headers");
    let (_, code, err) = run(
        "curl",
        &[
            "-sk",
            "--max-time",
            "60",
            "-u",
            &format!("{user}:{password}"),
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body.to_string(),
            "-D",
            headers.to_str().expect("utf8"),
            "-o",
            out.to_str().expect("utf8"),
            "-w",
            "%{http_code}",
            &server.url("/api/v1/config/export"),
        ],
    );
    let status = code.trim().parse().unwrap_or_else(|_| panic!("curl: {err}"));
    (status, std::fs::read_to_string(&headers).unwrap_or_default())
}

/// Exports as the administrator; the answer's headers (the file is at `out`).
pub(crate) fn export(server: &TestServer, body: Value, out: &Path) -> String {
    let (status, headers) = export_as(server, "admin", ADMIN_PASSWORD, &body, out);
    assert_eq!(status, 200, "{headers} {}", String::from_utf8_lossy(&std::fs::read(out).unwrap_or_default()));
    headers
}

/// Imports through the API with curl (multipart `file`, `passphrase` and
/// `extra` fields) as `user`, at `url`; status and JSON answer.
fn import_at(
    url: &str,
    user: &str,
    password: &str,
    file: &Path,
    passphrase: &str,
    extra: &[&str],
) -> (u16, Value) {
    let mut args = vec![
        "-sk".to_string(),
        "--max-time".into(),
        "60".into(),
        "-u".into(),
        format!("{user}:{password}"),
        "-F".into(),
        format!("file=@{}", file.display()),
        "-F".into(),
        format!("passphrase={passphrase}"),
    ];
    for e in extra {
        args.push("-F".into());
        args.push((*e).to_string());
    }
    args.extend(["-w".into(), "\n%{http_code}".into(), url.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, err) = run("curl", &args);
    let (body, status) = out.rsplit_once('\n').unwrap_or_else(|| panic!("curl: {out} {err}"));
    (status.trim().parse().expect("status"), serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Imports as the administrator; status and JSON answer.
pub(crate) fn import(server: &TestServer, file: &Path, passphrase: &str, extra: &[&str]) -> (u16, Value) {
    import_at(&server.url("/api/v1/config/import"), "admin", ADMIN_PASSWORD, file, passphrase, extra)
}

/// A device with settings in every kind of section, stored: access rules,
/// intrusion detection, an e-mail profile with its password (when built),
/// and a second administrator.
fn configured(server: &TestServer) {
    let (status, body) = server.admin(
        "PUT",
        "/api/v1/users/operator",
        Some(json!({"password": OPERATOR_PASSWORD, "group": "admins"})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "rules": [{"source": "10.9.0.0/16", "kind": "deny"}]})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["intrusion_detection"]["notification_threshold"] = json!(7);
    let (status, body) = server.admin("PUT", "/api/v1/webserver", Some(ws));
    assert_eq!(status, 200, "{body}");
    if cfg!(feature = "email") {
        let (status, body) = server.admin(
            "PUT",
            "/api/v1/profiles/email/ops",
            Some(json!({"server": "127.0.0.1", "port": 2525, "security": "none", "from": "cam@example.com",
                "to": ["ops@example.com"], "username": "cam", "password": "smtp-secret-42"})),
        );
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
}

/// The settings [`configured`] made, as `user` sees them on `server`.
fn assert_configured(server: &TestServer) {
    let (status, ws) = server.request_as("operator", OPERATOR_PASSWORD, "GET", "/api/v1/webserver", None);
    assert_eq!(status, 200, "the operator logs in with the old password: {ws}");
    assert_eq!(ws["intrusion_detection"]["notification_threshold"], json!(7));
    let (_, ac) = server.admin("GET", "/api/v1/access-control", None);
    assert_eq!(ac["enabled"], json!(true), "{ac}");
    assert_eq!(ac["rules"][0]["source"], json!("10.9.0.0/16"), "{ac}");
    if cfg!(feature = "email") {
        let (status, profile) = server.admin("GET", "/api/v1/profiles/email/ops", None);
        assert_eq!(status, 200, "{profile}");
        assert_eq!(profile["username"], json!("cam"));
        assert!(!profile.to_string().contains("smtp-secret-42"), "a secret is never read back: {profile}");
    }
}

/// The data folder wiped, as a device whose flash was replaced: a new
/// factory certificate, only the first start's `admin` account.
fn wiped(server: &mut TestServer) {
    server.kill();
    std::fs::remove_dir_all(server.data_dir()).expect("wipe");
    server.restart().expect("restart");
}

fn fingerprint(server: &TestServer) -> String {
    let (_, cert) = server.admin("GET", "/api/v1/certificate", None);
    cert["certificate"]["fingerprint_sha256"].as_str().expect("fingerprint").to_string()
}

fn events(server: &TestServer) -> String {
    server.admin("GET", "/api/v1/events?limit=1000", None).1.to_string()
}

#[test]
fn export_wipe_import_brings_settings_accounts_profiles_and_rules_back() {
    let mut server = TestServer::start(&bin()).expect("start");
    configured(&server);
    let out = server.dir.path().join("backup.age");
    let headers = export(&server, json!({"passphrase": PASSPHRASE}), &out);
    let headers = headers.to_ascii_lowercase();
    assert!(headers.contains("content-type: application/octet-stream"), "{headers}");
    assert!(headers.contains("content-disposition: attachment; filename=\"portcullis-backup-"), "{headers}");
    let file = std::fs::read(&out).expect("file");
    assert!(file.starts_with(b"age-encryption.org/v1\n"), "an age file");
    for secret in ["smtp-secret-42", "operator", "10.9.0.0"] {
        assert!(!String::from_utf8_lossy(&file).contains(secret), "encrypted: {secret} shows");
    }
    assert!(events(&server).contains("config_exported"));

    // The file lies beside the data folder, which goes.
    wiped(&mut server);
    assert_eq!(server.request_as("operator", OPERATOR_PASSWORD, "GET", "/api/v1/webserver", None).0, 401);
    let (status, answer) = import(&server, &out, PASSPHRASE, &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["certificate"], json!("none"), "{answer}");
    assert_eq!(answer["backup"]["format_version"], json!(1), "{answer}");
    assert!(answer["users"].as_array().expect("users").contains(&json!("operator")), "{answer}");
    assert!(!answer.to_string().contains("smtp-secret-42"), "no secret in the answer: {answer}");
    assert_configured(&server);
    // Like a Set: running now, stored by Store, and then a start runs it.
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["unsaved_changes"], json!(true), "{status}");
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    let stored = std::fs::read_to_string(server.data_dir().join("config.json")).expect("config.json");
    if cfg!(feature = "email") {
        assert!(stored.contains("smtp-secret-42"), "the profile's secret came back with it");
    }
    let events = events(&server);
    assert!(events.contains("config_imported"), "{events}");
    assert!(events.contains("config_changed"), "{events}");
    server.restart().expect("restart");
    assert_configured(&server);
}

#[test]
fn a_wrong_passphrase_a_damaged_file_and_a_newer_version_change_nothing() {
    let server = TestServer::start(&bin()).expect("start");
    configured(&server);
    let dir = server.dir.path();
    let good = dir.join("good.age");
    export(&server, json!({"passphrase": PASSPHRASE}), &good);
    // The device is changed after the backup: a refused import must leave it so.
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["intrusion_detection"]["notification_threshold"] = json!(9);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    assert_eq!(server.admin("DELETE", "/api/v1/users/operator", None).0, 204);
    let before =
        (server.admin("GET", "/api/v1/webserver", None).1, server.admin("GET", "/api/v1/users", None).1);

    let (status, answer) = import(&server, &good, "not the passphrase", &[]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], json!("wrong_passphrase"), "{answer}");
    assert_eq!(answer["error"]["field"], json!("passphrase"), "{answer}");

    let bytes = std::fs::read(&good).expect("file");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let cut = bytes[..bytes.len() - 20].to_vec();
    for (name, content) in [("flipped", flipped), ("cut", cut), ("text", b"not a backup at all\n".to_vec())] {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        let (status, answer) = import(&server, &path, PASSPHRASE, &[]);
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], json!("backup_damaged"), "{name}: {answer}");
    }

    // From a newer version: the backup's format, or its configuration's.
    let opened = portcullis::backup::open(&bytes, PASSPHRASE).expect("opens");
    let mut newer_format = opened.clone();
    newer_format.info.format_version = portcullis::backup::FORMAT_VERSION + 1;
    let mut newer_config = opened;
    newer_config.configuration["version"] = json!(portcullis_core::config::CONFIG_VERSION + 1);
    for (name, backup) in [("newer-format", newer_format), ("newer-config", newer_config)] {
        let path = dir.join(name);
        std::fs::write(&path, portcullis::backup::seal(&backup, PASSPHRASE).expect("sealed")).expect("write");
        let (status, answer) = import(&server, &path, PASSPHRASE, &[]);
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["error"]["code"], json!("backup_newer_version"), "{name}: {answer}");
    }

    let after =
        (server.admin("GET", "/api/v1/webserver", None).1, server.admin("GET", "/api/v1/users", None).1);
    assert_eq!(before, after, "nothing changed");
    assert!(!events(&server).contains("config_imported"));
    // And the good file still imports.
    let (status, answer) = import(&server, &good, PASSPHRASE, &[]);
    assert_eq!(status, 200, "{answer}");
    assert_configured(&server);
}

#[test]
fn the_certificate_is_carried_only_when_asked_and_installed_only_with_the_flag() {
    let mut server = TestServer::start(&bin()).expect("start");
    let dir = server.dir.path().to_path_buf();
    // A factory certificate's key never leaves the device, even when asked.
    let factory_only = dir.join("factory.age");
    export(&server, json!({"passphrase": PASSPHRASE, "include_certificate": true}), &factory_only);
    let opened =
        portcullis::backup::open(&std::fs::read(&factory_only).expect("file"), PASSPHRASE).expect("opens");
    assert!(opened.certificate.is_none() && !opened.info.includes_certificate);

    let (status, view) = server.admin(
        "POST",
        "/api/v1/certificate/generate",
        Some(
            json!({"common_name": "backup.portcullis.test", "key_type": "ecdsa-p256", "validity_days": 365}),
        ),
    );
    assert_eq!(status, 200, "{view}");
    let original = fingerprint(&server);
    let without = dir.join("without.age");
    let with = dir.join("with.age");
    export(&server, json!({"passphrase": PASSPHRASE}), &without);
    export(&server, json!({"passphrase": PASSPHRASE, "include_certificate": true}), &with);
    let carried = portcullis::backup::open(&std::fs::read(&with).expect("file"), PASSPHRASE).expect("opens");
    assert!(carried.certificate.is_some() && carried.info.includes_certificate);
    assert!(
        portcullis::backup::open(&std::fs::read(&without).expect("file"), PASSPHRASE)
            .expect("opens")
            .certificate
            .is_none()
    );

    wiped(&mut server);
    let own = fingerprint(&server);
    assert_ne!(own, original);

    let (status, answer) = import(&server, &without, PASSPHRASE, &["include_certificate=true"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["certificate"], json!("none"));
    let (status, answer) = import(&server, &with, PASSPHRASE, &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["certificate"], json!("skipped"), "{answer}");
    assert_eq!(fingerprint(&server), own, "the device keeps its own certificate");
    let (status, answer) = import(&server, &with, PASSPHRASE, &["include_certificate=true"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["certificate"], json!("installed"), "{answer}");
    assert_eq!(fingerprint(&server), original, "the backup's certificate is in use");
    let (_, served) = run(
        "sh",
        &[
            "-c",
            &format!(
                "openssl s_client -connect 127.0.0.1:{} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
                server.https_port
            ),
        ],
    )
    .1
    .split_once('=')
    .map(|(a, b)| (a.to_string(), b.trim().replace(':', "").to_ascii_lowercase()))
    .unwrap_or_default();
    assert_eq!(served, original.replace(':', "").to_ascii_lowercase(), "served to new connections");
    let (status, answer) = import(&server, &with, PASSPHRASE, &["include_certificate=true"]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["certificate"], json!("unchanged"), "{answer}");
}

/// Imports from the loopback address `source` with curl; status and JSON answer.
fn import_from(server: &TestServer, source: &str, file: &Path, extra: &[&str]) -> (u16, Value) {
    let mut args = vec![
        "-sk".to_string(),
        "--interface".into(),
        source.into(),
        "--max-time".into(),
        "60".into(),
        "-u".into(),
        format!("admin:{ADMIN_PASSWORD}"),
        "-F".into(),
        format!("file=@{}", file.display()),
        "-F".into(),
        format!("passphrase={PASSPHRASE}"),
    ];
    for e in extra {
        args.push("-F".into());
        args.push((*e).to_string());
    }
    args.extend(["-w".into(), "\n%{http_code}".into(), server.url("/api/v1/config/import")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, err) = run("curl", &args);
    let (body, status) = out.rsplit_once('\n').unwrap_or_else(|| panic!("curl: {out} {err}"));
    (status.trim().parse().expect("status"), serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn a_backup_whose_rules_deny_the_requester_is_refused_or_forced_provisionally_as_a_set_is() {
    let source = TestServer::start(&bin()).expect("start");
    configured(&source);
    let (status, body) = source.admin(
        "PUT",
        "/api/v1/access-control",
        Some(json!({"enabled": true, "rules": [{"source": "10.9.0.0/16", "kind": "deny"}, {"source": "127.0.0.2/32", "kind": "deny"}]})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(source.admin("POST", "/api/v1/config/store", None).0, 200);
    let out = source.dir.path().join("clone.age");
    export(&source, json!({"passphrase": PASSPHRASE}), &out);

    // Another device, the import sent from the address the backup's rules deny.
    let target = TestServer::start(&bin()).expect("start");
    let users_before = target.admin("GET", "/api/v1/users", None).1;
    let (status, answer) = import_from(&target, "127.0.0.2", &out, &[]);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], json!("would_lock_out"), "{answer}");
    assert_eq!(
        target.admin("GET", "/api/v1/access-control", None).1["enabled"],
        json!(false),
        "nothing changed"
    );
    assert_eq!(target.admin("GET", "/api/v1/users", None).1, users_before, "nothing changed");

    let (status, answer) = import_from(&target, "127.0.0.2", &out, &["force=true"]);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["provisional"], json!(true), "{answer}");
    assert_eq!(answer["confirm"], json!("POST /api/v1/config/confirm"));
    assert_eq!(answer["settings"]["certificate"], json!("none"), "{answer}");
    assert!(answer["settings"]["changed_sections"].to_string().contains("access_control"), "{answer}");
    // Store refuses a change still waiting; confirmed from an allowed address, it stays.
    assert_eq!(target.admin("POST", "/api/v1/config/store", None).0, 409);
    let (status, body) = target.admin("POST", "/api/v1/config/confirm", None);
    assert_eq!(status, 200, "{body}");
    assert_configured(&target);
    assert_eq!(
        target.admin("GET", "/api/v1/access-control", None).1["rules"][1]["source"],
        json!("127.0.0.2")
    );
}

#[test]
fn only_administrators_export_and_import_and_short_passphrases_are_refused() {
    let server = TestServer::start(&bin()).expect("start");
    assert_eq!(
        server.admin("PUT", "/api/v1/users/viewer", Some(json!({"password": "viewer-password"}))).0,
        200
    );
    let out = server.dir.path().join("b.age");
    let (status, _) =
        export_as(&server, "viewer", "viewer-password", &json!({"passphrase": PASSPHRASE}), &out);
    assert_eq!(status, 403);
    let (status, headers) =
        export_as(&server, "admin", ADMIN_PASSWORD, &json!({"passphrase": "eleven char"}), &out);
    assert_eq!(status, 400, "{headers}");
    let answer: Value = serde_json::from_slice(&std::fs::read(&out).expect("answer")).expect("json");
    assert_eq!(answer["error"]["code"], json!("passphrase_too_short"), "{answer}");
    assert_eq!(answer["error"]["field"], json!("passphrase"), "{answer}");
    export(&server, json!({"passphrase": PASSPHRASE}), &out);
    let url = server.url("/api/v1/config/import");
    let (status, answer) = import_at(&url, "viewer", "viewer-password", &out, PASSPHRASE, &[]);
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = import(&server, &out, "", &[]);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["field"], json!("passphrase"), "{answer}");
    let events = events(&server);
    assert_eq!(events.matches("config_exported").count(), 1, "one export made: {events}");
}

/// `portcullis ARGS` with `env`; exit code, standard error.
fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("PORTCULLIS_BACKUP_PASSPHRASE")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_command_line_exports_and_imports_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one: PathBuf = dir.path().join("one");
    let two: PathBuf = dir.path().join("two");
    let (one, two) = (one.to_str().expect("utf8"), two.to_str().expect("utf8"));
    let file = dir.path().join("one.age");
    let file = file.to_str().expect("utf8");
    let env = [("PORTCULLIS_BACKUP_PASSPHRASE", PASSPHRASE)];
    assert_eq!(
        portcullis(
            &["user", "add", "admin", "--group", "admins", "--data-dir", one],
            &[("PORTCULLIS_PASSWORD", OPERATOR_PASSWORD)]
        )
        .0,
        0
    );
    let (code, err) = portcullis(
        &["config", "set", "intrusion_detection.notification_threshold", "9", "--data-dir", one],
        &[],
    );
    assert_eq!(code, 0, "{err}");

    // The passphrase never on the command line; a short one refused.
    let (code, err) = portcullis(&["config", "export", "--data-dir", one, "--output", file], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("PORTCULLIS_BACKUP_PASSPHRASE") && err.lines().count() == 1, "{err}");
    let (code, err) = portcullis(
        &["config", "export", "--data-dir", one, "--output", file],
        &[("PORTCULLIS_BACKUP_PASSPHRASE", "too short")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("passphrase_too_short") && err.lines().count() == 1, "{err}");
    assert!(!Path::new(file).exists());

    let (code, err) = portcullis(&["config", "export", "--data-dir", one, "--output", file], &env);
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(file).expect("file").permissions().mode() & 0o777, 0o600);

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase at all\n").expect("write");
    let (code, err) = portcullis(
        &["config", "import", "--data-dir", two, "--passphrase-file", wrong.to_str().expect("utf8"), file],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.starts_with("portcullis: wrong_passphrase: ") && err.lines().count() == 1, "{err}");
    assert!(!Path::new(two).join("config.json").exists(), "nothing written");

    let (code, err) = portcullis(&["config", "import", "--data-dir", two, file], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stored"), "{err}");
    let (_, out, _) = run(
        bin().to_str().expect("utf8"),
        &["config", "get", "intrusion_detection.notification_threshold", "--data-dir", two],
    );
    assert_eq!(out.trim(), "9");
    let (_, users, _) = run(bin().to_str().expect("utf8"), &["user", "list", "--data-dir", two]);
    assert!(users.contains("admin\tadmins"), "{users}");
    let mut server = TestServer::start(&bin()).expect("start");
    server.kill();
    std::fs::remove_dir_all(server.data_dir()).expect("wipe");
    let (code, err) = portcullis(
        &["config", "import", "--data-dir", server.data_dir().to_str().expect("utf8"), file],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    server.restart().expect("restart");
    let (status, ws) = server.request_as("admin", OPERATOR_PASSWORD, "GET", "/api/v1/webserver", None);
    assert_eq!(status, 200, "the account's password came with the backup: {ws}");
    assert_eq!(ws["intrusion_detection"]["notification_threshold"], json!(9));
}
