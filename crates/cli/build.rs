//! Release builds link the functions listed in symbol-order.txt side by side,
//! so that the code the server runs fills few pages (see bench/symbol-order).
//! Only where the linker is known to be LLD (Rust 1.90 and later link
//! x86_64-unknown-linux-gnu with it unless told otherwise): other linkers do
//! not know the option. PORTCULLIS_SYMBOL_ORDER=off turns it off.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=PORTCULLIS_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=PORTCULLIS_RELR");
    let setting = env::var("PORTCULLIS_SYMBOL_ORDER").unwrap_or_default();
    if !matches!(setting.as_str(), "" | "off") {
        println!(
            "cargo:warning=PORTCULLIS_SYMBOL_ORDER={setting:?} is not understood (only \"off\"); the order is used"
        );
    }
    let list = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("symbol-order.txt");
    if env::var("PROFILE").as_deref() != Ok("release")
        || setting == "off"
        || env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || env::var_os("RUSTC_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default().contains("link")
        || !list.is_file()
        || !rustc_links_with_lld()
    {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", list.display());
    // Names a newer build no longer has are skipped, silently: the list is a hint.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // The binary is position-independent (ASLR); its relocations take 0.33
    // MiB as RELA entries (24 bytes each) and a few KiB packed as RELR
    // (glibc 2.36 and later load them; LLD marks the binary so that an
    // older glibc refuses it with a clear message instead of misloading it).
    if env::var("PORTCULLIS_RELR").as_deref() != Ok("off") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this rustc links with its own LLD by default (1.90 and later).
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(release) = text.lines().find_map(|l| l.strip_prefix("release: ")) else { return false };
    let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
