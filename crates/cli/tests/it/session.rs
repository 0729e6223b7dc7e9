//! Login sessions end at the core's idle and absolute limits, on the clock
//! the server is given (a `ManualClock`: no waiting half an hour in a test).

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::ManualClock;
use portcullis_core::session::{IDLE, MAX_AGE};
use portcullis_testkit::free_port;
use serde_json::json;

const PASSWORD: &str = "session-password";

async fn login(client: &reqwest::Client, base: &str) {
    let r = client
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"user": "admin", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
}

async fn status(client: &reqwest::Client, base: &str) -> u16 {
    client.get(format!("{base}/api/v1/webserver")).send().await.expect("get").status().as_u16()
}

fn advance(clock: &ManualClock, by: Duration) {
    clock.advance(time::Duration::try_from(by).expect("duration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_the_idle_and_absolute_limits_of_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let server = portcullis::ServerBuilder::new(dir.path().join("data"))
        .port_overrides(portcullis::PortOverrides {
            http_ports: Some(vec![http]),
            https_port: Some(free_port()),
        })
        .admin_password(Some(PASSWORD.into()))
        .bind_addresses(vec!["127.0.0.1".parse().expect("ip")])
        .clock(clock.clone())
        .start()
        .await
        .expect("start");
    let base = format!("http://127.0.0.1:{http}");
    let second = Duration::from_secs(1);

    // Idle: used one second before the limit it lives on; left idle to the limit it ends.
    let idle = reqwest::Client::builder().cookie_store(true).build().expect("client");
    login(&idle, &base).await;
    assert_eq!(status(&idle, &base).await, 200);
    advance(&clock, IDLE - second);
    assert_eq!(status(&idle, &base).await, 200, "one second before the idle limit");
    advance(&clock, IDLE);
    assert_eq!(status(&idle, &base).await, 401, "idle to the limit");

    // Absolute: used every half idle period, it still ends MAX_AGE after login.
    let busy = reqwest::Client::builder().cookie_store(true).build().expect("client");
    login(&busy, &base).await;
    let mut elapsed = Duration::ZERO;
    while elapsed + IDLE / 2 < MAX_AGE - second {
        advance(&clock, IDLE / 2);
        elapsed += IDLE / 2;
        assert_eq!(status(&busy, &base).await, 200, "used after {elapsed:?}");
    }
    advance(&clock, MAX_AGE - second - elapsed);
    assert_eq!(status(&busy, &base).await, 200, "one second before the absolute limit");
    advance(&clock, second);
    assert_eq!(status(&busy, &base).await, 401, "at the absolute limit");
    server.shutdown().await;
}
