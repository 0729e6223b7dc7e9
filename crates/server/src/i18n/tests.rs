use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::response::IntoResponse;
use http::StatusCode;

use super::*;
use crate::error::ApiError;

/// The translation sources, as the build script reads them.
const SOURCES: [(&str, &str); 8] = [
    ("en", include_str!("../../i18n/en.json")),
    ("de", include_str!("../../i18n/de.json")),
    ("es", include_str!("../../i18n/es.json")),
    ("fr", include_str!("../../i18n/fr.json")),
    ("it", include_str!("../../i18n/it.json")),
    ("ja", include_str!("../../i18n/ja.json")),
    ("ru", include_str!("../../i18n/ru.json")),
    ("zh", include_str!("../../i18n/zh.json")),
];

fn section(lang: &str, text: &str, name: &str) -> BTreeMap<String, String> {
    let file: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{lang}.json: {e}"));
    serde_json::from_value(file[name].clone()).unwrap_or_else(|e| panic!("{lang}.json {name}: {e}"))
}

/// The `{name}` placeholders of a text, sorted.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = text
        .match_indices('{')
        .filter_map(|(i, _)| {
            let rest = &text[i + 1..];
            let end = rest.find('}')?;
            let name = &rest[..end];
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(name)
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn the_languages_are_those_of_the_build_script_in_its_order() {
    let codes: Vec<&str> = Lang::ALL.iter().map(|l| l.code()).collect();
    let sources: Vec<&str> = SOURCES.iter().map(|(l, _)| *l).collect();
    assert_eq!(codes, sources);
    for (i, l) in Lang::ALL.iter().enumerate() {
        assert_eq!(*l as usize, i, "{l:?}");
    }
}

/// No UI text and no error text is missing in any language, none is left
/// empty, and every translation keeps the English text's placeholders.
#[test]
fn every_language_has_every_text_with_the_same_placeholders() {
    let mut problems = Vec::new();
    for name in ["ui", "errors"] {
        let english = section("en", SOURCES[0].1, name);
        assert!(english.len() > if name == "ui" { 300 } else { 100 }, "{name}: {}", english.len());
        for (lang, text) in &SOURCES[1..] {
            let texts = section(lang, text, name);
            for (key, en) in &english {
                match texts.get(key) {
                    None => problems.push(format!("{lang}: {name}.{key} is missing")),
                    Some(t) if t.trim().is_empty() => problems.push(format!("{lang}: {name}.{key} is empty")),
                    Some(t) if placeholders(t) != placeholders(en) => problems.push(format!(
                        "{lang}: {name}.{key} has placeholders {:?}, English {:?}",
                        placeholders(t),
                        placeholders(en)
                    )),
                    Some(_) => {}
                }
            }
            for key in texts.keys().filter(|k| !english.contains_key(*k)) {
                problems.push(format!("{lang}: {name}.{key} is not in English"));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

/// The workspace's crates, whose sources the scan below reads.
fn workspace_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for c in std::fs::read_dir(&crates).expect("crates/").flatten() {
        walk(&c.path().join("src"), &mut out);
    }
    out
}

/// The arguments of the call whose `(` is at `open`, as written (top level only).
fn call_arguments(src: &str, open: usize) -> Vec<&str> {
    let bytes = src.as_bytes();
    let (mut depth, mut start, mut in_str, mut i) = (0usize, open + 1, false, open);
    let mut args = Vec::new();
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        args.push(src[start..i].trim());
                        return args;
                    }
                }
                b',' if depth == 1 => {
                    args.push(src[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    args
}

/// A string literal that looks like an error code (`snake_case`).
fn code_literal(arg: &str) -> Option<&str> {
    let inner = arg.strip_prefix('"')?.strip_suffix('"')?;
    (inner.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && inner.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    .then_some(inner)
}

/// Every error code the server can answer with, found in the sources: the
/// code argument of `ValidationError::new`, `ApiError::new`,
/// `ApiError::conflict` and the certificate store's state errors, and the
/// arms of every `fn code(..) -> &'static str` and of `code_for_status`
/// (the certificate, ACME, notification and address errors map themselves
/// to codes there). Test modules are left out.
fn codes_in_sources() -> BTreeMap<String, BTreeSet<String>> {
    const CALLS: [(&str, usize); 5] = [
        ("ValidationError::new(", 1),
        ("ApiError::new(", 1),
        ("ApiError::conflict(", 0),
        ("CertStoreError::state(", 0),
        ("Self::state(", 0),
    ];
    let mut codes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // The language module's `Lang::code` names languages, not errors.
    for path in workspace_sources().into_iter().filter(|p| !p.ends_with("server/src/i18n.rs")) {
        let text = std::fs::read_to_string(&path).expect("source");
        let src = text.split("#[cfg(test)]").next().unwrap_or("");
        let file = path.display().to_string();
        let mut add = |code: &str| {
            codes.entry(code.to_owned()).or_default().insert(file.clone());
        };
        for (call, index) in CALLS {
            for (at, _) in src.match_indices(call) {
                let args = call_arguments(src, at + call.len() - 1);
                if let Some(code) = args.get(index).and_then(|a| code_literal(a)) {
                    add(code);
                }
            }
        }
        for marker in ["fn code(", "fn code_for_status("] {
            for (at, _) in src.match_indices(marker) {
                let rest = &src[at..];
                let Some(sig_end) = rest.find('{') else { continue };
                if !rest[..sig_end].contains("&'static str") {
                    continue;
                }
                let body = call_arguments(rest, sig_end);
                let body = body.first().copied().unwrap_or("");
                for (arm, _) in body.match_indices("=>") {
                    let value = body[arm + 2..].trim_start();
                    let end = value.find([',', '\n']).unwrap_or(value.len());
                    if let Some(code) = code_literal(value[..end].trim()) {
                        add(code);
                    }
                }
            }
        }
        // ApiError's own constructors (`Self::new(StatusCode::…, "code", …)`)
        // and the generic 500.
        for (at, _) in src.match_indices("Self::new(") {
            let args = call_arguments(src, at + "Self::new".len());
            if args.first().is_some_and(|a| a.starts_with("StatusCode::"))
                && let Some(code) = args.get(1).and_then(|a| code_literal(a))
            {
                add(code);
            }
        }
        if src.contains("code: \"internal_error\"") {
            add("internal_error");
        }
    }
    codes
}

#[test]
fn the_source_scan_finds_codes_of_each_kind() {
    let codes = codes_in_sources();
    // One of each way a code is raised, so that a scan broken by a
    // refactoring fails here instead of finding nothing.
    for code in [
        "out_of_range",     // ValidationError::new
        "unauthorized",     // ApiError::new
        "nothing_pending",  // ApiError::conflict
        "no_key",           // CertStoreError::state
        "wrong_passphrase", // CertError::code
        "rate_limited",     // AcmeError::code
        "call_busy",        // NotifyError::code
        "host_bits_set",    // IpNetworkError::code
        "uri_too_long",     // code_for_status
        "internal_error",   // ApiError::internal
    ] {
        assert!(codes.contains_key(code), "{code} not found; found {:?}", codes.keys().collect::<Vec<_>>());
    }
    assert!(codes.len() > 100, "{} codes", codes.len());
}

/// Every error code the server can produce has a sentence in every language.
#[test]
fn every_error_code_has_a_text_in_every_language() {
    let mut missing = Vec::new();
    for (code, files) in codes_in_sources() {
        for lang in Lang::ALL {
            let (_, source) = SOURCES[lang as usize];
            if !section(lang.code(), source, "errors").contains_key(&code) {
                missing.push(format!("{}: {code} (raised in {files:?})", lang.code()));
            }
        }
    }
    assert!(missing.is_empty(), "error codes without a text:\n{}", missing.join("\n"));
}

/// Every literal key the UI's scripts ask `t()` for exists.
#[test]
fn the_ui_asks_only_for_texts_that_exist() {
    let english = section("en", SOURCES[0].1, "ui");
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut asked = 0;
    for e in std::fs::read_dir(&assets).expect("assets").flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "js") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("script");
        for (at, _) in src.match_indices("t(\"") {
            if src[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.') {
                continue; // another function whose name ends in t
            }
            let rest = &src[at + 3..];
            let key = &rest[..rest.find('"').expect("closing quote")];
            if rest[key.len() + 1..].starts_with(" +") {
                continue; // a prefix, completed at run time
            }
            asked += 1;
            assert!(english.contains_key(key), "{}: t(\"{key}\") has no text", path.display());
        }
    }
    assert!(asked > 300, "only {asked} texts asked for");
}

#[test]
fn accept_language_picks_the_preferred_language_we_have() {
    for (header, lang) in [
        ("ja-JP", Lang::Ja),
        ("ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", Lang::Ja),
        ("de-CH", Lang::De),
        ("DE", Lang::De),
        ("zh-TW,zh;q=0.9", Lang::Zh),
        ("zh-Hans-CN", Lang::Zh),
        ("ru", Lang::Ru),
        ("pt-BR,es;q=0.8,en;q=0.5", Lang::Es),
        ("en;q=0.5, fr", Lang::Fr),
        ("fr;q=0.5, it;q=0.7", Lang::It),
        ("it;q=0.5, es;q=0.5", Lang::It),
        ("es;q=0, de;q=0.1", Lang::De),
        ("pt-BR", Lang::En),
        ("*", Lang::En),
        ("", Lang::En),
        ("ja;q=abc, ru;q=0.2", Lang::Ru),
        ("ja;q=1.5", Lang::En),
        ("en-US,en;q=0.9,ja;q=0.8", Lang::En),
    ] {
        assert_eq!(Lang::negotiate(header), lang, "{header:?}");
    }
}

#[test]
fn a_page_follows_the_kept_choice_before_accept_language() {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("ja"));
    assert_eq!(Lang::of_page(&headers), Lang::Ja);
    headers.insert(header::COOKIE, HeaderValue::from_static("portcullis_session=x; portcullis_lang=ru"));
    assert_eq!(Lang::of_page(&headers), Lang::Ru);
    headers.insert(header::COOKIE, HeaderValue::from_static("portcullis_lang=xx"));
    assert_eq!(Lang::of_page(&headers), Lang::Ja, "an unknown choice is ignored");
    assert_eq!(Lang::of_request(&headers), Lang::Ja);
    assert_eq!(Lang::of_page(&HeaderMap::new()), Lang::En);
}

#[test]
fn error_texts_are_sorted_and_found() {
    assert!(ERROR_TEXTS.windows(2).all(|w| w[0].0 < w[1].0), "sorted, no code twice");
    assert_eq!(
        error_text("out_of_range", Lang::De),
        Some("Der Wert liegt außerhalb des erlaubten Bereichs.")
    );
    assert_eq!(error_text("out_of_range", Lang::Ja), Some("値が許容範囲外です。"));
    assert_eq!(error_text("no_such_code", Lang::De), None);
    assert!(error_codes().count() > 100);
}

async fn body_json(resp: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
    serde_json::from_slice(&bytes).expect("JSON")
}

#[tokio::test]
async fn an_error_answer_is_worded_in_the_language_asked_for_with_the_english_detail() {
    let error = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "invalid value: integer `70000`, expected u16",
        )
        .field("http_ports[0]")
        .into_response()
    };
    let ja = localize_error(error(), Some(&HeaderValue::from_static("ja-JP,ja;q=0.9")));
    assert_eq!(ja.status(), StatusCode::BAD_REQUEST);
    assert_eq!(ja.headers()[header::CONTENT_LANGUAGE], "ja");
    assert_eq!(ja.headers()[header::VARY], "accept-language");
    assert_eq!(
        body_json(ja).await,
        serde_json::json!({"error": {
            "code": "invalid_value",
            "message": "値が無効です。",
            "field": "http_ports[0]",
            "detail": "invalid value: integer `70000`, expected u16",
        }})
    );
    for accept in [None, Some(HeaderValue::from_static("en-GB")), Some(HeaderValue::from_static("pt"))] {
        let en = localize_error(error(), accept.as_ref());
        assert!(en.headers().get(header::CONTENT_LANGUAGE).is_none());
        assert_eq!(
            body_json(en).await,
            serde_json::json!({"error": {
                "code": "invalid_value",
                "message": "invalid value: integer `70000`, expected u16",
                "field": "http_ports[0]",
            }}),
            "{accept:?}: the English answer as it always was"
        );
    }
    // A code without texts keeps its English message in every language.
    let unknown = ApiError::new(StatusCode::CONFLICT, "brand_new_code", "what happened").into_response();
    let unknown = localize_error(unknown, Some(&HeaderValue::from_static("de")));
    assert_eq!(body_json(unknown).await["error"]["message"], "what happened");
    // Answers that are not API errors pass untouched.
    let ok = localize_error((StatusCode::OK, "fine").into_response(), Some(&HeaderValue::from_static("de")));
    assert!(ok.headers().get(header::VARY).is_none());
}
