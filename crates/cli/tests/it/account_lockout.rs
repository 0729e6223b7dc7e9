//! Limits per account (issue 22, item 3): an attacker spreading guesses at
//! one account over many addresses, each under the per-client threshold,
//! locks that account's password logins for a while; its API tokens, other
//! accounts and the console keep working.

use portcullis_testkit::{ADMIN_PASSWORD, TestServer, curl_status, run};
use serde_json::{Value, json};

use crate::bin;

/// Status and JSON body of curl from `source` with curl options `extra`.
fn curl_json(source: &str, url: &str, extra: &[&str]) -> (u16, Value, String) {
    let mut args = vec!["-s", "-i", "--interface", source, "--max-time", "10"];
    args.extend_from_slice(extra);
    args.push(url);
    let (_, out, _) = run("curl", &args);
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null), out)
}

#[test]
fn guesses_spread_over_addresses_lock_the_accounts_password_logins_not_its_tokens() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(ws["intrusion_detection"]["account_lockout_threshold"], 0, "factory default: off");
    assert_eq!(ws["intrusion_detection"]["account_lockout_minutes"], 15);
    // The same validation as the rest: refused at its field, nothing changed.
    ws["intrusion_detection"]["account_lockout_threshold"] = json!(3);
    let (status, e) = server.admin("PUT", "/api/v1/webserver", Some(ws.clone()));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["field"], "intrusion_detection.account_lockout_threshold");
    ws["intrusion_detection"]["account_lockout_threshold"] = json!(5);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    let (status, made) =
        server.admin("POST", "/api/v1/tokens", Some(json!({"name": "ops", "scope": "administrator"})));
    assert_eq!(status, 201);
    let bearer = format!("Authorization: Bearer {}", made["token"].as_str().expect("secret"));
    assert_eq!(
        server
            .admin(
                "PUT",
                "/api/v1/users/viewer",
                Some(json!({"group": "users", "password": "viewer password"}))
            )
            .0,
        200
    );
    let url = server.url("/api/v1/webserver");
    // Five addresses, one guess each: far under the per-client threshold (10).
    for i in 2..=6 {
        assert_eq!(curl_status(&format!("127.0.0.{i}"), &url, &["-u", "admin:wrong-guess"]), 401);
    }
    let right = format!("admin:{ADMIN_PASSWORD}");
    let (status, e, raw) = curl_json("127.0.0.7", &url, &["-u", &right]);
    assert_eq!(status, 429, "{raw}");
    assert_eq!(e["error"]["code"], "account_locked");
    assert!(raw.to_ascii_lowercase().contains("retry-after:"), "{raw}");
    let login = format!(r#"{{"user": "admin", "password": "{ADMIN_PASSWORD}"}}"#);
    let (status, e, _) = curl_json(
        "127.0.0.8",
        &server.url("/api/v1/session"),
        &["-H", "Content-Type: application/json", "--data", &login],
    );
    assert_eq!((status, e["error"]["code"].as_str()), (429, Some("account_locked")), "the UI's login too");
    // Its tokens, other accounts and other addresses' blocks are untouched.
    assert_eq!(curl_status("127.0.0.7", &url, &["-H", &bearer]), 200);
    assert_eq!(curl_status("127.0.0.7", &url, &["-u", "viewer:viewer password"]), 200);
    let (_, blocked, _) = curl_json("127.0.0.1", &server.url("/api/v1/blocked"), &["-H", &bearer]);
    assert_eq!(blocked, json!([]), "no address is blocked");
    let (_, events, _) = curl_json("127.0.0.1", &server.url("/api/v1/events?limit=1000"), &["-H", &bearer]);
    let locked: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "account_locked")
        .collect();
    assert_eq!(locked.len(), 1, "{events}");
    assert_eq!(locked[0]["details"]["account"], "admin");
    // Unknown names lock nothing (and so cannot fill a table).
    for i in 2..=7 {
        assert_eq!(curl_status(&format!("127.0.0.{i}"), &url, &["-u", "nobody:x"]), 401);
    }
    let (_, events, _) = curl_json("127.0.0.1", &server.url("/api/v1/events?limit=1000"), &["-H", &bearer]);
    let locks =
        events["events"].as_array().expect("events").iter().filter(|e| e["kind"] == "account_locked").count();
    assert_eq!(locks, 1);
    // A Reboot lifts the lockout, as it lifts blocks.
    assert_eq!(curl_status("127.0.0.1", &server.url("/api/v1/reboot"), &["-X", "POST", "-H", &bearer]), 200);
    assert_eq!(curl_status("127.0.0.7", &url, &["-u", &right]), 200);
}
