//! Micro-benchmarks of the pure core's hot paths: the access-control decision
//! (every connection and request), failure counting (every failed login),
//! the logfile merge (every request) and settings validation (every Set).
//!
//! `cargo bench -p portcullis-core` (criterion; about a minute). The figures
//! and what they mean are in docs/PERFORMANCE.md.

// criterion_group! makes a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis_core::access_control::{
    AccessControlSettings, AccessPolicy, AccessRule, IpNetwork, NoMatch, RuleKind,
};
use portcullis_core::config::Config;
use portcullis_core::intrusion::IntrusionDetector;
use portcullis_core::logfile::Logfile;
use portcullis_core::settings::IntrusionDetectionSettings;
use portcullis_core::{Monotonic, Timestamp};
use time::OffsetDateTime;

/// The largest policy the settings allow: 256 rules (allow, deny, temporary
/// ones; IPv4 and IPv6), 8 trusted proxies, and 1,000 automatic blocks.
fn big_policy() -> (AccessControlSettings, Vec<IpNetwork>) {
    let kinds = [RuleKind::Allow, RuleKind::Deny, RuleKind::TemporaryAllow, RuleKind::TemporaryDeny];
    let rules = (0..256u32)
        .map(|i| {
            let source = if i % 2 == 0 {
                IpNetwork::new(IpAddr::V4(Ipv4Addr::new(10, (i / 2) as u8, 0, 0)), 16)
            } else {
                IpNetwork::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 0)), 48)
            }
            .expect("valid network");
            AccessRule { kind: kinds[i as usize % kinds.len()], source }
        })
        .collect();
    let trusted_proxies =
        (1..=8u8).map(|i| IpNetwork::host(IpAddr::V4(Ipv4Addr::new(192, 168, 0, i)))).collect();
    let settings = AccessControlSettings { enabled: true, no_match: NoMatch::Deny, rules, trusted_proxies };
    let blocks = (0..1000u32)
        .map(|i| IpNetwork::host(IpAddr::V4(Ipv4Addr::new(172, 16, (i / 256) as u8, (i % 256) as u8))))
        .collect();
    (settings, blocks)
}

fn access_control(c: &mut Criterion) {
    let (settings, blocks) = big_policy();
    let mut g = c.benchmark_group("access_control");
    g.bench_function("compile 256 rules + 1000 blocks", |b| {
        b.iter(|| AccessPolicy::compile(black_box(&settings), black_box(&blocks)))
    });
    let policy = AccessPolicy::compile(&settings, &blocks);
    let clients = [
        ("decide: allowed by a rule", IpAddr::V4(Ipv4Addr::new(10, 4, 1, 2))),
        ("decide: blocked automatically", IpAddr::V4(Ipv4Addr::new(172, 16, 3, 7))),
        ("decide: no rule (IPv4)", IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))),
        ("decide: no rule (IPv6)", IpAddr::V6(Ipv6Addr::new(0x2a00, 1, 2, 3, 4, 5, 6, 7))),
    ];
    for (name, ip) in clients {
        g.bench_function(name, |b| b.iter(|| policy.decide(black_box(ip))));
    }
    g.finish();
}

fn failure_counting(c: &mut Criterion) {
    let settings = IntrusionDetectionSettings { block_ip: true, ..Default::default() };
    let now = Timestamp {
        utc: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        monotonic: Monotonic::from_origin(Duration::from_secs(3_600)),
    };
    let mut g = c.benchmark_group("intrusion");
    // One client guessing: its entry exists; every call counts one failure.
    g.bench_function("record_failure: a known client", |b| {
        let mut detector = IntrusionDetector::new(4096);
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        b.iter(|| detector.record_failure(black_box(ip), now, &settings, false))
    });
    // A distributed guess: every call is a new client, in a full table
    // (the oldest entry makes room).
    g.bench_function("record_failure: new clients, table full (4096)", |b| {
        let mut detector = IntrusionDetector::new(4096);
        let mut n = 0u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            let ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, (n >> 16) as u16, n as u16, 0, 0, 0, 1));
            detector.record_failure(black_box(ip), now, &settings, false)
        })
    });
    g.finish();
}

fn logfile_merge(c: &mut Criterion) {
    let now = Timestamp {
        utc: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        monotonic: Monotonic::from_origin(Duration::from_secs(3_600)),
    };
    let mut g = c.benchmark_group("logfile");
    // The common case: the same client again within the timeout, merged
    // into its entry.
    g.bench_function("record: merged into the client's entry", |b| {
        let mut log = Logfile::new(1000);
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        b.iter(|| log.record(black_box(ip), Some("admin"), true, "/api/v1/config/status", now, 60))
    });
    // Many clients: each access a new entry, the oldest dropped (full log).
    g.bench_function("record: a new entry in a full log (1000)", |b| {
        let mut log = Logfile::new(1000);
        let mut n = 0u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)));
            log.record(black_box(ip), None, false, "/1k.bin", now, 60)
        })
    });
    g.finish();
}

fn settings_validation(c: &mut Criterion) {
    let (access_control, _) = big_policy();
    let config = Config { access_control, ..Default::default() };
    let text = serde_json::to_string_pretty(&config).expect("serialise");
    let mut g = c.benchmark_group("settings");
    g.bench_function("validate a configuration with 256 rules", |b| {
        b.iter(|| black_box(&config).validate().expect("valid"))
    });
    g.bench_function("parse + validate the stored file (256 rules)", |b| {
        b.iter_batched(
            || text.clone(),
            |t| Config::parse(&t).expect("parses").config.validate().expect("valid"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn config() -> Criterion {
    // Bounded: about a minute for the whole set.
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = access_control, failure_counting, logfile_merge, settings_validation }
criterion_main!(benches);
