//! A client without credentials cannot flood the server's log: a line per
//! handshake, or a line as long as it likes.

use portcullis_testkit::{TestServer, run, wait_until};

use crate::bin;

/// Handshakes naming an IP address as SNI (which RFC 6066 forbids, and
/// rustls warns about) leave no line each in the log.
#[test]
fn handshakes_with_an_ip_address_as_sni_write_no_line_each() {
    let server = TestServer::start(&bin()).expect("start");
    let connect = format!("127.0.0.1:{}", server.https_port);
    let before = server.log().lines().count();
    const HANDSHAKES: usize = 40;
    for _ in 0..HANDSHAKES {
        let (_, out, err) = run(
            "timeout",
            &["10", "openssl", "s_client", "-connect", &connect, "-servername", "127.0.0.1", "-brief"],
        );
        assert!(err.contains("CONNECTION ESTABLISHED") || out.contains("CONNECTION ESTABLISHED"), "{err}");
    }
    // rustls warns during the handshake, before s_client returns; the log
    // is written unbuffered.
    let log = server.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    let about_sni = new.iter().filter(|l| l.contains("SNI") || l.contains("rustls")).count();
    assert_eq!(about_sni, 0, "no line about the illegal SNI:\n{}", new.join("\n"));
    assert!(
        new.len() < HANDSHAKES / 4,
        "{} new lines after {HANDSHAKES} handshakes:\n{}",
        new.len(),
        new.join("\n")
    );
}

/// A failed login with a 10,000-character user name (and control characters)
/// writes one bounded line that forges no other.
#[test]
fn a_huge_user_name_makes_a_bounded_line() {
    let server = TestServer::start(&bin()).expect("start");
    let name = format!("{}\u{1b}[31m\nforged line{}", "n".repeat(5_000), "m".repeat(5_000));
    let (status, _) = server.request_as(&name, "wrong-password", "GET", "/api/v1/webserver", None);
    assert_eq!(status, 401);
    let found = wait_until(std::time::Duration::from_secs(5), || server.log().contains("failed login"));
    assert!(found, "the failed login is logged:\n{}", server.log());
    let log = server.log();
    let line = log.lines().find(|l| l.contains("failed login")).expect("line");
    assert!(line.len() < 600, "{} characters: {line}", line.len());
    assert!(line.contains("nnnn"), "the start of the name is kept: {line}");
    assert!(!log.lines().any(|l| l.starts_with("forged line")), "no forged line");
    assert!(!log.contains('\u{1b}'), "no escape sequence reaches the log");
}
