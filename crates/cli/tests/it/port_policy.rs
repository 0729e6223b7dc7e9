//! Issue 21 item 14: a bind address per listener and a policy per port (the
//! seed's two ports: one for the LAN with the admin UI, one for the Internet
//! with the web content only), applied at Set through the listener guard.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use portcullis_testkit::{ADMIN_PASSWORD, Options, TestServer, free_port, run};
use serde_json::{Value, json};

use crate::bin;

/// A plain GET to `address:port` (no credentials unless `auth`): the whole
/// answer, or None when the connection is refused.
fn get_at(address: &str, port: u16, path: &str, auth: bool) -> Option<String> {
    let target = SocketAddr::new(address.parse::<IpAddr>().expect("ip"), port);
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let credentials = if auth {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
        format!("Authorization: Basic {token}\r\n")
    } else {
        String::new()
    };
    write!(s, "GET {path} HTTP/1.1\r\nHost: {address}\r\n{credentials}Connection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The JSON body of an answer.
fn body(answer: &str) -> Value {
    answer.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null)
}

/// A request as admin to `address:port`.
fn admin_at(address: &str, port: u16, method: &str, path: &str, json: Option<Value>) -> (u16, Value) {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut req = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            format!("http://{address}:{port}{path}"),
        )
        .basic_auth("admin", Some(ADMIN_PASSWORD));
    if let Some(b) = json {
        req = req.json(&b);
    }
    match req.send() {
        Ok(r) => (r.status().as_u16(), r.json().unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

fn distinct_ports(n: usize, taken: &[u16]) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    while out.len() < n {
        let p = free_port();
        if !out.contains(&p) && !taken.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_lan_port_with_the_admin_ui_and_an_internet_port_with_the_web_content_only() {
    let www = tempfile::tempdir().expect("tempdir");
    std::fs::write(www.path().join("index.html"), "<h1>public</h1>").expect("write");
    let options = Options {
        extra_args: vec!["--webroot".into(), www.path().display().to_string()],
        ..Default::default()
    };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let main = server.http_ports[0];
    let ports = distinct_ports(3, &[main, server.https_port]);
    let (lan, internet, redirecting) = (ports[0], ports[1], ports[2]);
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_ports"] = json!([
        main,
        {"port": lan, "addresses": ["127.0.0.2"]},
        {"port": internet, "addresses": ["0.0.0.0"], "admin": false},
        {"port": redirecting, "redirect_to_https": true, "admin": false},
    ]);
    let (status, answer) = server.admin("PUT", "/api/v1/webserver", Some(s));
    // Made through `main`, which stays as it was: applied at once.
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["http_ports"][0], json!(main), "a plain port stays a bare number");
    assert_eq!(
        answer["http_ports"][1],
        json!({"port": lan, "addresses": ["127.0.0.2"], "redirect_to_https": null, "admin": true})
    );

    // The LAN port answers on 127.0.0.2 only; the Internet port on every address.
    assert!(
        get_at("127.0.0.2", lan, "/healthz", false)
            .expect("lan port on 127.0.0.2")
            .starts_with("HTTP/1.1 200")
    );
    assert!(get_at("127.0.0.1", lan, "/healthz", false).is_none(), "the LAN port is not bound on 127.0.0.1");
    for address in ["127.0.0.1", "127.0.0.2"] {
        let a = get_at(address, internet, "/healthz", false).expect("internet port on every address");
        assert!(a.starts_with("HTTP/1.1 200"), "{address}: {a}");
    }
    // `--listen 127.0.0.1` (the test server's) is the default of the ports that
    // name no address: the bare port is not on 127.0.0.2, the LAN port's own address wins.
    assert!(get_at("127.0.0.2", main, "/healthz", false).is_none(), "the bare port follows --listen");
    // The same through curl, as an operator would try it.
    let (_, code, _) = run(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{lan}/healthz")],
    );
    assert_ne!(code, "200", "curl reached the LAN port on 127.0.0.1");

    // The Internet port: the web content, and a clear 403 for the admin UI and API.
    let page = get_at("127.0.0.1", internet, "/", false).expect("webroot");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("<h1>public</h1>"), "{page}");
    let refused = get_at("127.0.0.1", internet, "/api/v1/webserver", true).expect("answer");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert_eq!(body(&refused)["error"]["code"], "admin_not_allowed", "{refused}");
    assert!(body(&refused)["error"]["message"].as_str().expect("message").contains(&internet.to_string()));
    let ui = get_at("127.0.0.1", internet, "/admin/", false).expect("answer");
    assert!(ui.starts_with("HTTP/1.1 403") && ui.contains("admin_not_allowed"), "{ui}");
    // The LAN port keeps the admin UI and API.
    let (code, _) = admin_at("127.0.0.2", lan, "GET", "/api/v1/webserver", None);
    assert_eq!(code, 200);

    // The redirecting port sends plain HTTP to the HTTPS port.
    let moved = get_at("127.0.0.1", redirecting, "/index.html?x=1", false).expect("answer");
    assert!(moved.starts_with("HTTP/1.1 308"), "{moved}");
    assert!(
        moved.contains(&format!("location: https://127.0.0.1:{}/index.html?x=1", server.https_port)),
        "{moved}"
    );
    assert!(get_at("127.0.0.1", main, "/index.html", false).expect("main").starts_with("HTTP/1.1 200"));

    // The listeners open now.
    let (_, open) = server.admin("GET", "/api/v1/listeners", None);
    assert_eq!(open.as_array().expect("list").len(), 5, "{open}");
}

#[test]
fn bad_entries_are_refused_with_their_field_and_nothing_changes() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, before) = server.admin("GET", "/api/v1/webserver", None);
    let port = distinct_ports(1, &[server.http_ports[0], server.https_port])[0];
    let main = server.http_ports[0];
    let cases = [
        (
            json!([main, {"port": port, "addresses": ["192.168.1.300"]}]),
            "http_ports[1].addresses[0]",
            "invalid_address",
        ),
        (
            json!([main, {"port": port, "addresses": ["127.0.0.2", "127.0.0.2"]}]),
            "http_ports[1].addresses[1]",
            "duplicate",
        ),
        (json!([main, {"port": main, "addresses": ["127.0.0.2"]}]), "http_ports[1]", "duplicate"),
        (
            json!([main, {"port": server.https_port, "addresses": ["127.0.0.2"]}]),
            "http_ports[1]",
            "port_conflict",
        ),
        (
            json!([main, {"port": port, "addresses": ["127.0.0.2"], "colour": "red"}]),
            "http_ports.1.colour",
            "unknown_field",
        ),
    ];
    for (ports, field, code) in cases {
        let mut s = before.clone();
        s["http_ports"] = ports.clone();
        let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(s));
        assert_eq!(status, 400, "{ports}: {err}");
        assert_eq!(
            (err["error"]["field"].as_str(), err["error"]["code"].as_str()),
            (Some(field), Some(code)),
            "{err}"
        );
    }
    // No port would answer the admin UI: refused too.
    let mut s = before.clone();
    s["http_ports"] = json!([{"port": main, "admin": false}]);
    s["https_admin"] = json!(false);
    let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(s));
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("no_admin_port")), "{err}");
    // An address the device does not have: the port cannot be opened.
    let mut s = before.clone();
    s["http_ports"] = json!([main, {"port": port, "addresses": ["192.0.2.1"]}]);
    let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(s));
    assert_eq!(status, 409, "{err}");
    let (_, after) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(after, before, "a refused Set changes nothing");
    let (_, open) = server.admin("GET", "/api/v1/listeners", None);
    assert_eq!(open.as_array().expect("list").len(), 2, "{open}");
}

#[test]
fn taking_the_admin_ui_off_the_port_in_use_is_provisional() {
    let server = TestServer::start(&bin()).expect("start");
    let main = server.http_ports[0];
    let lan = distinct_ports(1, &[main, server.https_port])[0];
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_ports"] = json!([main, {"port": lan, "addresses": ["127.0.0.2"]}]);
    let (status, _) = server.admin("PUT", "/api/v1/webserver", Some(s.clone()));
    assert_eq!(status, 200);
    // Through the LAN port, a Set that takes the admin UI off it could cut
    // the operator off: provisional, to confirm through a port that allows admin.
    s["http_ports"] = json!([main, {"port": lan, "addresses": ["127.0.0.2"], "admin": false}]);
    let (status, answer) = admin_at("127.0.0.2", lan, "PUT", "/api/v1/webserver", Some(s));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["provisional"], true);
    let (code, err) = admin_at("127.0.0.2", lan, "POST", "/api/v1/config/confirm", None);
    assert_eq!((code, err["error"]["code"].as_str()), (403, Some("admin_not_allowed")), "{err}");
    let (code, status) = admin_at("127.0.0.1", main, "POST", "/api/v1/config/confirm", None);
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["pending"], Value::Null);
    // Moving the LAN port to another address it was not reached on is
    // provisional as well (the operator's address would no longer be bound).
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_ports"] =
        json!([{"port": main, "addresses": ["127.0.0.3"]}, {"port": lan, "addresses": ["127.0.0.2"]}]);
    let (status, answer) = server.admin("PUT", "/api/v1/webserver", Some(s));
    assert_eq!(status, 202, "{answer}");
    assert!(get_at("127.0.0.3", main, "/healthz", false).expect("new address").starts_with("HTTP/1.1 200"));
    let (code, _) = admin_at("127.0.0.2", lan, "POST", "/api/v1/config/confirm", None);
    assert_eq!(code, 200);
    assert!(
        portcullis_testkit::wait_until(Duration::from_secs(15), || get_at(
            "127.0.0.1",
            main,
            "/healthz",
            false
        )
        .is_none()),
        "after the confirmation the port is bound to 127.0.0.3 only"
    );
}

#[test]
fn config_set_takes_port_objects_with_their_field_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let data = data.to_str().expect("utf8");
    let bin = bin();
    let bin = bin.to_str().expect("utf8");
    let value = r#"[8080, {"port": 8081, "addresses": ["192.168.1.1", "fd00::1"], "admin": false}]"#;
    let (code, _, err) = run(bin, &["config", "set", "http_ports", value, "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(bin, &["config", "get", "http_ports", "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        got,
        json!([8080, {"port": 8081, "addresses": ["192.168.1.1", "fd00::1"], "redirect_to_https": null, "admin": false}])
    );
    let (code, out, _) = run(bin, &["config", "get", "http_ports[1].addresses[1]", "--data-dir", data]);
    assert_eq!((code, out.trim()), (0, "\"fd00::1\""));
    let (code, _, err) =
        run(bin, &["config", "set", "https_addresses", r#"["10.0.0.1"]"#, "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    // A refused value: one line naming the field, nothing written.
    let before = std::fs::read(dir.path().join("d/config.json")).expect("stored");
    let (code, _, err) = run(
        bin,
        &[
            "config",
            "set",
            "http_ports",
            r#"[{"port": 8081, "addresses": ["10.0.0.x"]}]"#,
            "--data-dir",
            data,
        ],
    );
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("portcullis: http_ports[0].addresses[0]: invalid_address: "), "{err}");
    assert_eq!(std::fs::read(dir.path().join("d/config.json")).expect("stored"), before);
}

#[test]
fn ports_given_on_the_command_line_keep_their_policy_from_the_settings() {
    let options = Options { http_ports: 2, ..Default::default() };
    let mut server = TestServer::start_with(&bin(), options).expect("start");
    let (main, internet) = (server.http_ports[0], server.http_ports[1]);
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["http_ports"] = json!([main, {"port": internet, "admin": false}]);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    // `--http-port` names both ports at every start: the stored policy of each still applies.
    for step in ["reboot", "restart"] {
        if step == "reboot" {
            assert_eq!(server.admin("POST", "/api/v1/reboot", None).0, 200);
        } else {
            server.restart().expect("restart");
        }
        let refused = get_at("127.0.0.1", internet, "/api/v1/webserver", true).expect("answer");
        assert!(refused.starts_with("HTTP/1.1 403"), "after {step}: {refused}");
        assert_eq!(admin_at("127.0.0.1", main, "GET", "/api/v1/webserver", None).0, 200, "after {step}");
    }
}
