//! Password guessing that intrusion detection alone did not stop (issue 17):
//! many guesses multiplexed on one HTTP/2 connection, admitted before the
//! block; and Digest guesses at thousands a second with blocking off.

use std::time::{Duration, Instant};

use portcullis_testkit::{ADMIN_PASSWORD, TestServer, wait_until};
use serde_json::{Value, json};

use crate::{bin, digest_md5_header, digest_nonce};

fn events(server: &TestServer, kind: &str) -> Vec<Value> {
    let (_, body) = server.admin("GET", "/api/v1/events?limit=1000", None);
    body["events"].as_array().expect("events").iter().filter(|e| e["kind"] == kind).cloned().collect()
}

/// The logfile's count of failed logins of `user` from `client`: how many
/// credentials were checked and found wrong.
fn failures_logged(server: &TestServer, client: &str, user: &str) -> u64 {
    // Asked from 127.0.0.1, which no test here makes guess.
    let log: Value = reqwest::blocking::Client::new()
        .get(server.url("/api/v1/logfile"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .and_then(|r| r.json())
        .expect("logfile");
    log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["client_ip"] == client && e["user"] == user && e["authorized"] == false)
        .map(|e| e["count"].as_u64().expect("count"))
        .sum()
}

#[test]
fn guesses_multiplexed_on_one_http2_connection_stop_at_the_block() {
    const GUESSES: usize = 44;
    const PASSWORD: &str = "operator-password-1";
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    // An account whose password has never been checked (so none is cached).
    let account = json!({"group": "admins", "password": PASSWORD});
    assert_eq!(server.admin("PUT", "/api/v1/users/operator", Some(account)).0, 200);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (statuses, right_one) = runtime.block_on(async {
        let attacker = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .tls_danger_accept_invalid_certs(true)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let operator = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        // One connection, HTTP/2 by ALPN, open before the burst.
        let warm = attacker.get(server.https_url("/healthz")).send().await.expect("healthz");
        assert_eq!(warm.version(), reqwest::Version::HTTP_2);
        let url = server.https_url("/api/v1/webserver");
        let send = |password: &str| {
            let request = attacker.get(&url).basic_auth("operator", Some(password));
            async move {
                match request.send().await {
                    Ok(r) => {
                        assert_eq!(r.version(), reqwest::Version::HTTP_2);
                        r.status().as_u16()
                    }
                    Err(_) => 0,
                }
            }
        };
        // Every guess at once: all are admitted before the first check ends.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..GUESSES {
            let guess = send(&format!("guess-{i}"));
            tasks.spawn(async move { (i, guess.await) });
        }
        // Once the first guess was checked, and before the block (six checks
        // of ~25 ms each), the right password follows on the same connection.
        let logfile = server.url("/api/v1/logfile");
        let mut first_failure = false;
        for _ in 0..500 {
            let log = operator.get(&logfile).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await;
            let text = log.expect("logfile").text().await.expect("text");
            if text.contains("127.0.0.2") {
                first_failure = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(first_failure, "no guess was checked within 2.5 s");
        let right_one = send(PASSWORD).await;
        let mut statuses = vec![0; GUESSES];
        while let Some(done) = tasks.join_next().await {
            let (i, status) = done.expect("task");
            statuses[i] = status;
        }
        (statuses, right_one)
    });

    // The block came at the 6th failure, and no check ran after it.
    let blocks = events(&server, "client_blocked");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["details"]["count"], 6);
    let checked = failures_logged(&server, "127.0.0.2", "operator");
    assert!((6..=6 + 1).contains(&checked), "{checked} guesses checked; statuses {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count() as u64, checked, "{statuses:?}");
    assert!(statuses.iter().all(|s| [401, 403].contains(s)), "{statuses:?}");
    // The right password, sent before the block but checked after it, is refused.
    assert_eq!(right_one, 403, "{statuses:?}");
    assert_eq!(events(&server, "intrusion_alert").len(), 1);
}

#[test]
fn digest_guessing_is_bounded_in_rate_with_blocking_off() {
    const GUESSES: u32 = 300;
    let mut server = TestServer::start(&bin()).expect("start");
    // Factory intrusion settings: threshold 10, block_ip off.
    let (_, s) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(s["intrusion_detection"]["block_ip"], false);
    assert_eq!(server.admin("PUT", "/api/v1/authentication", Some(json!({"digest": true}))).0, 200);
    server.admin("GET", "/api/v1/webserver", None); // derives the admin's Digest secret
    server.source = "127.0.0.2".parse().expect("ip");
    let client = server.client();
    let uri = "/api/v1/webserver";
    let nonce = digest_nonce(&client, &server.url(uri));

    // As fast as one client can send them, one after the other, each a new
    // nonce count (not a replay), each with a wrong password.
    let started = Instant::now();
    let mut answers = Vec::new();
    for nc in 1..=GUESSES {
        let resp = client
            .get(server.url(uri))
            .header("authorization", digest_md5_header(&nonce, uri, nc, &format!("guess-{nc}")))
            .send()
            .expect("guess");
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_string());
        answers.push((resp.status().as_u16(), retry_after));
    }
    let elapsed = started.elapsed();
    let checked = answers.iter().filter(|(s, _)| *s == 401).count() as u64;
    let throttled: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(checked + throttled.len() as u64, u64::from(GUESSES), "{answers:?}");
    // Ten in a row, then one a second at most (plus one for a partial second).
    let bound = 10 + elapsed.as_secs() + 1;
    assert!(checked >= 10 && checked <= bound, "{checked} checked in {elapsed:?}");
    assert_eq!(failures_logged(&server, "127.0.0.2", "admin"), checked, "only checked guesses are logged");
    assert!(
        throttled
            .iter()
            .all(|(_, r)| r.as_deref().and_then(|r| r.parse::<u64>().ok()).is_some_and(|s| s >= 1))
    );
    // Another client is not held back.
    server.source = "127.0.0.3".parse().expect("ip");
    assert_eq!(server.admin("GET", uri, None).0, 200);
    // Once the client waits, the right password is accepted (it costs no token).
    server.source = "127.0.0.2".parse().expect("ip");
    assert!(wait_until(Duration::from_secs(5), || server.admin("GET", uri, None).0 == 200));

    // Basic (argon2id, ~28 checks a second in a release build) is bounded the same way.
    server.source = "127.0.0.4".parse().expect("ip");
    let client = server.client();
    let started = Instant::now();
    let statuses: Vec<u16> = (0..30)
        .map(|i| {
            let resp = client.get(server.url(uri)).basic_auth("admin", Some(format!("guess-{i}"))).send();
            resp.expect("guess").status().as_u16()
        })
        .collect();
    let elapsed = started.elapsed();
    let checked = statuses.iter().filter(|s| **s == 401).count() as u64;
    assert_eq!(checked + statuses.iter().filter(|s| **s == 429).count() as u64, 30, "{statuses:?}");
    assert!(checked >= 10 && checked <= 10 + elapsed.as_secs() + 1, "{checked} checked in {elapsed:?}");
    assert_eq!(failures_logged(&server, "127.0.0.4", "admin"), checked);
}
