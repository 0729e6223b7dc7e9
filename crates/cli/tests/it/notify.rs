//! Notifications from the real binary: an intrusion alert reaches a real SMTP
//! server (aiosmtpd), a TCP listener and a SIP callee (sipp) with RTP audio;
//! the "send test" action; secrets never read back; failures after retries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_testkit::{Options, TestServer, curl_status, free_port, run, wait_until};
use serde_json::{Value, json};

use crate::bin;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../notify/tests/peers")
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd under Debian's python3 (where python3-aiosmtpd is installed).
fn smtp_sink(out: &std::path::Path) -> (Peer, u16) {
    let port = free_port();
    let mut child = Command::new("/usr/bin/python3")
        .arg(peers_dir().join("smtp_sink.py"))
        .args(["--port", &port.to_string(), "--mode", "plain", "--out"])
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the SMTP sink (python3-aiosmtpd)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("READY line");
    assert_eq!(line.trim(), "READY");
    (Peer(child), port)
}

/// Accepts connections and keeps what each sends (a raw TCP IP Notify, or an HTTP request answered 200).
fn receiver(http: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut conn = conn;
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
                let text = String::from_utf8_lossy(&data);
                if http && let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if data.len() >= end + 4 + len {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                        break;
                    }
                }
            }
            if let Ok(mut g) = sink.lock() {
                g.push(String::from_utf8_lossy(&data).into_owned());
            }
        }
    });
    (port, got)
}

fn events_of(server: &TestServer, kind: &str) -> Vec<Value> {
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    body["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

#[test]
fn an_intrusion_alert_reaches_mail_network_and_phone_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mail_out = dir.path().join("mail");
    std::fs::create_dir_all(&mail_out).expect("mkdir");
    let (_smtp, smtp_port) = smtp_sink(&mail_out);
    let (tcp_port, tcp_got) = receiver(false);
    let (http_port, http_got) = receiver(true);
    // sipp answers the call and sends its SDP pointing at our UDP socket, which counts RTP packets.
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    rtp.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let sip_port = free_port();
    let _sipp = Peer(
        Command::new("sipp")
            .arg("-sf")
            .arg(peers_dir().join("uas_media.xml"))
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &sip_port.to_string(),
                "-t",
                "u1",
                "-mi",
                "127.0.0.1",
                "-mp",
                &free_port().to_string(),
            ])
            .args(["-key", "rtp_port", &rtp_port.to_string(), "-m", "1", "-timeout", "60s", "-nostdin"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp (sip-tester)"),
    );
    let options = Options { extra_args: vec!["--notify-retry-ms".into(), "50".into()], ..Default::default() };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let put = |path: &str, body: Value| {
        let (status, answer) = server.admin("PUT", path, Some(body));
        assert_eq!(status, 200, "{path}: {answer}");
        answer
    };
    put(
        "/api/v1/profiles/email/ops",
        json!({"server": "127.0.0.1", "port": smtp_port, "security": "none",
        "from": "camera@example.com", "to": ["ops@example.com"], "subject": "Alert on {device}: {count} failures from {client_ip}"}),
    );
    put(
        "/api/v1/profiles/ip-notify/net",
        json!({"destinations": [format!("127.0.0.1:{tcp_port}")], "protocol": "tcp",
        "body": "ALERT {client_ip} {user} {count}"}),
    );
    let phone = put(
        "/api/v1/profiles/phone/desk",
        json!({"uri": format!("sip:alarm@127.0.0.1:{sip_port}"), "transport": "udp",
        "username": "cam", "password": "sip-secret"}),
    );
    assert!(!phone.to_string().contains("sip-secret"), "secrets are never read back: {phone}");
    // A PUT without the password keeps it (checked in the stored file below).
    put(
        "/api/v1/profiles/phone/desk",
        json!({"uri": format!("sip:alarm@127.0.0.1:{sip_port}"), "transport": "udp", "username": "cam"}),
    );
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["email_profile"] = json!("ops");
    s["intrusion_detection"]["ip_notify_profile"] = json!("net");
    s["intrusion_detection"]["phone_profile"] = json!("desk");
    put("/api/v1/webserver", s);
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    let stored = std::fs::read_to_string(server.data_dir().join("config.json")).expect("config");
    assert!(stored.contains("sip-secret"), "the omitted password was kept");
    let (_, all) = server.admin("GET", "/api/v1/profiles", None);
    assert!(!all.to_string().contains("sip-secret"));
    let (status, err) = server.admin("DELETE", "/api/v1/profiles/email/ops", None);
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "profile_in_use");

    // The attack: six wrong passwords from 127.0.0.2.
    let url = server.url("/api/v1/webserver");
    for _ in 0..6 {
        assert_eq!(curl_status("127.0.0.2", &url, &["-u", "admin:guess"]), 401);
    }
    // E-mail with the logfile attached.
    let mail_path = mail_out.join("1.json");
    assert!(wait_until(Duration::from_secs(30), || mail_path.exists()), "no mail arrived");
    let mail: Value =
        serde_json::from_str(&std::fs::read_to_string(&mail_path).expect("mail")).expect("json");
    assert_eq!(mail["mail_from"], "camera@example.com");
    assert_eq!(mail["rcpt_tos"], json!(["ops@example.com"]));
    assert!(mail["subject"].as_str().expect("subject").ends_with("6 failures from 127.0.0.2"), "{mail}");
    // RFC 5322 §3.6.4: a unique Message-ID, on the sender's domain.
    let message_id = mail["message_id"].as_str().unwrap_or_else(|| panic!("no Message-ID: {mail}"));
    assert!(message_id.starts_with('<') && message_id.ends_with("@example.com>"), "{message_id}");
    assert!(message_id.len() > "<@example.com>".len() + 16, "{message_id}");
    assert!(mail["date"].is_string(), "{mail}");
    let attachment = mail["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["filename"] == "webserver-log.txt")
        .expect("logfile attached");
    assert!(attachment["text"].as_str().expect("text").contains("127.0.0.2"), "{attachment}");
    // Network message with the placeholders filled in.
    assert!(wait_until(Duration::from_secs(30), || tcp_got.lock().is_ok_and(|g| !g.is_empty())));
    assert_eq!(tcp_got.lock().expect("lock")[0], "ALERT 127.0.0.2 admin 6");
    // The phone call: RTP audio arrives.
    let mut packets = 0;
    let mut buf = [0u8; 2048];
    let _ = wait_until(Duration::from_secs(30), || {
        if rtp.recv(&mut buf).is_ok() && buf[1] & 0x7f <= 8 {
            packets += 1;
        }
        packets >= 50
    });
    assert!(packets >= 50, "RTP packets received: {packets}");
    assert!(
        wait_until(Duration::from_secs(30), || events_of(&server, "notification_sent").len() == 3),
        "{:?}",
        events_of(&server, "notification_sent")
    );
    // "Send test" through an HTTP profile.
    put(
        "/api/v1/profiles/ip-notify/web",
        json!({"destinations": [format!("127.0.0.1:{http_port}")], "protocol": "http",
        "method": "POST", "path": "/alarm"}),
    );
    let (status, outcome) = server.admin("POST", "/api/v1/profiles/ip-notify/web/test", None);
    assert_eq!(status, 200);
    assert_eq!(outcome["ok"], true, "{outcome}");
    let request = http_got.lock().expect("lock")[0].clone();
    assert!(request.starts_with("POST /alarm HTTP/1.1"), "{request}");
    assert!(request.contains("\"event\":\"test\""), "{request}");
}

#[test]
fn an_unreachable_peer_fails_after_the_retries_and_the_server_keeps_serving() {
    let options = Options { extra_args: vec!["--notify-retry-ms".into(), "20".into()], ..Default::default() };
    let server = TestServer::start_with(&bin(), options).expect("start");
    let closed = free_port();
    let (status, body) = server.admin(
        "PUT",
        "/api/v1/profiles/email/dead",
        Some(json!({"server": "127.0.0.1", "port": closed,
        "security": "none", "from": "cam@example.com", "to": ["ops@example.com"]})),
    );
    assert_eq!(status, 200, "{body}");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["email_profile"] = json!("dead");
    server.admin("PUT", "/api/v1/webserver", Some(s));
    let url = server.url("/api/v1/webserver");
    for _ in 0..6 {
        run("curl", &["-s", "--interface", "127.0.0.2", "-u", "admin:guess", "-o", "/dev/null", &url]);
    }
    assert!(wait_until(Duration::from_secs(30), || !events_of(&server, "notification_failed").is_empty()));
    let failed = &events_of(&server, "notification_failed")[0];
    assert_eq!(failed["details"]["attempts"], 4, "{failed}");
    assert_eq!(failed["details"]["profile"], "dead");
    assert_eq!(server.client().get(server.url("/healthz")).send().expect("get").status(), 200);
    // The test action reports the failure at once.
    let (_, outcome) = server.admin("POST", "/api/v1/profiles/email/dead/test", None);
    assert_eq!(outcome["ok"], false);
    assert_eq!(outcome["code"], "connect_failed", "{outcome}");
    // Refusals name the field and change nothing.
    let (status, err) =
        server.admin("PUT", "/api/v1/profiles/email/bad", Some(json!({"server": "", "to": []})));
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["field"].as_str().is_some_and(|f| !f.is_empty()), "{err}");
    let (status, _) = server.admin("GET", "/api/v1/profiles/email/bad", None);
    assert_eq!(status, 404);
    // A CA that is not a certificate and audio that is not a WAV file are
    // refused by the same rule as a configuration upload (the core's).
    let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let (status, err) = server.admin(
        "PUT",
        "/api/v1/profiles/ip-notify/ca",
        Some(json!({"destinations": ["127.0.0.1:9"], "protocol": "https", "ca_pem": not_der})),
    );
    assert_eq!(
        (status, &err["error"]["code"], &err["error"]["field"]),
        (400, &json!("invalid_pem"), &json!("ip_notify.ca.ca_pem")),
        "{err}"
    );
    let (status, err) = server.admin(
        "PUT",
        "/api/v1/profiles/phone/wav",
        Some(json!({"uri": "sip:alarm@127.0.0.1", "audio": "bm90IGEgd2F2IGZpbGU="})),
    );
    assert_eq!(
        (status, &err["error"]["code"], &err["error"]["field"]),
        (400, &json!("invalid_audio"), &json!("phone.wav.audio")),
        "{err}"
    );
    let (status, _) = server.admin("GET", "/api/v1/profiles/fax/x", None);
    assert_eq!(status, 404);
}
