//! A corpus of real files made by the `openssl` CLI at test time (no key
//! material is committed), fed through the intake functions. Each file has
//! one expected outcome: accepted, or an exact error code.
//!
//! Run with `--nocapture` to see the tally and the RSA-2048 timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use portcullis_cert::{
    GenerateRequest, IntakeOptions, KeyType, Material, csr_pem_is_valid, describe, generate,
    intake_certificate_for_key, intake_upload, parse_stored,
};
use time::{Duration, OffsetDateTime};

const PASS: &str = "correct horse";

/// Runs `openssl` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    try_openssl(dir, args).unwrap_or_else(|e| panic!("openssl {}: {e}", args.join(" ")))
}

fn try_openssl(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn cat(dir: &Path, names: &[&str]) -> Vec<u8> {
    names.iter().flat_map(|n| read(dir, n)).collect()
}

/// The test CA and the leaves, made once per test binary.
struct Pki {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// Leaf names that could be made (some need optional OpenSSL features).
    made: Vec<&'static str>,
    /// Notes on what could not be made.
    skipped: Vec<String>,
}

/// Leaf key types: (name, genpkey arguments).
const LEAVES: &[(&str, &[&str])] = &[
    ("rsa2048", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
    ("rsa1024", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
    ("rsa4096", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"]),
    ("p256", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    ("p384", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
    ("p521", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"]),
    ("ed25519", &["-algorithm", "ED25519"]),
    ("ed448", &["-algorithm", "ED448"]),
    ("dsa", &["-paramfile", "dsaparam.pem"]),
    ("other2048", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
];

const LEAF_EXT: &str = "[v3]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\nsubjectAltName = DNS:${NAME}.example.test, IP:192.0.2.10\n";
const CA_EXT: &str = "[v3]\nbasicConstraints = critical, CA:TRUE, pathlen:0\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n";

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(build_pki)
}

fn build_pki() -> Pki {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let d = dir.as_path();
    write(d, "ca.cnf", CA_EXT.as_bytes());
    // Root: P-384 self-signed. Intermediate: RSA-2048 signed by the root.
    openssl(d, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "root.key"]);
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/O=portcullis tests/CN=Test Root CA",
            "-days",
            "3650",
            "-out",
            "root.crt",
        ],
    );
    openssl(d, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "inter.key"]);
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "inter.key",
            "-subj",
            "/O=portcullis tests/CN=Test Intermediate CA",
            "-out",
            "inter.csr",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "inter.csr",
            "-CA",
            "root.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "3000",
            "-extfile",
            "ca.cnf",
            "-extensions",
            "v3",
            "-out",
            "inter.crt",
        ],
    );

    let mut made = Vec::new();
    let mut skipped = Vec::new();
    if let Err(e) = try_openssl(
        d,
        &[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:1024",
            "-out",
            "dsaparam.pem",
        ],
    ) {
        skipped.push(format!("DSA parameters: {e}"));
    }
    for &(name, gen_args) in LEAVES {
        match make_leaf(d, name, gen_args, "365") {
            Ok(()) => made.push(name),
            Err(e) => skipped.push(format!("{name}: {}", e.lines().next().unwrap_or_default())),
        }
    }
    // A leaf valid for one day, for expiry and not-yet-valid cases.
    make_leaf_with_key(d, "short", "rsa2048.key", "1").expect("short-lived leaf");
    Pki { _tmp: tmp, dir, made, skipped }
}

fn make_leaf(d: &Path, name: &str, gen_args: &[&str], days: &str) -> Result<(), String> {
    let key = format!("{name}.key");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(gen_args);
    args.extend_from_slice(&["-out", &key]);
    try_openssl(d, &args)?;
    make_leaf_with_key(d, name, &key, days)
}

fn make_leaf_with_key(d: &Path, name: &str, key: &str, days: &str) -> Result<(), String> {
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let ext = format!("{name}.cnf");
    write(d, &ext, LEAF_EXT.replace("${NAME}", name).as_bytes());
    try_openssl(
        d,
        &["req", "-new", "-key", key, "-subj", &format!("/CN={name}.example.test"), "-out", &csr],
    )?;
    try_openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "inter.crt",
            "-CAkey",
            "inter.key",
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            &ext,
            "-extensions",
            "v3",
            "-out",
            &crt,
        ],
    )?;
    Ok(())
}

/// One corpus entry.
struct Case {
    name: String,
    cert: Vec<u8>,
    key: Option<Vec<u8>>,
    passphrase: Option<&'static str>,
    now: OffsetDateTime,
    clock_trusted: bool,
    /// "accepted" or the expected error code.
    expect: &'static str,
}

fn case(name: &str, cert: Vec<u8>, key: Option<Vec<u8>>, expect: &'static str) -> Case {
    Case {
        name: name.to_owned(),
        cert,
        key,
        passphrase: None,
        now: OffsetDateTime::now_utc(),
        clock_trusted: true,
        expect,
    }
}

fn with_pass(mut c: Case, passphrase: &'static str) -> Case {
    c.passphrase = Some(passphrase);
    c
}

/// Builds every corpus file and its expected outcome.
fn corpus(p: &Pki, notes: &mut Vec<String>) -> Vec<Case> {
    let d = p.dir.as_path();
    let mut cases = Vec::new();
    let chain = |leaf: &str| cat(d, &[&format!("{leaf}.crt"), "inter.crt"]);

    // Every key type, certificate and key as two files (key as genpkey writes it: PKCS#8).
    for &(name, _) in LEAVES {
        if !p.made.contains(&name) {
            notes.push(format!("not in corpus (openssl could not make it): {name}"));
            continue;
        }
        let expect = match name {
            "rsa1024" => "rsa_key_too_small",
            "p521" | "ed448" | "dsa" => "unsupported_key_type",
            _ => "accepted",
        };
        cases.push(case(
            &format!("{name} pkcs8, two files"),
            chain(name),
            Some(read(d, &format!("{name}.key"))),
            expect,
        ));
    }
    if p.made.contains(&"dsa") {
        openssl(d, &["pkey", "-in", "dsa.key", "-traditional", "-out", "dsa.trad.key"]);
        let label =
            String::from_utf8_lossy(&read(d, "dsa.trad.key")).lines().next().unwrap_or_default().to_owned();
        cases.push(case(
            &format!("dsa traditional ({label})"),
            chain("dsa"),
            Some(read(d, "dsa.trad.key")),
            "unsupported_key_type",
        ));
    }

    // Key forms of the RSA-2048 leaf.
    openssl(d, &["rsa", "-in", "rsa2048.key", "-traditional", "-out", "rsa2048.pkcs1.key"]);
    cases.push(case("rsa2048 pkcs1", chain("rsa2048"), Some(read(d, "rsa2048.pkcs1.key")), "accepted"));
    openssl(d, &["ec", "-in", "p256.key", "-out", "p256.sec1.key"]);
    cases.push(case("p256 sec1", chain("p256"), Some(read(d, "p256.sec1.key")), "accepted"));
    openssl(d, &["ec", "-in", "p384.key", "-out", "p384.sec1.key"]);
    cases.push(case("p384 sec1", chain("p384"), Some(read(d, "p384.sec1.key")), "accepted"));

    // Encrypted keys: (file, leaf, openssl arguments writing the file, needs legacy provider).
    let passout = format!("pass:{PASS}");
    let encrypted: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "rsa2048.p8.aes256.key",
            "rsa2048",
            vec!["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "rsa2048.key"],
        ),
        ("rsa2048.p8.des3.key", "rsa2048", vec!["pkcs8", "-topk8", "-v2", "des3", "-in", "rsa2048.key"]),
        ("p256.p8.aes128.key", "p256", vec!["pkcs8", "-topk8", "-v2", "aes-128-cbc", "-in", "p256.key"]),
        (
            "ed25519.p8.aes256.key",
            "ed25519",
            vec!["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "ed25519.key"],
        ),
        ("p256.p8.scrypt.key", "p256", vec!["pkcs8", "-topk8", "-scrypt", "-in", "p256.key"]),
        ("rsa2048.trad.aes256.key", "rsa2048", vec!["rsa", "-traditional", "-aes256", "-in", "rsa2048.key"]),
        ("rsa2048.trad.aes192.key", "rsa2048", vec!["rsa", "-traditional", "-aes192", "-in", "rsa2048.key"]),
        ("rsa2048.trad.des3.key", "rsa2048", vec!["rsa", "-traditional", "-des3", "-in", "rsa2048.key"]),
        ("p256.trad.aes128.key", "p256", vec!["ec", "-aes128", "-in", "p256.key"]),
        ("p384.trad.aes256.key", "p384", vec!["ec", "-aes256", "-in", "p384.key"]),
        ("p384.trad.des3.key", "p384", vec!["ec", "-des3", "-in", "p384.key"]),
    ];
    for (file, leaf, mut args) in encrypted {
        args.extend_from_slice(&["-passout", &passout, "-out", file]);
        openssl(d, &args);
        let key = read(d, file);
        cases.push(with_pass(case(file, chain(leaf), Some(key.clone()), "accepted"), PASS));
        cases.push(with_pass(
            case(&format!("{file}, wrong passphrase"), chain(leaf), Some(key.clone()), "wrong_passphrase"),
            "Correct horse",
        ));
        cases.push(case(&format!("{file}, no passphrase"), chain(leaf), Some(key), "passphrase_required"));
    }
    // DES-CBC needs OpenSSL 3's legacy provider; without it `openssl rsa -des`
    // silently writes a plain key, so check the header.
    let des = try_openssl(
        d,
        &[
            "rsa",
            "-provider",
            "legacy",
            "-provider",
            "default",
            "-traditional",
            "-des",
            "-in",
            "rsa2048.key",
            "-passout",
            &passout,
            "-out",
            "rsa2048.trad.des.key",
        ],
    );
    if des.is_ok() && String::from_utf8_lossy(&read(d, "rsa2048.trad.des.key")).contains("DES-CBC") {
        cases.push(with_pass(
            case(
                "rsa2048.trad.des.key (DES-CBC)",
                chain("rsa2048"),
                Some(read(d, "rsa2048.trad.des.key")),
                "accepted",
            ),
            PASS,
        ));
    } else {
        notes.push("not in corpus: DES-CBC traditional key (no OpenSSL legacy provider)".into());
    }
    // PBES1 (PKCS#12-style) encryption: not supported, with advice.
    match try_openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-v1",
            "PBE-SHA1-3DES",
            "-in",
            "rsa2048.key",
            "-passout",
            &passout,
            "-out",
            "rsa2048.pbes1.key",
        ],
    ) {
        Ok(_) => cases.push(with_pass(
            case(
                "rsa2048 PBES1 PBE-SHA1-3DES",
                chain("rsa2048"),
                Some(read(d, "rsa2048.pbes1.key")),
                "unsupported_encryption",
            ),
            PASS,
        )),
        Err(_) => notes.push("not in corpus: PBES1 key".into()),
    }

    // Layouts.
    let combined = cat(d, &["rsa2048.crt", "inter.crt", "rsa2048.key"]);
    write(d, "combined.pem", &combined);
    cases.push(case("combined file (cert, chain, key)", combined.clone(), None, "accepted"));
    cases.push(case(
        "key before certificate",
        cat(d, &["p256.key", "p256.crt", "inter.crt"]),
        None,
        "accepted",
    ));
    cases.push(case(
        "intermediate before leaf",
        cat(d, &["inter.crt", "rsa2048.crt"]),
        Some(read(d, "rsa2048.key")),
        "accepted",
    ));
    cases.push(case(
        "full chain with root, shuffled",
        cat(d, &["root.crt", "rsa2048.crt", "inter.crt"]),
        Some(read(d, "rsa2048.key")),
        "accepted",
    ));
    cases.push(case("leaf only, no chain", read(d, "p384.crt"), Some(read(d, "p384.key")), "accepted"));
    cases.push(case(
        "cert and key swapped between fields",
        read(d, "p256.key"),
        Some(chain("p256")),
        "accepted",
    ));
    let crlf: Vec<u8> = String::from_utf8_lossy(&combined).replace('\n', "\r\n").into_bytes();
    cases.push(case("CRLF line ends", crlf.clone(), None, "accepted"));
    cases.push(case(
        "CRLF, two files",
        String::from_utf8_lossy(&chain("p256")).replace('\n', "\r\n").into_bytes(),
        Some(String::from_utf8_lossy(&read(d, "p256.trad.aes128.key")).replace('\n', "\r\n").into_bytes()),
        "accepted",
    ));
    if let Some(c) = cases.last_mut() {
        c.passphrase = Some(PASS);
    }
    let text = openssl(d, &["x509", "-in", "rsa2048.crt", "-text"]);
    let mut text_chain = text.clone();
    text_chain.extend(openssl(d, &["x509", "-in", "inter.crt", "-text"]));
    cases.push(case("openssl x509 -text output", text_chain, Some(read(d, "rsa2048.key")), "accepted"));
    openssl(
        d,
        &[
            "pkcs12",
            "-export",
            "-in",
            "rsa2048.crt",
            "-inkey",
            "rsa2048.key",
            "-certfile",
            "inter.crt",
            "-name",
            "camera",
            "-passout",
            "pass:p12",
            "-out",
            "bundle.p12",
        ],
    );
    openssl(d, &["pkcs12", "-in", "bundle.p12", "-nodes", "-passin", "pass:p12", "-out", "bundle.pem"]);
    let bundle = read(d, "bundle.pem");
    assert!(String::from_utf8_lossy(&bundle).contains("Bag Attributes"), "pkcs12 output has bag attributes");
    cases.push(case("openssl pkcs12 -nodes output (Bag Attributes)", bundle, None, "accepted"));
    cases.push(case("PKCS#12 file itself", read(d, "bundle.p12"), None, "der_not_pem"));
    let trusted = openssl(d, &["x509", "-in", "p256.crt", "-trustout", "-addtrust", "serverAuth"]);
    assert!(String::from_utf8_lossy(&trusted).contains("TRUSTED CERTIFICATE"));
    cases.push(case("TRUSTED CERTIFICATE form", trusted, Some(read(d, "p256.key")), "accepted"));
    cases.push(case(
        "EC PARAMETERS block before key",
        cat(d, &["p256.crt"]),
        Some({
            let mut k = openssl(d, &["ecparam", "-name", "prime256v1"]);
            k.extend(read(d, "p256.sec1.key"));
            k
        }),
        "accepted",
    ));
    cases.push(with_pass(
        case("passphrase given for a plain key", chain("p256"), Some(read(d, "p256.key")), "accepted"),
        PASS,
    ));

    // Validity.
    let short = || cat(d, &["short.crt", "inter.crt"]);
    let mut c = case("expired (1-day cert, now + 30 days)", short(), Some(read(d, "rsa2048.key")), "expired");
    c.now += Duration::days(30);
    cases.push(c);
    let mut c = case("not yet valid (now - 30 days)", short(), Some(read(d, "rsa2048.key")), "not_yet_valid");
    c.now -= Duration::days(30);
    cases.push(c);
    let mut c = case("expired, clock not trusted", short(), Some(read(d, "rsa2048.key")), "accepted");
    c.now += Duration::days(30);
    c.clock_trusted = false;
    cases.push(c);

    // Wrong things in the right place.
    cases.push(case(
        "mismatched key (other RSA key)",
        chain("rsa2048"),
        Some(read(d, "other2048.key")),
        "key_mismatch",
    ));
    cases.push(case(
        "mismatched key (EC key for RSA cert)",
        chain("rsa2048"),
        Some(read(d, "p256.key")),
        "key_mismatch",
    ));
    cases.push(case("certificate without key", chain("rsa2048"), None, "no_private_key"));
    cases.push(case("key without certificate", read(d, "rsa2048.key"), None, "no_certificate"));
    openssl(d, &["x509", "-in", "rsa2048.crt", "-outform", "der", "-out", "rsa2048.der"]);
    cases.push(case("DER certificate", read(d, "rsa2048.der"), Some(read(d, "rsa2048.key")), "der_not_pem"));
    openssl(d, &["pkey", "-in", "rsa2048.key", "-outform", "der", "-out", "rsa2048.key.der"]);
    cases.push(case("DER key", chain("rsa2048"), Some(read(d, "rsa2048.key.der")), "der_not_pem"));
    cases.push(case(
        "CSR as certificate",
        read(d, "rsa2048.csr"),
        Some(read(d, "rsa2048.key")),
        "csr_not_certificate",
    ));
    cases.push(case("empty certificate file", Vec::new(), Some(read(d, "rsa2048.key")), "empty"));
    cases.push(case("empty key file", chain("rsa2048"), Some(b"\n\n".to_vec()), "empty"));
    let crt = read(d, "rsa2048.crt");
    cases.push(case(
        "truncated certificate",
        crt[..crt.len() / 2].to_vec(),
        Some(read(d, "rsa2048.key")),
        "truncated",
    ));
    let key = read(d, "rsa2048.key");
    cases.push(case("truncated key", chain("rsa2048"), Some(key[..key.len() / 2].to_vec()), "truncated"));
    cases.push(case("garbage text", b"this is not a certificate\n".to_vec(), None, "not_pem"));
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
    cases.push(case("garbage binary", noise, None, "not_pem"));
    let corrupt = String::from_utf8_lossy(&crt).replacen("MII", "M!I", 1).into_bytes();
    cases.push(case("corrupt base64", corrupt, Some(read(d, "rsa2048.key")), "invalid_pem"));
    let mut big = combined.clone();
    big.resize(2 * 1024 * 1024, b'\n');
    cases.push(case("2 MiB file", big, None, "too_large"));
    let mut big_key = key.clone();
    big_key.resize(2 * 1024 * 1024, b' ');
    cases.push(case("2 MiB key file", chain("rsa2048"), Some(big_key), "too_large"));
    cases
}

#[test]
fn corpus_outcomes() {
    let p = pki();
    let mut notes = p.skipped.clone();
    let cases = corpus(p, &mut notes);
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    println!("\n{:<60} {:<24} outcome", "file", "expected");
    for c in &cases {
        let opts = IntakeOptions { now: c.now, clock_trusted: c.clock_trusted };
        let outcome = match intake_upload(&c.cert, c.key.as_deref(), c.passphrase, &opts) {
            Ok((material, warnings)) => {
                // Whatever is accepted must be servable and describable.
                material.certified_key().expect("accepted material loads into rustls");
                describe(&material.chain, c.now).expect("accepted material describes");
                if !warnings.is_empty() {
                    println!("{:<60} warnings: {warnings:?}", "");
                }
                "accepted".to_owned()
            }
            Err(e) => {
                assert!(!e.to_string().contains("PRIVATE KEY-----"), "no key material in messages");
                e.code().as_str().to_owned()
            }
        };
        println!("{:<60} {:<24} {outcome}", c.name, c.expect);
        *tally.entry(outcome.clone()).or_default() += 1;
        if outcome != c.expect {
            failures.push(format!("{}: expected {}, got {outcome}", c.name, c.expect));
        }
    }
    println!("\ncorpus tally ({} files):", cases.len());
    for (outcome, n) in &tally {
        println!("  {outcome:<24} {n}");
    }
    for note in &notes {
        println!("  note: {note}");
    }
    assert!(failures.is_empty(), "unexpected outcomes:\n{}", failures.join("\n"));
}

#[test]
fn accepted_chain_is_leaf_first_and_verifies() {
    let p = pki();
    let d = p.dir.as_path();
    let opts = IntakeOptions::at(OffsetDateTime::now_utc());
    let (material, warnings) =
        intake_upload(&cat(d, &["inter.crt", "root.crt", "rsa2048.key", "rsa2048.crt"]), None, None, &opts)
            .expect("accepted");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(material.chain.len(), 3);
    let info = describe(&material.chain, opts.now).expect("describes");
    assert_eq!(info.subject, "CN=rsa2048.example.test");
    assert_eq!(info.issuer, "O=portcullis tests, CN=Test Intermediate CA");
    assert_eq!(info.subject_alt_names, vec!["DNS:rsa2048.example.test", "IP:192.0.2.10"]);
    assert_eq!((info.key_type.as_str(), info.key_bits), ("RSA", 2048));
    assert!(!info.self_signed);
    assert_eq!(info.chain_length, 3);
    // The fingerprint matches OpenSSL's.
    let fp = String::from_utf8_lossy(&openssl(
        d,
        &["x509", "-in", "rsa2048.crt", "-noout", "-fingerprint", "-sha256"],
    ))
    .trim()
    .to_owned();
    assert_eq!(fp, format!("sha256 Fingerprint={}", info.fingerprint_sha256));
    // OpenSSL verifies the chain we would serve.
    write(d, "served.pem", material.chain_pem().as_bytes());
    openssl(d, &["verify", "-CAfile", "root.crt", "-untrusted", "served.pem", "served.pem"]);
    // The stored form reads back identically, and the key is PKCS#8.
    assert!(material.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    let again = parse_stored(material.chain_pem().as_bytes(), material.key_pem().as_bytes()).expect("stored");
    assert_eq!(again.chain, material.chain);
}

#[test]
fn describe_reports_key_types() {
    let p = pki();
    let d = p.dir.as_path();
    let now = OffsetDateTime::now_utc();
    for (name, key_type, bits, curve) in [
        ("rsa4096", "RSA", 4096, None),
        ("p256", "ECDSA", 256, Some("P-256")),
        ("p384", "ECDSA", 384, Some("P-384")),
        ("ed25519", "Ed25519", 256, None),
    ] {
        let (m, _) = intake_upload(
            &read(d, &format!("{name}.crt")),
            Some(&read(d, &format!("{name}.key"))),
            None,
            &IntakeOptions::at(now),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = m.describe(now).expect("describes");
        assert_eq!(
            (info.key_type.as_str(), info.key_bits, info.curve.as_deref()),
            (key_type, bits, curve),
            "{name}"
        );
        assert!((363..=365).contains(&info.days_until_expiry), "{name}: {}", info.days_until_expiry);
    }
}

/// PKCS#1 and SEC1 keys come out as PKCS#8 that OpenSSL reads as the same key.
#[test]
fn legacy_keys_are_stored_as_pkcs8() {
    let p = pki();
    let d = p.dir.as_path();
    let now = OffsetDateTime::now_utc();
    for (crt, key) in [("rsa2048.crt", "rsa2048.pkcs1.key"), ("p384.crt", "p384.sec1.key")] {
        let (m, _) = intake_upload(&read(d, crt), Some(&read(d, key)), None, &IntakeOptions::at(now))
            .expect("accepted");
        let pem = m.key_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        write(d, "converted.key", pem.as_bytes());
        let ours = openssl(d, &["pkey", "-in", "converted.key", "-pubout"]);
        let theirs = openssl(d, &["pkey", "-in", key, "-pubout"]);
        assert_eq!(ours, theirs, "{key}");
    }
}

fn generated_files(dir: &Path, tag: &str, key_type: KeyType) -> (portcullis_cert::Generated, Material) {
    let mut req = GenerateRequest::new("camera.example.test");
    req.country = Some("de".into());
    req.state = Some("Bayern".into());
    req.locality = Some("München".into());
    req.organization = Some("Example GmbH".into());
    req.organizational_unit = Some("R&D".into());
    req.email = Some("admin@example.test".into());
    req.key_type = key_type;
    req.validity_days = 397;
    let g = generate(&req, OffsetDateTime::now_utc(), &mut rand::rng()).expect("generates");
    write(dir, &format!("{tag}.crt"), g.chain_pem.as_bytes());
    write(dir, &format!("{tag}.csr"), g.csr_pem.as_bytes());
    let m = parse_stored(g.chain_pem.as_bytes(), g.key_pem.as_bytes()).expect("stored");
    (g, m)
}

#[test]
fn generated_certificate_and_csr_pass_openssl() {
    let p = pki();
    let d = p.dir.as_path();
    for (tag, kt) in [("gen-rsa", KeyType::Rsa2048), ("gen-ec", KeyType::EcdsaP256)] {
        let (g, _) = generated_files(d, tag, kt);
        assert!(g.warnings.is_empty());
        let text =
            String::from_utf8_lossy(&openssl(d, &["x509", "-noout", "-text", "-in", &format!("{tag}.crt")]))
                .into_owned();
        for needle in [
            "Version: 3 (0x2)",
            "X509v3 Subject Alternative Name",
            "DNS:camera.example.test",
            "CA:FALSE",
            "TLS Web Server Authentication",
            "Digital Signature, Key Encipherment",
            "C = DE, ST = Bayern",
        ] {
            assert!(text.contains(needle), "{tag}: {needle} missing in\n{text}");
        }
        let verify = Command::new("openssl")
            .args(["req", "-verify", "-noout", "-text", "-in", &format!("{tag}.csr")])
            .current_dir(d)
            .output()
            .expect("runs");
        assert!(verify.status.success(), "{tag}: req -verify failed");
        let all =
            format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
        assert!(all.contains("verify OK"), "{all}");
        assert!(all.contains("DNS:camera.example.test"), "CSR carries the SAN: {all}");
        assert!(csr_pem_is_valid(g.csr_pem.as_bytes()));
        assert!(!csr_pem_is_valid(g.chain_pem.as_bytes()));
    }
}

#[test]
fn csr_signed_by_ca_is_taken_for_its_key() {
    let p = pki();
    let d = p.dir.as_path();
    let (_, pending) = generated_files(d, "gen-ca", KeyType::EcdsaP256);
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "gen-ca.csr",
            "-CA",
            "inter.crt",
            "-CAkey",
            "inter.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-copy_extensions",
            "copy",
            "-out",
            "gen-ca.signed.crt",
        ],
    );
    let opts = IntakeOptions::at(OffsetDateTime::now_utc());
    // The CA's answer, intermediate first as some CAs send it.
    let upload = cat(d, &["inter.crt", "gen-ca.signed.crt"]);
    let (m, warnings) = intake_certificate_for_key(&upload, &pending.key, &opts).expect("accepted");
    assert!(warnings.is_empty(), "{warnings:?}");
    let signed = openssl(d, &["x509", "-in", "gen-ca.signed.crt", "-outform", "der"]);
    let inter = openssl(d, &["x509", "-in", "inter.crt", "-outform", "der"]);
    assert_eq!(m.chain.len(), 2);
    assert_eq!(m.chain[0].as_ref(), signed.as_slice(), "leaf first");
    assert_eq!(m.chain[1].as_ref(), inter.as_slice());
    m.certified_key().expect("servable");
    let info = m.describe(opts.now).expect("describes");
    assert_eq!(info.subject_alt_names, vec!["DNS:camera.example.test"]);

    // A certificate for another key is refused.
    let err = intake_certificate_for_key(&chain_of(d, "p256"), &pending.key, &opts).expect_err("mismatch");
    assert_eq!((err.code().as_str(), err.field()), ("key_mismatch", "certificate"));
    // The CSR itself is not a certificate.
    let err = intake_certificate_for_key(&read(d, "gen-ca.csr"), &pending.key, &opts).expect_err("csr");
    assert_eq!(err.code(), "csr_not_certificate");
}

fn chain_of(d: &Path, leaf: &str) -> Vec<u8> {
    cat(d, &[&format!("{leaf}.crt"), "inter.crt"])
}

#[test]
fn rsa2048_generation_time() {
    let now = OffsetDateTime::now_utc();
    let req = GenerateRequest::new("camera.example.test");
    let mut ms: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            generate(&req, now, &mut rand::rng()).expect("generates");
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "RSA-2048 generate (key + self-signed cert + CSR), 5 runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms[2], ms[0], ms[4]
    );
}
