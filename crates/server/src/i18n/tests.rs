use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::response::IntoResponse;
use http::StatusCode;

use super::*;
use crate::error::ApiError;
use portcullis_core::ErrorCode;

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

/// Every error code the server can answer with (the `ErrorCode` enum) has a
/// sentence in every language, and every sentence belongs to a code.
#[test]
fn every_error_code_has_a_text_in_every_language() {
    let codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut problems = Vec::new();
    for lang in Lang::ALL {
        let (_, source) = SOURCES[lang as usize];
        let texts = section(lang.code(), source, "errors");
        for code in &codes {
            if !texts.contains_key(*code) {
                problems.push(format!("{}: {code} has no text", lang.code()));
            }
        }
        for code in texts.keys() {
            if !codes.contains(code.as_str()) {
                problems.push(format!("{}: {code} is not an ErrorCode", lang.code()));
            }
        }
    }
    assert!(problems.is_empty(), "error texts:\n{}", problems.join("\n"));
    for code in ErrorCode::ALL {
        for lang in Lang::ALL {
            assert!(error_text(*code, lang).is_some_and(|t| !t.is_empty()), "{code} in {lang:?}");
        }
    }
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
    assert!(ERROR_CODES.windows(2).all(|w| w[0] < w[1]), "sorted, no code twice");
    assert_eq!(
        error_text(ErrorCode::OutOfRange, Lang::De),
        Some("Der Wert liegt außerhalb des erlaubten Bereichs.")
    );
    assert_eq!(error_text(ErrorCode::OutOfRange, Lang::Ja), Some("値が許容範囲外です。"));
    assert!(error_codes().count() > 100);
}

/// Each language's embedded stream unpacks to exactly one text per code,
/// the same as its source file's (English where a language lacks one).
#[test]
fn every_languages_embedded_texts_unpack_to_its_sources() {
    let english = section("en", SOURCES[0].1, "errors");
    for lang in Lang::ALL {
        let (_, source) = SOURCES[lang as usize];
        let mine = section(lang.code(), source, "errors");
        assert_eq!(texts(lang).starts.len(), ERROR_CODES.len(), "{lang:?}");
        for code in ErrorCode::ALL {
            let want = mine.get(code.as_str()).or_else(|| english.get(code.as_str())).expect("a text");
            assert_eq!(error_text(*code, lang), Some(want.as_str()), "{code} in {lang:?}");
        }
    }
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
            ErrorCode::InvalidValue,
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
    // Answers that are not API errors pass untouched.
    let ok = localize_error((StatusCode::OK, "fine").into_response(), Some(&HeaderValue::from_static("de")));
    assert!(ok.headers().get(header::VARY).is_none());
}
