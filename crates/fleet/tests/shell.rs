//! portcullis-fleet's shell without the engines: loopback peers written
//! here show what the real engines cannot be made to do on demand (a
//! collector that stops reading, one that appears late, a LAPI that
//! answers too much or fails).

// The whole file needs every integration (the minimal build has none).
#![cfg(all(feature = "metrics", feature = "syslog", feature = "crowdsec"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::crowdsec::CrowdSecSettings;
use portcullis_core::events::{Event, EventKind};
use portcullis_core::profiles::Secret;
use portcullis_core::syslog::{SyslogDestination, SyslogSettings, SyslogTransport};
use portcullis_core::{Clock, SystemClock};
use portcullis_fleet::Jitter;
use portcullis_fleet::crowdsec::LapiClient;
use portcullis_fleet::syslog::{SyslogExporter, SyslogObserver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(30);

async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[derive(Debug, Clone, Copy)]
struct NoJitter;
impl Jitter for NoJitter {
    fn next(&self) -> f64 {
        0.0
    }
}

#[derive(Default)]
struct Failures(Mutex<Vec<String>>);
impl SyslogObserver for Failures {
    fn sent(&self, _: &str) {}
    fn dropped(&self, _: &str, _: u64) {}
    fn failed(&self, _: &str, error: &str) {
        self.0.lock().expect("lock").push(error.to_string());
    }
}

fn event(i: u64) -> Event {
    Event {
        id: i,
        time: time::OffsetDateTime::now_utc(),
        kind: EventKind::ClientBlocked,
        actor: None,
        message: format!("event {i}"),
        details: serde_json::json!({"client": "192.0.2.1"}),
    }
}

fn tcp_settings(port: u16, capacity: u32) -> SyslogSettings {
    let s = SyslogSettings {
        enabled: true,
        destinations: vec![SyslogDestination::new(format!("127.0.0.1:{port}"), SyslogTransport::Tcp)],
        queue_capacity: capacity,
        ..Default::default()
    };
    assert_eq!(s.validate(), Ok(()));
    s
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new())
}

/// Reads octet-counted frames (RFC 6587 §3.4.1) until `n` messages came.
async fn read_frames(stream: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        let got = stream.read(&mut chunk).await.expect("read");
        assert!(got > 0, "the exporter closed the stream after {out:?}");
        buf.extend_from_slice(&chunk[..got]);
        while let Some(space) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..space]).expect("digits").parse().expect("a length");
            if buf.len() < space + 1 + len {
                break;
            }
            out.push(String::from_utf8(buf[space + 1..space + 1 + len].to_vec()).expect("utf-8"));
            buf.drain(..space + 1 + len);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_appears_late_gets_what_was_queued_in_order() {
    let port = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let failures = Arc::new(Failures::default());
    let exporter =
        SyslogExporter::start(&tcp_settings(port, 100), "cam", clock(), Arc::new(NoJitter), failures.clone())
            .expect("starts");
    for i in 0..3 {
        exporter.send_event(&event(i));
    }
    assert!(wait_until(LIMIT, || !failures.0.lock().expect("lock").is_empty()).await, "nobody listens yet");
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind the same port");
    let (mut stream, _) =
        tokio::time::timeout(LIMIT, listener.accept()).await.expect("retried in time").expect("accept");
    let got = read_frames(&mut stream, 3).await;
    for (i, message) in got.iter().enumerate() {
        assert!(message.starts_with("<132>1 ") && message.ends_with(&format!("event {i}")), "{message}");
        assert!(message.contains(&format!("sequenceId=\"{}\"", i + 1)), "{message}");
    }
    assert!(exporter.flush(LIMIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_never_waits_for_a_collector_that_stops_reading() {
    // A small, fixed receive buffer (no autotuning, which may grow to
    // tcp_rmem's maximum: 32 MiB on some machines, where every message fitted
    // and none was dropped): only the sender's buffer is left to fill.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let listener = socket.listen(1).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    // Accepts, then never reads: the socket buffers fill and writes block.
    let held = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(LIMIT * 2).await;
        drop(stream);
    });
    let exporter = SyslogExporter::start(
        &tcp_settings(port, 100),
        "cam",
        clock(),
        Arc::new(NoJitter),
        Arc::new(Failures::default()),
    )
    .expect("starts");
    // 40,000 messages of about 250 bytes (10 MB): far more than the socket
    // buffers take (the sender's grows to tcp_wmem's maximum, 4 MiB by
    // default). Every send returns; the queue stays within its bound.
    for i in 0..40_000 {
        exporter.send_event(&event(i));
        // The queue's 100, and the one taken out of it on its way.
        let queued = exporter.stats()[0].queued;
        assert!(queued <= 100 + 1, "{queued}");
    }
    let stats = &exporter.stats()[0];
    // Every message is accounted for once: sent, dropped, or waiting (the
    // one on its way included); the figures are read one after another
    // while the task runs, so one may be in between.
    let accounted = stats.sent + stats.dropped + stats.queued as u64;
    assert!((39_999..=40_000).contains(&accounted), "{stats:?}");
    assert!(stats.dropped > 0, "{stats:?}");
    held.abort();
}

/// A one-shot HTTP server answering `status` with `body_len` bytes of `x`.
async fn fake_lapi(status: u16, body_len: usize) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut req = vec![0u8; 4096];
        let n = s.read(&mut req).await.expect("read");
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {body_len}\r\ncontent-type: application/json\r\n\r\n"
        );
        let _ = s.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let k = left.min(chunk.len());
            if s.write_all(&chunk[..k]).await.is_err() {
                break;
            }
            left -= k;
        }
        String::from_utf8_lossy(&req[..n]).to_string()
    });
    (port, task)
}

fn lapi_settings(port: u16) -> CrowdSecSettings {
    let s = CrowdSecSettings {
        enabled: true,
        lapi_url: format!("http://127.0.0.1:{port}"),
        bouncer_key: Some(Secret::new("s3cret-bouncer-key")),
        max_decisions: 100,
        ..Default::default()
    };
    assert_eq!(s.validate(), Ok(()));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapi_answer_beyond_the_bound_is_refused_and_errors_never_name_the_key() {
    // max_decisions 100: the stream's bound is 1 MiB; 3 MiB are refused.
    let (port, lapi) = fake_lapi(200, 3 << 20).await;
    let client = LapiClient::new(&lapi_settings(port), "0.1.0").expect("client");
    let e = client.decisions(true).await.expect_err("too long");
    assert_eq!(e.code(), "malformed", "{e}");
    let request = lapi.await.expect("served");
    assert!(request.starts_with("GET /v1/decisions/stream?startup=true HTTP/1.1\r\n"), "{request}");
    assert!(request.to_ascii_lowercase().contains("x-api-key: s3cret-bouncer-key\r\n"));
    assert!(request.to_ascii_lowercase().contains("user-agent: portcullis/0.1.0\r\n"));

    let (port, _lapi) = fake_lapi(500, 20).await;
    let e = LapiClient::new(&lapi_settings(port), "0.1.0")
        .expect("client")
        .decisions(false)
        .await
        .expect_err("500");
    assert_eq!(e.code(), "status");
    assert!(!e.to_string().contains("s3cret") && !format!("{e:?}").contains("s3cret"), "{e:?}");
    assert!(!format!("{client:?}").contains("s3cret"));

    // Nobody listening: unreachable, named as such.
    let port = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let e = LapiClient::new(&lapi_settings(port), "0.1.0")
        .expect("client")
        .decisions(true)
        .await
        .expect_err("refused");
    assert_eq!(e.code(), "unreachable", "{e}");
}
