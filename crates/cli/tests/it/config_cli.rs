//! `portcullis config get KEY` and `config set KEY VALUE`: one setting by its
//! path in the API's JSON, offline, checked as the API checks it.

use std::path::Path;

use portcullis_testkit::{TestServer, run};
use serde_json::{Value, json};

use crate::bin;

fn portcullis(args: &[&str]) -> (i32, String, String) {
    run(bin().to_str().expect("utf8 path"), args)
}

fn get(data: &str, key: &str) -> Value {
    let (code, out, err) = portcullis(&["config", "get", key, "--data-dir", data]);
    assert_eq!(code, 0, "get {key}: {err}");
    assert_eq!(out.lines().count(), 1, "one line of JSON: {out}");
    serde_json::from_str(&out).expect("get prints JSON")
}

fn set(data: &str, key: &str, value: &str) -> (i32, String) {
    let (code, _, err) = portcullis(&["config", "set", key, value, "--data-dir", data]);
    (code, err)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[test]
fn get_prints_the_factory_defaults_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let data = data.to_str().expect("utf8");
    assert_eq!(get(data, "intrusion_detection.notification_threshold"), json!(10));
    assert_eq!(get(data, "http_ports"), json!([80]));
    assert_eq!(get(data, "webserver.http_ports[0]"), json!(80));
    assert_eq!(get(data, "https_port"), Value::Null);
    assert_eq!(get(data, "access_control.enabled"), json!(false));
    assert_eq!(get(data, "intrusion_detection")["timeout_minutes"], json!(60));
}

#[test]
fn set_then_get_and_the_next_start_runs_it() {
    let mut server = TestServer::start(&bin()).expect("start");
    let data = server.data_dir();
    let data = data.to_str().expect("utf8").to_string();
    server.kill();
    let (code, err) = set(&data, "intrusion_detection.notification_threshold", "7");
    assert_eq!(code, 0, "{err}");
    let (code, err) = set(&data, "allowed_hosts", r#"["camera.example.com"]"#);
    assert_eq!(code, 0, "{err}");
    let (code, err) = set(&data, "hsts_max_age_seconds", "86400");
    assert_eq!(code, 0, "{err}");
    assert_eq!(get(&data, "intrusion_detection.notification_threshold"), json!(7));
    assert_eq!(get(&data, "allowed_hosts"), json!(["camera.example.com"]));
    assert_eq!(get(&data, "hsts_max_age_seconds"), json!(86400));
    let stored: Value =
        serde_json::from_slice(&read(&Path::new(&data).join("config.json"))).expect("config.json");
    assert_eq!(stored["webserver"]["intrusion_detection"]["notification_threshold"], json!(7));

    server.restart().expect("restart");
    let (status, running) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(status, 200, "{running}");
    assert_eq!(running["intrusion_detection"]["notification_threshold"], json!(7));
    assert_eq!(running["allowed_hosts"], json!(["camera.example.com"]));
    assert_eq!(running["hsts_max_age_seconds"], json!(86400));
    let (_, status) = server.admin("GET", "/api/v1/config/status", None);
    assert_eq!(status["unsaved_changes"], json!(false), "set stores: {status}");
    // Recorded as the API's Set and Store are.
    let (_, events) = server.admin("GET", "/api/v1/events?limit=1000", None);
    let events = events.to_string();
    assert!(events.contains("webserver.intrusion_detection.notification_threshold"), "{events}");
    assert!(events.contains("config_stored"), "{events}");
}

#[test]
fn a_refused_value_names_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("d");
    let data = data_path.to_str().expect("utf8");
    let (code, err) = set(data, "intrusion_detection.notification_threshold", "8");
    assert_eq!(code, 0, "{err}");
    let config = read(&data_path.join("config.json"));
    let events = read(&data_path.join("events.json"));
    for (key, value, line) in [
        (
            "intrusion_detection.notification_threshold",
            "3",
            "portcullis: intrusion_detection.notification_threshold: out_of_range: ",
        ),
        ("http_ports[0]", "70000", "portcullis: http_ports[0]: invalid_value: "),
        ("http_ports", "[8080, 8080]", "portcullis: http_ports"),
        ("access_control.enabled", "maybe", "portcullis: access_control.enabled: invalid_value: "),
        ("intrusion_detection.email_profile", "nobody", "portcullis: intrusion_detection.email_profile: "),
        ("intrusion_detection", r#"{"enabled": true, "enabled": false}"#, "duplicate_key"),
    ] {
        let (code, err) = set(data, key, value);
        assert_eq!(code, 1, "{key} {value}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with(line) || err.contains(line), "{key} {value}: {err}");
        assert_eq!(read(&data_path.join("config.json")), config, "{key}: the stored file is untouched");
        assert_eq!(read(&data_path.join("events.json")), events, "{key}: nothing recorded");
    }
    assert_eq!(get(data, "intrusion_detection.notification_threshold"), json!(8));
}

#[test]
fn an_unknown_key_says_where_to_look() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("d");
    let data = data_path.to_str().expect("utf8");
    let (code, err) = set(data, "access_control.rules", r#"[{"source": "10.0.0.0/8", "kind": "allow"}]"#);
    assert_eq!(code, 0, "{err}");
    let config = read(&data_path.join("config.json"));
    for key in [
        "notification_threshold",
        "intrusion_detection.nope",
        "http_ports[3]",
        "access_control.nope",
        "access_control.rules[0].nope",
    ] {
        let (code, err) = set(data, key, "5");
        assert_eq!(code, 2, "{key}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("unknown setting \"{key}\"")), "{err}");
        assert!(err.contains("portcullis config show"), "{err}");
        let (code, _, err) = portcullis(&["config", "get", key, "--data-dir", data]);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(err.contains("unknown setting"), "{err}");
    }
    assert_eq!(read(&data_path.join("config.json")), config, "nothing stored");
    assert_eq!(get(data, "access_control.rules[0].source"), json!("10.0.0.0/8"));
}

#[test]
fn set_is_refused_while_a_server_runs_on_the_folder() {
    let server = TestServer::start(&bin()).expect("start");
    let data = server.data_dir();
    let config = read(&data.join("config.json"));
    let data = data.to_str().expect("utf8");
    let (code, err) = set(data, "intrusion_detection.notification_threshold", "7");
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("in use by a running portcullis server"), "{err}");
    assert_eq!(read(&server.data_dir().join("config.json")), config);
    // Reading works meanwhile (the stored value).
    assert_eq!(get(data, "intrusion_detection.notification_threshold"), json!(10));
    let (_, running) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(running["intrusion_detection"]["notification_threshold"], json!(10));
}

#[cfg(feature = "email")]
#[test]
fn secrets_are_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("d");
    let data = data_path.to_str().expect("utf8");
    let secret = "Sm7p-secret-4711";
    let profile = json!({
        "server": "mail.example.com", "username": "camera", "password": secret,
        "from": "camera@example.com", "to": ["ops@example.com"]
    })
    .to_string();
    let (code, err) = set(data, "profiles.email.ops", &profile);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(secret), "{err}");
    // Another field of the profile: the password stays.
    let (code, err) = set(data, "profiles.email.ops.port", "2525");
    assert_eq!(code, 0, "{err}");
    let stored = String::from_utf8(read(&data_path.join("config.json"))).expect("utf8");
    assert!(stored.contains(secret), "the password is kept in the stored file");
    for key in ["profiles", "profiles.email", "profiles.email.ops"] {
        let shown = get(data, key);
        assert!(!shown.to_string().contains(secret), "{key}: {shown}");
    }
    assert_eq!(get(data, "profiles.email.ops.port"), json!(2525));
    // Not JSON: the string itself (the profile now exists).
    let (code, err) = set(data, "intrusion_detection.email_profile", "ops");
    assert_eq!(code, 0, "{err}");
    assert_eq!(get(data, "intrusion_detection.email_profile"), json!("ops"));
    let (code, out, err) = portcullis(&["config", "get", "profiles.email.ops.password", "--data-dir", data]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("profiles.email.ops.password: a secret is never read back"), "{err}");
    assert!(!out.contains(secret) && !err.contains(secret));
}

#[test]
fn set_opens_no_port_offline() {
    // A port another program holds now: offline, the setting is checked and
    // stored, and the server opens it at its next start (where it would be
    // refused then, with the port named).
    let held = std::net::TcpListener::bind(("0.0.0.0", 0)).expect("bind");
    let port = held.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("d");
    let data = data_path.to_str().expect("utf8");
    let (code, err) = set(data, "http_ports", &format!("[{port}]"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(get(data, "http_ports"), json!([port]));
}

#[test]
fn refusals_carry_the_api_s_field_and_code() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, factory) = server.admin("GET", "/api/v1/webserver", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("d");
    let data = data_path.to_str().expect("utf8");
    for (key, value, pointer) in [
        (
            "intrusion_detection.notification_threshold",
            json!(3),
            "/intrusion_detection/notification_threshold",
        ),
        ("intrusion_detection.timeout_minutes", json!(0), "/intrusion_detection/timeout_minutes"),
        ("intrusion_detection.email_profile", json!("nobody"), "/intrusion_detection/email_profile"),
        ("http_ports", json!([8080, 8080]), "/http_ports"),
        ("http_ports", json!([0]), "/http_ports"),
        ("confirm_timeout_seconds", json!(5), "/confirm_timeout_seconds"),
        ("hsts_max_age_seconds", json!(-1), "/hsts_max_age_seconds"),
        ("allowed_hosts", json!(["http://camera.example.com/"]), "/allowed_hosts"),
        ("http_enabled", json!("yes"), "/http_enabled"),
    ] {
        let mut body = factory.clone();
        *body.pointer_mut(pointer).expect("a setting of the dialog") = value.clone();
        let (status, answer) = server.admin("PUT", "/api/v1/webserver", Some(body));
        assert_eq!(status, 400, "{key} {value}: {answer}");
        let (field, code) = (&answer["error"]["field"], &answer["error"]["code"]);
        let (exit, err) = set(data, key, &value.to_string());
        assert_eq!(exit, 1, "{key} {value}: {err}");
        let expected =
            format!("portcullis: {}: {}: ", field.as_str().expect("field"), code.as_str().expect("code"));
        assert!(err.starts_with(&expected), "{key} {value}: the API said {answer}, the command line {err}");
    }
    // Other sections: the command line names the field with its section, as the key does.
    let (_, factory) = server.admin("GET", "/api/v1/access-control", None);
    for (key, value, pointer) in [
        ("access_control.rules", json!([{"source": "10.0.0.300/8", "kind": "allow"}]), "/rules"),
        ("access_control.rules", json!([{"source": "10.0.0.0/8", "kind": "maybe"}]), "/rules"),
        ("access_control.no_match", json!("perhaps"), "/no_match"),
        ("access_control.trusted_proxies", json!(["x"]), "/trusted_proxies"),
    ] {
        let mut body = factory.clone();
        *body.pointer_mut(pointer).expect("a setting of the section") = value.clone();
        let (status, answer) = server.admin("PUT", "/api/v1/access-control", Some(body));
        assert_eq!(status, 400, "{key} {value}: {answer}");
        let field = answer["error"]["field"].as_str().expect("field");
        let field = field.strip_prefix("access_control.").unwrap_or(field);
        let code = answer["error"]["code"].as_str().expect("code");
        let (exit, err) = set(data, key, &value.to_string());
        assert_eq!(exit, 1, "{key} {value}: {err}");
        let expected = format!("portcullis: access_control.{field}: {code}: ");
        assert!(err.starts_with(&expected), "{key} {value}: the API said {answer}, the command line {err}");
    }
}

#[test]
fn the_fleet_sections_are_set_too_and_their_secrets_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_path = dir.path().join("d");
    let data = data_path.to_str().expect("utf8");
    let key = "Bk-4711-never-shown";
    let crowdsec = json!({
        "enabled": true, "lapi_url": "http://127.0.0.1:8080", "bouncer_key": key, "poll_interval_seconds": 10
    })
    .to_string();
    let (code, err) = set(data, "crowdsec", &crowdsec);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(key), "{err}");
    // One field: the bouncer key stays.
    let (code, err) = set(data, "crowdsec.poll_interval_seconds", "30");
    assert_eq!(code, 0, "{err}");
    let stored = String::from_utf8(read(&data_path.join("config.json"))).expect("utf8");
    assert!(stored.contains(key), "the bouncer key is kept in the stored file");
    assert!(!get(data, "crowdsec").to_string().contains(key));
    assert_eq!(get(data, "crowdsec.poll_interval_seconds"), json!(30));
    let syslog =
        json!({"enabled": true, "destinations": [{"address": "127.0.0.1:5514", "transport": "udp"}]})
            .to_string();
    let (code, err) = set(data, "syslog", &syslog);
    assert_eq!(code, 0, "{err}");
    assert_eq!(get(data, "syslog.destinations[0].transport"), json!("udp"));
    let before = read(&data_path.join("config.json"));
    let (code, err) = set(data, "syslog.destinations[0].transport", "carrier-pigeon");
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("syslog.destinations"), "names the field: {err}");
    assert_eq!(read(&data_path.join("config.json")), before, "a refused value changes nothing");
}
