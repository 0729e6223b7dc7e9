//! Certificate management against the real binary: generate, request,
//! CA-signed upload, upload with encrypted keys, refusals, hot swap, CLI.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use portcullis_testkit::{TestCa, TestServer, openssl, run};
use serde_json::{Value, json};

use crate::bin;

fn fingerprint(server: &TestServer) -> String {
    let (status, view) = server.admin("GET", "/api/v1/certificate", None);
    assert_eq!(status, 200, "{view}");
    view["certificate"]["fingerprint_sha256"].as_str().expect("fingerprint").to_string()
}

fn tls_fingerprint(port: u16) -> String {
    let connect = format!("127.0.0.1:{port}");
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = text.find("-----BEGIN CERTIFICATE-----").expect("cert");
    let end = text.find("-----END CERTIFICATE-----").expect("end") + 25;
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    child.stdin.take().expect("stdin").write_all(&text.as_bytes()[start..end]).expect("write");
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).trim().split_once('=').expect("=").1.to_string()
}

#[test]
fn generate_then_ca_signed_upload_is_trusted_by_curl() {
    let server = TestServer::start(&bin()).expect("start");
    let factory = fingerprint(&server);
    // No downloads while only the factory certificate exists.
    assert_eq!(server.admin_text("/api/v1/certificate/download").0, 409);
    assert_eq!(server.admin_text("/api/v1/certificate/request").0, 409);
    let (status, view) = server.admin(
        "POST",
        "/api/v1/certificate/generate",
        Some(json!({"common_name": "cam.portcullis.test", "country": "DE", "organization": "Test AG", "key_type": "ecdsa-p256"})),
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["source"], "individual");
    assert_eq!(view["csr_pending"], true);
    assert_ne!(view["certificate"]["fingerprint_sha256"].as_str(), Some(factory.as_str()));
    assert_eq!(
        tls_fingerprint(server.https_port),
        view["certificate"]["fingerprint_sha256"].as_str().expect("fp")
    );
    assert!(view["warnings"].to_string().contains("825"), "10 years draws the Apple warning: {view}");
    // The request verifies with openssl and carries the name.
    let (status, ct, csr) = server.admin_text("/api/v1/certificate/request");
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-pem-file");
    let dir = tempfile::tempdir().expect("tempdir");
    let csr_path = dir.path().join("req.csr");
    std::fs::write(&csr_path, &csr).expect("write");
    let text = openssl(&["req", "-in", csr_path.to_str().expect("utf8"), "-verify", "-noout", "-text"])
        .expect("verify");
    assert!(text.contains("DNS:cam.portcullis.test"), "{text}");
    // Signed by an openssl CA, uploaded for the device's key.
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let chain = ca.sign_csr(&csr, "device", 398).expect("sign");
    let (status, view) = server.upload(
        "/api/v1/certificate/upload-certificate",
        &[("certificate", std::fs::read(&chain).expect("chain"))],
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["csr_pending"], false);
    assert_eq!(view["certificate"]["chain_length"], 2);
    assert_eq!(view["certificate"]["self_signed"], false);
    let resolve = format!("cam.portcullis.test:{}:127.0.0.1", server.https_port);
    let url = format!("https://cam.portcullis.test:{}/healthz", server.https_port);
    let (code, out, err) =
        run("curl", &["-sS", "--cacert", &ca.path("root.pem"), "--resolve", &resolve, &url]);
    assert_eq!(code, 0, "curl without -k must trust the chain: {err}");
    assert!(out.contains("ok"));
    // A certificate for another key is refused, and nothing changes.
    let before = fingerprint(&server);
    let (other_chain, _) = ca
        .issue("other.portcullis.test", "other", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .expect("issue");
    let (status, err) = server.upload(
        "/api/v1/certificate/upload-certificate",
        &[("certificate", std::fs::read(&other_chain).expect("read"))],
    );
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "key_mismatch", "{err}");
    assert_eq!(fingerprint(&server), before);
    // Download certificate and key: admins only, PEM.
    let (status, ct, pem) = server.admin_text("/api/v1/certificate/download");
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-pem-file");
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
    server.admin("PUT", "/api/v1/users/viewer", Some(json!({"password": "viewer-password"})));
    let resp = server
        .client()
        .get(server.url("/api/v1/certificate/download"))
        .basic_auth("viewer", Some("viewer-password"))
        .send()
        .expect("get");
    assert_eq!(resp.status(), 403);
    // Delete: back to the factory certificate, served at once.
    let (status, view) = server.admin("DELETE", "/api/v1/certificate", None);
    assert_eq!(status, 200);
    assert_eq!(view["source"], "factory");
    assert_eq!(tls_fingerprint(server.https_port), factory);
}

#[test]
fn uploads_with_encrypted_keys_and_every_refusal() {
    let server = TestServer::start(&bin()).expect("start");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) = ca.issue("up.portcullis.test", "up", &["rsa:2048"]).expect("issue");
    let p = |n: &str| dir.path().join(n).display().to_string();
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        &key,
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:s3cret",
        "-out",
        &p("pkcs8.enc"),
    ])
    .expect("pkcs8");
    openssl(&[
        "rsa",
        "-in",
        &key,
        "-aes256",
        "-traditional",
        "-passout",
        "pass:s3cret",
        "-out",
        &p("trad.enc"),
    ])
    .expect("traditional");
    let read = |path: &str| std::fs::read(path).expect("read");
    let factory = fingerprint(&server);
    // Refusals first: each leaves the factory certificate in use.
    let (other_chain, _) = ca.issue("x.portcullis.test", "x", &["rsa:2048"]).expect("issue");
    let der = dir.path().join("c.der");
    openssl(&["x509", "-in", &chain, "-outform", "der", "-out", der.to_str().expect("utf8")]).expect("der");
    let csr = read(&ca.path("up.req"));
    let mut truncated = read(&chain);
    truncated.truncate(truncated.len() / 2);
    type Fields<'a> = Vec<(&'a str, Vec<u8>)>;
    let cases: Vec<(&str, Fields, &str)> = vec![
        (
            "mismatched key",
            vec![("certificate", read(&other_chain)), ("private_key", read(&key))],
            "key_mismatch",
        ),
        (
            "wrong passphrase",
            vec![
                ("certificate", read(&chain)),
                ("private_key", read(&p("pkcs8.enc"))),
                ("passphrase", b"nope".to_vec()),
            ],
            "wrong_passphrase",
        ),
        (
            "missing passphrase",
            vec![("certificate", read(&chain)), ("private_key", read(&p("trad.enc")))],
            "passphrase_required",
        ),
        (
            "DER",
            vec![("certificate", std::fs::read(&der).expect("der")), ("private_key", read(&key))],
            "der_not_pem",
        ),
        ("CSR", vec![("certificate", csr), ("private_key", read(&key))], "csr_not_certificate"),
        ("empty", vec![("certificate", Vec::new()), ("private_key", read(&key))], "empty"),
        ("truncated", vec![("certificate", truncated), ("private_key", read(&key))], "truncated"),
        (
            "garbage",
            vec![("certificate", b"hello, this is not a certificate".to_vec()), ("private_key", read(&key))],
            "not_pem",
        ),
        (
            "over 1 MiB",
            vec![("certificate", vec![b'A'; 1024 * 1024 + 10]), ("private_key", read(&key))],
            "too_large",
        ),
        ("no key", vec![("certificate", read(&chain))], "no_private_key"),
    ];
    for (what, fields, code) in cases {
        let (status, err) = server.upload("/api/v1/certificate/upload", &fields);
        assert_eq!(status, 400, "{what}: {err}");
        assert_eq!(err["error"]["code"], code, "{what}: {err}");
        assert!(err["error"]["field"].is_string(), "{what}: {err}");
        assert_eq!(fingerprint(&server), factory, "{what} changed the certificate");
    }
    let (status, err) = server.upload("/api/v1/certificate/upload", &[("certificat", read(&chain))]);
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "unknown_field");
    // Accepted: PKCS#8 encrypted, traditional encrypted, one combined file with the key first.
    for (what, fields) in [
        (
            "pkcs8",
            vec![
                ("certificate", read(&chain)),
                ("private_key", read(&p("pkcs8.enc"))),
                ("passphrase", b"s3cret".to_vec()),
            ],
        ),
        (
            "traditional",
            vec![
                ("certificate", read(&chain)),
                ("private_key", read(&p("trad.enc"))),
                ("passphrase", b"s3cret".to_vec()),
            ],
        ),
        ("combined", vec![("certificate", [read(&key), read(&chain)].concat())]),
    ] {
        let (status, view) = server.upload("/api/v1/certificate/upload", &fields);
        assert_eq!(status, 200, "{what}: {view}");
        assert_eq!(view["certificate"]["subject"], "CN=up.portcullis.test", "{what}");
        assert_eq!(view["certificate"]["chain_length"], 2);
        assert_eq!(view["certificate"]["key_type"], "RSA");
        assert_eq!(
            tls_fingerprint(server.https_port),
            view["certificate"]["fingerprint_sha256"].as_str().expect("fp")
        );
    }
    // The stored key is 0600.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data_dir().join("certs/current.json")).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn hot_swap_keeps_open_connections_and_new_ones_see_the_new_certificate() {
    let mut server = TestServer::start(&bin()).expect("start");
    let before = tls_fingerprint(server.https_port);
    // One TLS connection, open across the change.
    let connect = format!("127.0.0.1:{}", server.https_port);
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ask = |stdin: &mut std::process::ChildStdin| -> String {
        stdin.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
        stdin.flush().expect("flush");
        let mut status = String::new();
        stdout.read_line(&mut status).expect("status line");
        // Drain the rest of the answer: headers, blank line, then a short body.
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("header");
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        std::io::Read::read_exact(&mut stdout, &mut body).expect("body");
        status
    };
    assert!(ask(&mut stdin).starts_with("HTTP/1.1 200"));
    let (status, view) = server.admin(
        "POST",
        "/api/v1/certificate/generate",
        Some(json!({"common_name": "swap.portcullis.test", "key_type": "ecdsa-p256", "validity_days": 365})),
    );
    assert_eq!(status, 200, "{view}");
    assert!(view["warnings"].as_array().expect("warnings").is_empty(), "365 days draws no warning");
    assert!(
        ask(&mut stdin).starts_with("HTTP/1.1 200"),
        "the connection opened before the change still works"
    );
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let after = tls_fingerprint(server.https_port);
    assert_ne!(after, before);
    assert_eq!(after, view["certificate"]["fingerprint_sha256"].as_str().expect("fp"));
    // And it is what the server serves after a restart.
    server.restart().expect("restart");
    assert_eq!(tls_fingerprint(server.https_port), after);
}

#[test]
fn generate_refusals_name_the_field() {
    let server = TestServer::start(&bin()).expect("start");
    for (body, field) in [
        (json!({"common_name": ""}), "common_name"),
        (json!({"common_name": "has space.example"}), "common_name"),
        (json!({"common_name": "ok.example", "country": "Germany"}), "country"),
        (json!({"common_name": "ok.example", "email": "not-an-address"}), "email"),
        (json!({"common_name": "ok.example", "validity_days": 0}), "validity_days"),
        (json!({"common_name": "ok.example", "key_type": "dsa"}), "key_type"),
        (json!({"cn": "ok.example"}), "cn"),
    ] {
        let (status, err) = server.admin("POST", "/api/v1/certificate/generate", Some(body.clone()));
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    let (_, view) = server.admin("GET", "/api/v1/certificate", None);
    assert_eq!(view["source"], "factory");
}

#[test]
fn cli_certificate_commands_on_a_data_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf8");
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) = ca
        .issue("cli.portcullis.test", "cli", &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .expect("issue");
    let pcs = |args: &[&str]| run(bin().to_str().expect("utf8"), args);
    // Import works on a new, empty data folder.
    let (code, out, err) = pcs(&["cert", "import", "--cert", &chain, "--key", &key, "--data-dir", data]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CN=cli.portcullis.test"), "{out}");
    let (code, json_out, _) = pcs(&["cert", "show", "--json", "--data-dir", data]);
    assert_eq!(code, 0);
    let view: Value = serde_json::from_str(&json_out).expect("json");
    assert_eq!(view["source"], "individual");
    // The server serves it.
    let mut server = TestServer::start(&bin()).expect("start");
    server.kill();
    std::fs::remove_dir_all(server.data_dir()).ok();
    let copy = run("cp", &["-a", data, server.data_dir().to_str().expect("utf8")]);
    assert_eq!(copy.0, 0);
    server.restart().expect("restart");
    assert_eq!(
        tls_fingerprint(server.https_port),
        view["certificate"]["fingerprint_sha256"].as_str().expect("fp")
    );
    drop(server);
    // Export (0600), CSR after generate, refusals as one clear line, delete.
    let out_file = dir.path().join("export.pem");
    let (code, _, _) =
        pcs(&["cert", "export", "--out", out_file.to_str().expect("utf8"), "--data-dir", data]);
    assert_eq!(code, 0);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&out_file).expect("meta").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let (code, _, err) = pcs(&["cert", "csr", "--data-dir", data]);
    assert_eq!(code, 1);
    assert!(err.contains("no pending certificate request"), "{err}");
    let (code, out, err) = pcs(&[
        "cert",
        "generate",
        "--cn",
        "gen.portcullis.test",
        "--key-type",
        "ecdsa-p256",
        "--validity-days",
        "30",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CSR pending:   true"), "{out}");
    let (code, csr, _) = pcs(&["cert", "csr", "--data-dir", data]);
    assert_eq!(code, 0);
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let (code, _, err) = pcs(&["cert", "import", "--cert", &key, "--data-dir", data]);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, _) = pcs(&["cert", "delete", "--data-dir", data]);
    assert_eq!(code, 0);
    let (_, out, _) = pcs(&["cert", "show", "--data-dir", data]);
    assert!(out.contains("Factory"), "{out}");
}

/// The key identifier that follows `heading` in `openssl x509 -text` output.
fn key_identifier(text: &str, heading: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| !l.contains(heading));
    lines.next()?;
    let value = lines.next()?.trim();
    Some(value.strip_prefix("keyid:").unwrap_or(value).to_string())
}

/// The factory certificate (on disk and as served) names its authority key:
/// AKI = SKI, as a self-signed certificate should.
#[test]
fn the_factory_certificate_has_an_authority_key_identifier() {
    let server = TestServer::start(&bin()).expect("start");
    let pem = server.data_dir().join("certs/factory.pem");
    let text = openssl(&["x509", "-in", pem.to_str().expect("utf8"), "-noout", "-text"]).expect("x509");
    let ski = key_identifier(&text, "X509v3 Subject Key Identifier").expect("SKI");
    let aki =
        key_identifier(&text, "X509v3 Authority Key Identifier").unwrap_or_else(|| panic!("AKI: {text}"));
    assert!(ski.len() >= 20, "{ski}");
    assert_eq!(aki, ski, "{text}");
    let connect = format!("127.0.0.1:{}", server.https_port);
    let (_, served, _) = run(
        "sh",
        &[
            "-c",
            &format!(
                "openssl s_client -connect {connect} </dev/null 2>/dev/null | openssl x509 -noout -text"
            ),
        ],
    );
    assert_eq!(key_identifier(&served, "X509v3 Authority Key Identifier"), Some(ski));
}

/// A leaf signed by `openssl x509 -req -CA … -days 100` without `-extfile`:
/// X.509 version 1. Returns (leaf + intermediate, key).
fn version_1_certificate(ca: &TestCa) -> (String, String) {
    let (key, csr, leaf) = (ca.path("v1.key"), ca.path("v1.csr"), ca.path("v1.pem"));
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=v1.portcullis.test",
    ])
    .expect("csr");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca.path("inter.pem"),
        "-CAkey",
        &ca.path("inter.key"),
        "-CAcreateserial",
        "-days",
        "100",
        "-out",
        &leaf,
    ])
    .expect("sign");
    let text = openssl(&["x509", "-in", &leaf, "-noout", "-text"]).expect("text");
    assert!(text.contains("Version: 1 (0x0)"), "openssl made another version: {text}");
    let chain = ca.path("v1.chain.pem");
    let both = format!(
        "{}{}",
        std::fs::read_to_string(&leaf).expect("leaf"),
        std::fs::read_to_string(ca.path("inter.pem")).expect("inter")
    );
    std::fs::write(&chain, both).expect("chain");
    (chain, key)
}

#[test]
fn a_version_1_certificate_is_refused_saying_how_to_re_sign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) = version_1_certificate(&ca);
    let read = |path: &str| std::fs::read(path).expect("read");
    // The API: a clear refusal, the factory certificate stays.
    let server = TestServer::start(&bin()).expect("start");
    let factory = fingerprint(&server);
    let (status, err) = server
        .upload("/api/v1/certificate/upload", &[("certificate", read(&chain)), ("private_key", read(&key))]);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "unsupported_certificate_version", "{err}");
    assert_eq!(err["error"]["field"], "certificate", "{err}");
    let message = err["error"]["message"].as_str().expect("message");
    assert!(message.contains("version 1") && message.contains("version 3"), "{message}");
    assert!(message.contains("-extfile") && message.contains("subjectAltName"), "{message}");
    assert!(!message.contains("UnsupportedCertVersion") && !message.contains("Other("), "{message}");
    assert_eq!(fingerprint(&server), factory);
    // In the operator's language, the English detail kept.
    let mut req = server
        .client()
        .post(server.url("/api/v1/certificate/upload"))
        .basic_auth("admin", Some(portcullis_testkit::ADMIN_PASSWORD))
        .header("accept-language", "de");
    let form = reqwest::blocking::multipart::Form::new()
        .part("certificate", reqwest::blocking::multipart::Part::bytes(read(&chain)).file_name("c.pem"))
        .part("private_key", reqwest::blocking::multipart::Part::bytes(read(&key)).file_name("k.pem"));
    req = req.multipart(form);
    let err: Value = req.send().expect("post").json().expect("json");
    assert!(err["error"]["message"].as_str().expect("message").contains("Version 3"), "{err}");
    assert!(err["error"]["detail"].as_str().expect("detail").contains("-extfile"), "{err}");
    // The CLI: one line, the same words.
    let data = dir.path().join("data");
    let (code, _, err) = run(
        bin().to_str().expect("utf8"),
        &["cert", "import", "--cert", &chain, "--key", &key, "--data-dir", data.to_str().expect("utf8")],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("X.509 version 1") && err.contains("-extfile"), "{err}");
    assert!(!err.contains("UnsupportedCertVersion"), "{err}");
}

#[test]
fn a_combined_file_in_the_private_key_field_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca")).expect("ca");
    let (chain, key) = ca.issue("combined.portcullis.test", "combined", &["rsa:2048"]).expect("issue");
    let combined = [std::fs::read(&chain).expect("chain"), std::fs::read(&key).expect("key")].concat();
    let server = TestServer::start(&bin()).expect("start");
    let (status, view) = server.upload("/api/v1/certificate/upload", &[("private_key", combined.clone())]);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["source"], "individual", "{view}");
    assert!(
        view["certificate"]["subject"].as_str().is_some_and(|s| s.contains("combined.portcullis.test")),
        "{view}"
    );
    assert_eq!(tls_fingerprint(server.https_port), fingerprint(&server));
    // An empty certificate field beside it, as a form sends it, is the same.
    let (status, view) = server
        .upload("/api/v1/certificate/upload", &[("certificate", Vec::new()), ("private_key", combined)]);
    assert_eq!(status, 200, "{view}");
    // A key alone in that field: the certificate is what is missing.
    let (status, err) =
        server.upload("/api/v1/certificate/upload", &[("private_key", std::fs::read(&key).expect("key"))]);
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        (&err["error"]["code"], &err["error"]["field"]),
        (&json!("required"), &json!("certificate")),
        "{err}"
    );
    // Neither field: the certificate is required.
    let (status, err) = server.upload("/api/v1/certificate/upload", &[("passphrase", b"x".to_vec())]);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "required", "{err}");
}
