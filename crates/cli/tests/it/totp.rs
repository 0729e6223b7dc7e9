//! Two-step verification (issue 22, item 2) against the real binary: curl
//! as the browser (a cookie jar, the CSRF token), the codes computed here
//! from the enrolled secret with totp-rs as an authenticator app would, the
//! server's wall clock moved on with libfaketime instead of waiting for the
//! next 30-second step, Basic and a bearer token with curl, the offline
//! command line.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_testkit::{Options, TestServer, curl_status, run};
use serde_json::{Value, json};

use crate::bin;
use crate::clock::faked_wall_clock;

const PASSWORD: &str = "alice's password";

/// The server's wall clock, ahead of the real one by `offset` seconds.
struct Clock {
    file: PathBuf,
    offset: i64,
}

impl Clock {
    fn new(dir: &Path) -> Self {
        let file = dir.join("clock");
        std::fs::write(&file, "+0\n").expect("clock");
        Self { file, offset: 0 }
    }

    /// Moves the server's clock three steps on: the codes used so far are old.
    fn next_codes(&mut self) {
        self.offset += 90;
        std::fs::write(&self.file, format!("+{}\n", self.offset)).expect("clock");
    }

    /// The app's code for `secret` (base32) at the server's time now.
    fn code(&self, secret: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
        code_at(secret, (now + self.offset) as u64)
    }
}

/// The 6-digit code of a base32 `secret` at Unix time `time`, by totp-rs.
fn code_at(secret: &str, time: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).expect("base32");
    let totp = totp_rs::Builder::new().with_secret(secret).build().expect("a TOTP");
    totp.generate(time).to_string()
}

/// A different 6-digit code than `code`.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// curl with `args` to `url`: status, JSON body (Null if none), headers and body as text.
fn curl(url: &str, args: &[&str]) -> (u16, Value, String) {
    let mut all = vec!["-s", "-i", "--max-time", "10"];
    all.extend_from_slice(args);
    all.push(url);
    let (_, out, _) = run("curl", &all);
    let status = out.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null), out)
}

/// A person's browser: a cookie jar and the session's CSRF token.
struct Browser {
    jar: String,
    csrf: String,
}

impl Browser {
    fn new(dir: &Path, name: &str) -> Self {
        Self { jar: dir.join(format!("{name}.cookies")).display().to_string(), csrf: String::new() }
    }

    /// Logs in (`code` for the second factor); status and answer.
    fn login(&mut self, server: &TestServer, user: &str, password: &str, code: Option<&str>) -> (u16, Value) {
        self.login_from("127.0.0.1", server, user, password, code)
    }

    fn login_from(
        &mut self,
        source: &str,
        server: &TestServer,
        user: &str,
        password: &str,
        code: Option<&str>,
    ) -> (u16, Value) {
        let mut body = json!({"user": user, "password": password});
        if let Some(code) = code {
            body["code"] = json!(code);
        }
        let body = body.to_string();
        let (status, answer, raw) = curl(
            &server.url("/api/v1/session"),
            &[
                "--interface",
                source,
                "-c",
                &self.jar,
                "-H",
                "Content-Type: application/json",
                "--data",
                &body,
            ],
        );
        if status == 200 {
            self.csrf = answer["csrf_token"].as_str().expect("csrf").to_string();
        }
        assert!(status != 0, "{raw}");
        (status, answer)
    }

    /// A request of the session: status and answer.
    fn call(&self, server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let csrf = format!("X-CSRF-Token: {}", self.csrf);
        let mut args = vec!["-b", self.jar.as_str(), "-X", method, "-H", csrf.as_str()];
        let text = body.map(|b| b.to_string());
        if let Some(text) = &text {
            args.extend_from_slice(&["-H", "Content-Type: application/json", "--data", text]);
        }
        let (status, answer, _) = curl(&server.url(path), &args);
        (status, answer)
    }
}

/// A server on a faked clock with the account `alice` (group `users`).
fn server_with_alice(dir: &Path) -> (TestServer, Clock) {
    let clock = Clock::new(dir);
    let server =
        TestServer::start_with(&bin(), Options { env: faked_wall_clock(&clock.file), ..Default::default() })
            .expect("start");
    let (status, e) =
        server.admin("PUT", "/api/v1/users/alice", Some(json!({"group": "users", "password": PASSWORD})));
    assert_eq!(status, 200, "{e}");
    (server, clock)
}

/// Enrols alice's second factor through her session; her secret and recovery codes.
fn enrol(server: &TestServer, clock: &Clock, alice: &mut Browser) -> (String, Vec<String>) {
    assert_eq!(alice.login(server, "alice", PASSWORD, None).0, 200);
    let (status, started) = alice.call(server, "POST", "/api/v1/users/alice/totp", None);
    assert_eq!(status, 200, "{started}");
    let secret = started["secret"].as_str().expect("secret").to_string();
    let (status, confirmed) = alice.call(
        server,
        "POST",
        "/api/v1/users/alice/totp/confirm",
        Some(json!({"code": clock.code(&secret)})),
    );
    assert_eq!(status, 200, "{confirmed}");
    let codes: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    (secret, codes)
}

fn event_kinds(server: &TestServer) -> Vec<String> {
    let (_, events) = server.admin("GET", "/api/v1/events?limit=1000", None);
    events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

fn second_factor_of(server: &TestServer, name: &str) -> bool {
    let (_, users) = server.admin("GET", "/api/v1/users", None);
    let user = users.as_array().expect("users").iter().find(|u| u["name"] == name).cloned().expect("listed");
    user["second_factor"].as_bool().expect("a boolean")
}

#[test]
fn enrolment_then_logins_with_a_code_each_used_once_and_recovery_codes() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, mut clock) = server_with_alice(dir.path());
    let mut alice = Browser::new(dir.path(), "alice");
    assert_eq!(alice.login(&server, "alice", PASSWORD, None).0, 200);

    // A confirmation with no enrolment started is refused and changes nothing.
    let users_file = std::fs::read(server.data_dir().join("users.json")).expect("users.json");
    let (status, e) =
        alice.call(&server, "POST", "/api/v1/users/alice/totp/confirm", Some(json!({"code": "123456"})));
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("second_factor_not_pending")), "{e}");
    assert!(!second_factor_of(&server, "alice"));
    assert!(std::fs::read(server.data_dir().join("users.json")).expect("users.json") == users_file);

    // Started: the secret as text and as a QR code, not in force yet.
    let (status, started) = alice.call(&server, "POST", "/api/v1/users/alice/totp", None);
    assert_eq!(status, 200, "{started}");
    let secret = started["secret"].as_str().expect("secret").to_string();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = started["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/portcullis:alice?secret=") && uri.contains(&secret), "{uri}");
    assert!(started["qr_svg"].as_str().is_some_and(|s| s.contains("<svg")), "{started}");
    assert!(!second_factor_of(&server, "alice"), "pending, not active");
    let (status, e) = server.admin("POST", "/api/v1/users/alice/totp", None);
    assert_eq!((status, e["error"]["code"].as_str()), (403, Some("forbidden")), "only its own person");

    // Confirmed by the first code: a wrong one changes nothing.
    let confirm = "/api/v1/users/alice/totp/confirm";
    let wrong = other_than(&clock.code(&secret));
    let (status, e) = alice.call(&server, "POST", confirm, Some(json!({"code": wrong})));
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("second_factor_wrong")), "{e}");
    assert!(!second_factor_of(&server, "alice"));
    let first = clock.code(&secret);
    let (status, confirmed) = alice.call(&server, "POST", confirm, Some(json!({"code": first})));
    assert_eq!(status, 200, "{confirmed}");
    let recovery = confirmed["recovery_codes"].as_array().expect("codes").clone();
    assert_eq!(recovery.len(), 10);
    assert!(second_factor_of(&server, "alice"));
    let (status, e) = alice.call(&server, "POST", "/api/v1/users/alice/totp", None);
    assert_eq!((status, e["error"]["code"].as_str()), (409, Some("second_factor_exists")));

    // Basic is refused after the right password, said plainly; a wrong
    // password stays an ordinary failure.
    let url = server.url("/api/v1/webserver");
    let right = format!("alice:{PASSWORD}");
    let (status, e, raw) = curl(&url, &["-u", &right]);
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_account")), "{raw}");
    let message = e["error"]["message"].as_str().expect("message");
    assert!(message.contains("web UI") && message.contains("API token"), "{message}");
    assert!(raw.to_ascii_lowercase().contains("www-authenticate: bearer"), "{raw}");
    let (status, e, _) = curl(&url, &["-u", "alice:wrong password"]);
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("unauthorized")));
    // Its API tokens keep working: machines use those.
    let (status, made) = server.admin(
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "alice-vms", "scope": "read-only", "account": "alice"})),
    );
    assert_eq!(status, 201, "{made}");
    let bearer = format!("Authorization: Bearer {}", made["token"].as_str().expect("secret"));
    assert_eq!(curl_status("127.0.0.1", &url, &["-H", &bearer]), 200);

    // The login asks for the code; the confirmation's code is used already.
    let mut browser = Browser::new(dir.path(), "login");
    let (status, e) = browser.login(&server, "alice", PASSWORD, None);
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_required")), "{e}");
    let (status, e) = browser.login(&server, "alice", PASSWORD, Some(&first));
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_code_used")), "{e}");
    clock.next_codes();
    let code = clock.code(&secret);
    let (status, session) = browser.login(&server, "alice", PASSWORD, Some(&code));
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["second_factor"], true);
    assert_eq!(browser.call(&server, "GET", "/api/v1/session", None).0, 200, "the session works");
    let (status, e) = Browser::new(dir.path(), "replay").login(&server, "alice", PASSWORD, Some(&code));
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_code_used")), "replayed");
    // A wrong password with a right code is a wrong password.
    let (status, e) = Browser::new(dir.path(), "x").login(&server, "alice", "not it", Some(&code));
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("wrong_credentials")));

    // A recovery code works once, typed loosely.
    let one = recovery[0].as_str().expect("code");
    let typed = one.to_lowercase().replace('-', " ");
    let (status, _) = Browser::new(dir.path(), "r1").login(&server, "alice", PASSWORD, Some(&typed));
    assert_eq!(status, 200);
    let (status, e) = Browser::new(dir.path(), "r2").login(&server, "alice", PASSWORD, Some(one));
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_wrong")), "used once");

    let kinds = event_kinds(&server);
    assert!(kinds.iter().any(|k| k == "second_factor_enrolled"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "recovery_code_used").count(), 1, "{kinds:?}");

    // The secret is never shown again, nor logged; the recovery codes are
    // stored as hashes only; the accounts file stays 0600.
    for path in ["/api/v1/users", "/api/v1/users/alice", "/api/v1/events?limit=1000", "/api/v1/logfile"] {
        let (_, _, text) = server.admin_text(path);
        assert!(!text.contains(&secret), "{path}: {text}");
    }
    assert!(!server.log().contains(&secret), "server log");
    let data = server.data_dir();
    let users = std::fs::read_to_string(data.join("users.json")).expect("users.json");
    for code in &recovery {
        assert!(!users.contains(code.as_str().expect("code")), "a recovery code in clear");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("users.json")).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn wrong_codes_are_failed_logins_and_block_the_client_at_the_threshold() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, clock) = server_with_alice(dir.path());
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    let mut alice = Browser::new(dir.path(), "alice");
    let (secret, _) = enrol(&server, &clock, &mut alice);

    let wrong = other_than(&clock.code(&secret));
    let mut attacker = Browser::new(dir.path(), "attacker");
    for i in 1..=6 {
        let (status, e) = attacker.login_from("127.0.0.2", &server, "alice", PASSWORD, Some(&wrong));
        assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_wrong")), "attempt {i}");
    }
    assert_eq!(curl_status("127.0.0.2", &server.url("/healthz"), &[]), 0, "blocked at the connection");
    let (_, blocked) = server.admin("GET", "/api/v1/blocked", None);
    assert_eq!(blocked[0]["address"], "127.0.0.2", "{blocked}");
    let (_, log) = server.admin("GET", "/api/v1/logfile", None);
    let attack = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["client_ip"] == "127.0.0.2")
        .cloned()
        .expect("logged");
    assert_eq!((attack["authorized"].as_bool(), attack["user"].as_str()), (Some(false), Some("alice")));
    assert!(event_kinds(&server).iter().any(|k| k == "intrusion_alert"));
}

#[test]
fn an_administrator_the_person_and_the_command_line_reset_a_second_factor() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut server, mut clock) = server_with_alice(dir.path());
    let mut alice = Browser::new(dir.path(), "alice");
    let url = server.url("/api/v1/webserver");
    let basic = format!("alice:{PASSWORD}");

    // An administrator, for another account, without a code.
    enrol(&server, &clock, &mut alice);
    assert_eq!(curl_status("127.0.0.1", &url, &["-u", &basic]), 401);
    assert_eq!(
        server
            .admin("PUT", "/api/v1/users/bob", Some(json!({"group": "users", "password": "bob's password"})))
            .0,
        200
    );
    let (status, _) = server.request_as("bob", "bob's password", "DELETE", "/api/v1/users/alice/totp", None);
    assert_eq!(status, 403, "not another member of users");
    assert_eq!(server.admin("DELETE", "/api/v1/users/alice/totp", None).0, 204);
    assert!(!second_factor_of(&server, "alice"));
    assert_eq!(curl_status("127.0.0.1", &url, &["-u", &basic]), 200, "the password alone again");
    let (status, e) = server.admin("DELETE", "/api/v1/users/alice/totp", None);
    assert_eq!((status, e["error"]["code"].as_str()), (404, Some("not_found")));

    // Its person, only with a current code.
    clock.next_codes();
    let (secret, _) = enrol(&server, &clock, &mut alice);
    let reset = "/api/v1/users/alice/totp";
    let (status, e) = alice.call(&server, "DELETE", reset, None);
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
        (400, Some("required"), Some("code"))
    );
    let wrong = other_than(&clock.code(&secret));
    let (status, e) = alice.call(&server, "DELETE", reset, Some(json!({"code": wrong})));
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("second_factor_wrong")));
    clock.next_codes();
    let (status, e) = alice.call(&server, "DELETE", reset, Some(json!({"code": clock.code(&secret)})));
    assert_eq!(status, 204, "{e}");
    assert!(!second_factor_of(&server, "alice"));

    // The command line, offline, for an owner locked out of it.
    clock.next_codes();
    enrol(&server, &clock, &mut alice);
    assert_eq!(server.terminate(), Some(0), "a graceful stop keeps the event log");
    let data = server.data_dir();
    let data = data.to_str().expect("utf8");
    let cli = bin();
    let cli = cli.to_str().expect("utf8");
    let (_, list, _) = run(cli, &["user", "list", "--data-dir", data]);
    assert!(list.contains("alice\tusers\tsecond-factor\n") && list.contains("admin\tadmins\n"), "{list}");
    let (code, out, err) = run(cli, &["user", "second-factor-reset", "alice", "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((out.as_str(), err.lines().count()), ("", 1), "{err}");
    let (_, list, _) = run(cli, &["user", "list", "--data-dir", data]);
    assert!(list.contains("alice\tusers\n"), "{list}");
    let (code, _, err) = run(cli, &["user", "second-factor-reset", "alice", "--data-dir", data]);
    assert_ne!(code, 0);
    assert!(err.contains("no second factor") && err.lines().count() == 1, "{err}");
    server.restart().expect("start");
    assert_eq!(curl_status("127.0.0.1", &url, &["-u", &basic]), 200);
    let resets = event_kinds(&server).iter().filter(|k| *k == "second_factor_reset").count();
    assert_eq!(resets, 3, "the administrator's, the person's and the command line's");
}

/// Digest, like Basic, is refused for an account with a second factor
/// after its right password (curl negotiates Digest itself).
#[cfg(feature = "digest")]
#[test]
fn digest_is_refused_for_an_account_with_a_second_factor() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, clock) = server_with_alice(dir.path());
    assert_eq!(server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": true}))).0, 200);
    // Digest's secrets are derived when the password is next given.
    let (status, e) =
        server.admin("PUT", "/api/v1/users/alice", Some(json!({"group": "users", "password": PASSWORD})));
    assert_eq!(status, 200, "{e}");
    let url = server.url("/api/v1/webserver");
    let digest = |credentials: &str| -> (u16, Value) {
        let (_, out, _) = run("curl", &["-s", "--digest", "-u", credentials, "-w", "\n%{http_code}", &url]);
        let (body, status) = out.rsplit_once('\n').expect("status line");
        (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
    };
    let right = format!("alice:{PASSWORD}");
    assert_eq!(digest(&right).0, 200, "Digest works before the enrolment");
    let mut alice = Browser::new(dir.path(), "alice");
    enrol(&server, &clock, &mut alice);
    let (status, e) = digest(&right);
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_account")), "{e}");
    let (status, e) = digest("alice:not the password");
    assert_eq!((status, e["error"]["code"].as_str()), (401, Some("unauthorized")), "{e}");
}

/// Wrong codes count for the account too: spread over addresses, they lock
/// its password logins at the account threshold, right code or not.
#[test]
fn wrong_codes_from_many_addresses_lock_the_account() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, clock) = server_with_alice(dir.path());
    let (_, mut ws) = server.admin("GET", "/api/v1/webserver", None);
    ws["intrusion_detection"]["account_lockout_threshold"] = json!(5);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(ws)).0, 200);
    let mut alice = Browser::new(dir.path(), "alice");
    let (secret, _) = enrol(&server, &clock, &mut alice);
    let wrong = other_than(&clock.code(&secret));
    for i in 2..=6 {
        let (status, e) = Browser::new(dir.path(), "x").login_from(
            &format!("127.0.0.{i}"),
            &server,
            "alice",
            PASSWORD,
            Some(&wrong),
        );
        assert_eq!((status, e["error"]["code"].as_str()), (401, Some("second_factor_wrong")), "127.0.0.{i}");
    }
    let (status, e) = Browser::new(dir.path(), "y").login_from(
        "127.0.0.7",
        &server,
        "alice",
        PASSWORD,
        Some(&clock.code(&secret)),
    );
    assert_eq!((status, e["error"]["code"].as_str()), (429, Some("account_locked")), "{e}");
    assert!(event_kinds(&server).iter().any(|k| k == "account_locked"));
}

/// A backup carries the second factor: after it was reset, importing the
/// backup brings back the same secret (the app's codes work again) and the
/// unused recovery codes, and the file shows none of them in clear.
#[cfg(feature = "backup")]
#[test]
fn a_backup_brings_the_second_factor_back_with_its_unused_recovery_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, mut clock) = server_with_alice(dir.path());
    let mut alice = Browser::new(dir.path(), "alice");
    let (secret, recovery) = enrol(&server, &clock, &mut alice);
    let passphrase = "correct horse battery staple";
    let out = dir.path().join("backup.age");
    crate::backup::export(&server, json!({"passphrase": passphrase}), &out);
    let file = String::from_utf8_lossy(&std::fs::read(&out).expect("file")).to_string();
    for shown in std::iter::once(&secret).chain(&recovery) {
        assert!(!file.contains(shown.as_str()), "the backup shows {shown} in clear");
    }

    // Reset by an administrator, then the backup imported.
    assert_eq!(server.admin("DELETE", "/api/v1/users/alice/totp", None).0, 204);
    assert!(!second_factor_of(&server, "alice"));
    let (status, answer) = crate::backup::import(&server, &out, passphrase, &[]);
    assert_eq!(status, 200, "import: {answer}");
    assert!(second_factor_of(&server, "alice"), "the second factor came back");

    // The same secret: the app's next code logs in; so does a recovery code, once.
    let mut again = Browser::new(dir.path(), "alice-again");
    assert_eq!(again.login(&server, "alice", PASSWORD, None).0, 401, "a code is asked for");
    clock.next_codes();
    let (status, answer) = again.login(&server, "alice", PASSWORD, Some(&clock.code(&secret)));
    assert_eq!(status, 200, "{answer}");
    let mut third = Browser::new(dir.path(), "alice-third");
    assert_eq!(third.login(&server, "alice", PASSWORD, Some(&recovery[0])).0, 200);
    assert_eq!(
        third.login(&server, "alice", PASSWORD, Some(&recovery[0])).0,
        401,
        "a recovery code works once"
    );
}
