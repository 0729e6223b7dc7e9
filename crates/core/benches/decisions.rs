//! CrowdSec decisions at the bound: 100,000 bans (SPEC §9, issue 20).
//!
//! `cargo bench -p portcullis-core --bench decisions` (about half a minute).
//! Prints the memory the set takes (its own estimate from its tables'
//! capacities, and the process's resident set before and after), then
//! measures the connection-time decision (a banned address, a free one, an
//! address under a range) and applying a startup stream of 100,000
//! decisions. Figures in docs/FLEET.md.

// criterion_group! makes a public function without a doc comment.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis_core::Monotonic;
use portcullis_core::access_control::{AccessControlSettings, AccessPolicy};
use portcullis_core::crowdsec::{DecisionSet, DecisionStream, LapiDecision, admit};

const DECISIONS: u32 = 100_000;

/// 100,000 decisions as the LAPI sends them at startup: 90% IPv4
/// addresses, 9% IPv6 addresses, 1% IPv4 /24 ranges; durations spread over
/// four hours; a handful of scenarios and two origins.
fn stream() -> DecisionStream {
    let scenarios = [
        "crowdsecurity/ssh-bf",
        "crowdsecurity/http-probing",
        "portcullis/login-bf",
        "crowdsecurity/http-bad-user-agent",
    ];
    let new = (0..DECISIONS)
        .map(|i| {
            let (scope, value) = match i % 100 {
                0 => ("Range", format!("{}.{}.{}.0/24", 100 + (i >> 16) % 100, (i >> 8) & 0xff, i & 0xff)),
                1..=9 => {
                    ("Ip", Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 1).to_string())
                }
                _ => ("Ip", Ipv4Addr::from(0x0a00_0000 + i).to_string()),
            };
            LapiDecision {
                id: Some(i64::from(i)),
                origin: if i % 3 == 0 { "cscli".into() } else { "crowdsec".into() },
                kind: "ban".into(),
                scope: scope.into(),
                value,
                duration: format!("{}h{}m{}.5s", 3 - i % 4, i % 60, i % 60),
                scenario: scenarios[i as usize % scenarios.len()].into(),
            }
        })
        .collect();
    DecisionStream { new: Some(new), deleted: None }
}

/// VmRSS of this process, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn memory() {
    let stream = stream();
    let before = rss_kib();
    let mut set = DecisionSet::new(DECISIONS as usize);
    let out = set.apply(&stream, Monotonic::ZERO);
    let after = rss_kib();
    assert_eq!(out.added, DECISIONS as usize, "every decision is held");
    let estimate = set.heap_bytes();
    println!(
        "decisions: {} held; estimated heap {:.1} MiB ({:.0} bytes per decision)",
        set.len(),
        estimate as f64 / 1_048_576.0,
        estimate as f64 / f64::from(DECISIONS)
    );
    if let (Some(b), Some(a)) = (before, after) {
        let grown = a.saturating_sub(b);
        println!(
            "decisions: resident set grew by {:.1} MiB ({:.0} bytes per decision) while the set was built",
            grown as f64 / 1024.0,
            grown as f64 * 1024.0 / f64::from(DECISIONS)
        );
    }
    black_box(&set);
}

fn decisions(c: &mut Criterion) {
    memory();
    let stream = stream();
    let mut set = DecisionSet::new(DECISIONS as usize);
    set.apply(&stream, Monotonic::ZERO);
    let policy = AccessPolicy::compile(&AccessControlSettings { enabled: true, ..Default::default() }, &[]);
    let now = Monotonic::from_origin(Duration::from_secs(60));
    let banned = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 4242));
    let free = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let in_range = IpAddr::V4(Ipv4Addr::new(100, 0, 0, 77));
    assert!(set.is_banned(banned, now) && set.is_banned(in_range, now) && !set.is_banned(free, now));
    let mut g = c.benchmark_group("crowdsec decisions (100,000 held)");
    g.bench_function("admit: a banned address", |b| b.iter(|| admit(&policy, &set, black_box(banned), now)));
    g.bench_function("admit: an address under no ban", |b| {
        b.iter(|| admit(&policy, &set, black_box(free), now))
    });
    g.bench_function("admit: an address under a /24 ban", |b| {
        b.iter(|| admit(&policy, &set, black_box(in_range), now))
    });
    g.bench_function("admit: an IPv6 address under no ban", |b| {
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1));
        b.iter(|| admit(&policy, &set, black_box(v6), now))
    });
    g.sample_size(10);
    g.bench_function("apply a startup stream of 100,000 decisions", |b| {
        b.iter_batched(
            || DecisionSet::new(DECISIONS as usize),
            |mut s| {
                s.apply(&stream, Monotonic::ZERO);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("parse a startup stream of 100,000 decisions (JSON)", |b| {
        let json =
            serde_json::to_vec(&serde_json::json!({"new": stream.new, "deleted": null})).expect("json");
        b.iter(|| serde_json::from_slice::<DecisionStream>(black_box(&json)).expect("parses"))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = decisions }
criterion_main!(benches);
