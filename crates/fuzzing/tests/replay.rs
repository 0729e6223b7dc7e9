//! Replays every fuzz target's seeds, grown corpus and crash regressions on
//! the stable toolchain, through the same bodies the cargo-fuzz targets call.
//!
//! Inputs, per target `T`:
//! * the seeds `fuzz/make-corpus` generates (run here into a temporary folder;
//!   it needs `openssl`, which the test dependencies install);
//! * `fuzz/corpus/T/*`, the corpus a local `scripts/fuzz` run grew (absent in CI);
//! * `fuzz/regressions/T/*`, every crash ever found, committed with its fix.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    out
}

fn replay(target: &str) {
    let body = portcullis_fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .expect("a known target");
    let seeds = tempfile::tempdir().expect("tempdir");
    let status = Command::new(fuzz_dir().join("make-corpus"))
        .arg(seeds.path())
        .arg(target)
        .status()
        .expect("running fuzz/make-corpus");
    assert!(status.success(), "fuzz/make-corpus failed");
    let generated = files(&seeds.path().join(target));
    assert!(generated.len() >= 5, "make-corpus wrote {} seeds for {target}", generated.len());
    let mut inputs = generated;
    inputs.extend(files(&fuzz_dir().join("corpus").join(target)));
    inputs.extend(files(&fuzz_dir().join("regressions").join(target)));
    for input in &inputs {
        let data = std::fs::read(input).expect("read input");
        if let Err(panic) = std::panic::catch_unwind(|| body(&data)) {
            eprintln!("{target} panics on {}", input.display());
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn every_target_has_a_replay_test() {
    let names: Vec<&str> = portcullis_fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["cert_intake", "config", "authorization", "multipart", "access_control"]);
    for name in names {
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
    }
}

#[test]
fn cert_intake() {
    replay("cert_intake");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn authorization() {
    replay("authorization");
}

#[test]
fn multipart() {
    replay("multipart");
}

#[test]
fn access_control() {
    replay("access_control");
}
