//! Issue 21 item 16: blocks with a length (fail2ban's bantime,
//! bantime.increment and maxtime), ending by themselves, and blocks that
//! survive a Reboot and a restart when chosen.

use std::time::Duration;

use portcullis_testkit::{TestServer, curl_status, wait_until};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bin;

/// A server with threshold 5, blocking on, access control on, and `blocks` as
/// the block settings of intrusion detection.
fn guarded(blocks: Value) -> TestServer {
    let server = TestServer::start(&bin()).expect("start");
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["notification_threshold"] = json!(5);
    s["intrusion_detection"]["block_ip"] = json!(true);
    for (k, v) in blocks.as_object().expect("object") {
        s["intrusion_detection"][k] = v.clone();
    }
    let (status, body) = server.admin("PUT", "/api/v1/webserver", Some(s));
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.admin("PUT", "/api/v1/access-control", Some(json!({"enabled": true}))).0, 200);
    server
}

/// Six wrong passwords from `source`: blocked past the threshold of 5.
fn guess(server: &TestServer, source: &str) {
    for i in 1..=6 {
        let status = curl_status(source, &server.url("/api/v1/webserver"), &["-u", "admin:wrong-guess"]);
        assert_eq!(status, 401, "attempt {i}");
    }
}

fn reachable(server: &TestServer, source: &str) -> bool {
    curl_status(source, &server.url("/healthz"), &[]) == 200
}

fn blocked(server: &TestServer) -> Vec<Value> {
    server.admin("GET", "/api/v1/blocked", None).1.as_array().cloned().expect("list")
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().expect("a time"), &Rfc3339).expect("RFC 3339")
}

#[test]
fn a_timed_block_ends_by_itself_and_a_repeat_offence_lasts_longer_up_to_the_bound() {
    let server = guarded(json!({
        "block_duration_seconds": 2, "block_duration_increment": true, "block_duration_max_seconds": 3
    }));
    guess(&server, "127.0.0.2");
    assert!(!reachable(&server, "127.0.0.2"), "blocked at the connection");
    let list = blocked(&server);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(time_of(&list[0]["until"]) - time_of(&list[0]["since"]), time::Duration::seconds(2));
    // Ends by itself, and the connection guard lets the client in at once.
    assert!(wait_until(Duration::from_secs(10), || reachable(&server, "127.0.0.2")), "the block ended");
    assert!(blocked(&server).is_empty());
    let (_, events) = server.admin("GET", "/api/v1/events?kind=client_unblocked", None);
    let ended: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["details"]["reason"] == "expired")
        .collect();
    assert_eq!(ended.len(), 1, "{events}");
    // The same client again: twice as long, bounded by 3 seconds.
    guess(&server, "127.0.0.2");
    let list = blocked(&server);
    assert_eq!(list[0]["address"], "127.0.0.2");
    assert_eq!(time_of(&list[0]["until"]) - time_of(&list[0]["since"]), time::Duration::seconds(3));
    assert!(wait_until(Duration::from_secs(10), || reachable(&server, "127.0.0.2")));
}

#[test]
fn the_factory_block_lasts_until_reboot_and_says_so() {
    let server = guarded(json!({}));
    let (_, s) = server.admin("GET", "/api/v1/webserver", None);
    let id = &s["intrusion_detection"];
    assert_eq!(
        (&id["block_duration_seconds"], &id["block_duration_increment"], &id["blocks_survive_reboot"]),
        (&json!(0), &json!(false), &json!(false))
    );
    guess(&server, "127.0.0.2");
    let list = blocked(&server);
    assert_eq!(list[0].get("until"), None, "no end: until reboot");
    assert!(!server.data_dir().join("blocks.json").exists());
}

#[test]
fn blocks_survive_a_reboot_and_a_restart_when_chosen_and_not_otherwise() {
    let mut server = guarded(json!({"block_duration_seconds": 3600, "blocks_survive_reboot": true}));
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    guess(&server, "127.0.0.2");
    let before = blocked(&server);
    assert_eq!(before.len(), 1);
    // Reboot: the block stays.
    assert_eq!(server.admin("POST", "/api/v1/reboot", None).0, 200);
    assert!(!reachable(&server, "127.0.0.2"), "still blocked after Reboot");
    // A restart of the process (killed, not stopped): the block comes back from the data folder.
    let file = server.data_dir().join("blocks.json");
    // Written within a second of the block (by the block watch's tick).
    let stored = || std::fs::read_to_string(&file).unwrap_or_default().contains("127.0.0.2");
    assert!(wait_until(Duration::from_secs(5), stored), "the blocks are stored");
    server.restart().expect("restart");
    assert!(!reachable(&server, "127.0.0.2"), "still blocked after a restart");
    let after = blocked(&server);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!((&after[0]["address"], &after[0]["until"]), (&before[0]["address"], &before[0]["until"]));
    assert!(reachable(&server, "127.0.0.3"), "others are served");
    // Not chosen any more (set and stored): the next Reboot lifts it, and a restart does not bring it back.
    let (_, mut s) = server.admin("GET", "/api/v1/webserver", None);
    s["intrusion_detection"]["blocks_survive_reboot"] = json!(false);
    assert_eq!(server.admin("PUT", "/api/v1/webserver", Some(s)).0, 200);
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    assert_eq!(server.admin("POST", "/api/v1/reboot", None).0, 200);
    assert!(reachable(&server, "127.0.0.2"), "lifted by the Reboot");
    assert!(wait_until(Duration::from_secs(5), || !file.exists()), "the stored blocks are removed");
    guess(&server, "127.0.0.4");
    server.restart().expect("restart");
    assert!(reachable(&server, "127.0.0.4"), "a restart lifts blocks that are not to survive");
    assert!(blocked(&server).is_empty());
}

#[test]
fn block_lengths_out_of_range_are_refused_with_their_field() {
    let server = TestServer::start(&bin()).expect("start");
    let (_, before) = server.admin("GET", "/api/v1/webserver", None);
    for (k, v, field) in [
        ("block_duration_seconds", json!(400_000_000), "intrusion_detection.block_duration_seconds"),
        ("block_duration_max_seconds", json!(5), "intrusion_detection.block_duration_max_seconds"),
    ] {
        let mut s = before.clone();
        s["intrusion_detection"]["block_duration_seconds"] = json!(60);
        s["intrusion_detection"][k] = v;
        let (status, err) = server.admin("PUT", "/api/v1/webserver", Some(s));
        assert_eq!((status, err["error"]["field"].as_str()), (400, Some(field)), "{err}");
    }
    assert_eq!(server.admin("GET", "/api/v1/webserver", None).1, before);
}

#[test]
fn a_stored_block_whose_time_ran_out_while_the_server_was_down_is_dropped() {
    let mut server = guarded(json!({"block_duration_seconds": 2, "blocks_survive_reboot": true}));
    assert_eq!(server.admin("POST", "/api/v1/config/store", None).0, 200);
    guess(&server, "127.0.0.2");
    let until = time_of(&blocked(&server)[0]["until"]);
    let file = server.data_dir().join("blocks.json");
    let stored = || std::fs::read_to_string(&file).unwrap_or_default().contains("127.0.0.2");
    assert!(wait_until(Duration::from_secs(5), stored), "the block is stored");
    // Down while the block ends (killed: nothing lifts it in the file).
    server.kill();
    assert!(wait_until(Duration::from_secs(10), || OffsetDateTime::now_utc() > until));
    assert!(stored(), "still in the file while the server is down");
    server.restart().expect("restart");
    assert!(reachable(&server, "127.0.0.2"), "not restored: its time is up");
    assert!(blocked(&server).is_empty());
    assert!(wait_until(Duration::from_secs(5), || !stored()), "and gone from the file");
}
