//! After start, the server gives the code that ran only at start-up back to
//! the kernel, and goes on answering.

use std::time::Duration;

use portcullis_testkit::{Options, TestServer, wait_until};

use crate::bin;

/// Resident KiB of the mappings of process `pid`'s executable file.
fn exe_resident_kib(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    let exe = exe.to_str().expect("utf8 path");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut in_exe = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_exe = line.ends_with(exe);
        } else if in_exe && first == "Rss:" {
            kib += fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    kib
}

#[test]
fn startup_code_goes_back_to_the_kernel_and_the_server_still_answers() {
    // A copy of the binary that no other server of the suite maps: pages
    // another process maps stay resident in every process.
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("portcullis");
    std::fs::copy(bin(), &copy).expect("copy the binary");
    let server = TestServer::start_with(&copy, Options { keep_code_pages: false, ..Default::default() })
        .expect("start");
    let line = "start-up code given back to the kernel";
    assert!(wait_until(Duration::from_secs(20), || server.log().contains(line)), "log:\n{}", server.log());
    let log = server.log();
    let given: u64 = log
        .lines()
        .find(|l| l.contains(line))
        .and_then(|l| l.split("kib=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("the line says how much");
    assert!(given > 1024, "only {given} KiB given back:\n{log}");
    // Before any further request: what is mapped now came back since.
    let resident = exe_resident_kib(server.pid().expect("pid"));
    assert!(
        resident < given / 2,
        "the executable still has {resident} KiB resident of {given} KiB given back"
    );

    // Still answers, over HTTP and HTTPS, the API included.
    let client = server.client();
    for url in [server.url("/healthz"), server.https_url("/healthz")] {
        let health = client.get(&url).send().expect("request");
        assert_eq!(health.status(), 200, "{url}");
    }
    let (status, body) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(status, 200, "{body}");
}
