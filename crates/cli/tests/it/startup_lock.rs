//! A start beside a predecessor still on its way out: the data folder's lock
//! is waited for, a bounded time, saying so once.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::{ADMIN_PASSWORD, free_port, raw_get, wait_until};

use crate::bin;

/// Another process holding the data folder's lock (`flock` from util-linux,
/// running `cat`) until its standard input is closed.
struct Holder(Child);

impl Holder {
    fn take(data: &Path) -> Self {
        std::fs::create_dir_all(data).expect("mkdir");
        let lock = data.join(".lock");
        let mut child = Command::new("flock")
            .arg(&lock)
            .arg("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock (util-linux)");
        // `cat` runs only once the lock is held: its echo says so.
        child.stdin.as_mut().expect("stdin").write_all(b"held\n").expect("write");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
            &mut line,
        )
        .expect("read");
        assert_eq!(line, "held\n");
        Self(child)
    }

    fn release(mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary serving `dir/data` on a free HTTP port; its stderr goes to `dir/log`.
fn serve(dir: &Path, lock_wait_seconds: u64) -> (Child, u16) {
    std::fs::write(dir.join("password"), ADMIN_PASSWORD).expect("write");
    let port = free_port();
    let https = loop {
        let p = free_port();
        if p != port {
            break p;
        }
    };
    let child = Command::new(bin())
        .args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--admin-password-file")
        .arg(dir.join("password"))
        .args(["--listen", "127.0.0.1", "--keep-code-pages", "--http-port", &port.to_string()])
        .args(["--https-port", &https.to_string(), "--lock-wait-seconds", &lock_wait_seconds.to_string()])
        .env("PORTCULLIS_LOG", "info")
        .env_remove("PORTCULLIS_ADMIN_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).expect("log"))
        .spawn()
        .expect("spawn");
    (child, port)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

#[test]
fn a_start_waits_for_the_lock_of_a_predecessor_and_then_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = Holder::take(&dir.path().join("data"));
    let holder_pid = holder.0.id();
    let (mut server, port) = serve(dir.path(), 30);
    assert!(
        wait_until(Duration::from_secs(10), || log(dir.path()).contains("waiting up to 30 s")),
        "it says it waits: {}",
        log(dir.path())
    );
    let said = log(dir.path());
    assert!(said.contains(".lock") && said.contains(&format!("process {holder_pid} (flock)")), "{said}");
    assert!(raw_get(port, "/healthz").is_none(), "not serving while the lock is held");
    assert!(server.try_wait().expect("wait").is_none(), "still waiting, not gone: {said}");
    holder.release();
    let up = wait_until(Duration::from_secs(20), || {
        raw_get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "serving once the lock is released: {}", log(dir.path()));
    assert_eq!(log(dir.path()).matches("waiting up to").count(), 1, "said once: {}", log(dir.path()));
}

#[test]
fn a_lock_never_released_ends_the_start_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = Holder::take(&dir.path().join("data"));
    let started = Instant::now();
    let (mut server, _) = serve(dir.path(), 1);
    let exited = wait_until(Duration::from_secs(20), || server.try_wait().ok().flatten().is_some());
    let elapsed = started.elapsed();
    if !exited {
        let _ = server.kill();
    }
    let status = server.wait().expect("wait");
    assert!(exited && !status.success(), "{status:?}: {}", log(dir.path()));
    assert!(elapsed >= Duration::from_secs(1), "it waited the bound: {elapsed:?}");
    let text = log(dir.path());
    let error: Vec<&str> = text.lines().filter(|l| l.starts_with("portcullis:")).collect();
    assert_eq!(error.len(), 1, "{text}");
    let line = error[0];
    assert!(line.contains(".lock") && line.contains("(flock)") && line.contains("within 1 s"), "{line}");
    drop(holder);
}
