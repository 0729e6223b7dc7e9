//! The languages of the web UI and of the API's error messages: which one a
//! request gets (the UI's kept choice, else `Accept-Language`, else English),
//! and the error texts. Everything comes from `i18n/<lang>.json`, one file per
//! language with the UI's texts (`ui`) and a sentence for every API error code
//! (`errors`); the build script turns them into the tables embedded here and
//! the UI's modules. The error texts are embedded compressed, a stream per
//! language, and unpacked the first time an answer is worded in that
//! language (kept from then on: at most the eight languages' texts, about
//! 100 KB together, in memory).
//!
//! An API error answer keeps its code and field; its `message` is worded in
//! the language the request's `Accept-Language` prefers, and the English
//! message the code was raised with (which names the exact value or limit)
//! moves to `detail`. Without `Accept-Language`, or when it prefers English,
//! the answer is the English one, unchanged.

use std::sync::OnceLock;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use portcullis_core::ErrorCode;

use crate::error::{ErrorBody, ErrorDetail, ErrorInfo};

include!(concat!(env!("OUT_DIR"), "/error_texts.rs"));

/// Cookie in which the web UI keeps the language the operator chose.
pub const LANG_COOKIE: &str = "portcullis_lang";

/// At most this many entries of an `Accept-Language` header are looked at.
const MAX_RANGES: usize = 32;

/// A language of the web UI and the API's error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English, the fallback.
    #[default]
    En,
    /// German.
    De,
    /// Spanish.
    Es,
    /// French.
    Fr,
    /// Italian.
    It,
    /// Japanese.
    Ja,
    /// Russian.
    Ru,
    /// Chinese (simplified).
    Zh,
}

impl Lang {
    /// Every language, in the order of the build script's tables.
    pub const ALL: [Lang; 8] =
        [Lang::En, Lang::De, Lang::Es, Lang::Fr, Lang::It, Lang::Ja, Lang::Ru, Lang::Zh];

    /// The language's code (ISO 639-1), as in `<html lang>` and `Content-Language`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Es => "es",
            Lang::Fr => "fr",
            Lang::It => "it",
            Lang::Ja => "ja",
            Lang::Ru => "ru",
            Lang::Zh => "zh",
        }
    }

    /// The language of a language tag (`de`, `de-AT`, `zh-Hant-TW`; any case), if it is one of ours.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        Lang::ALL.into_iter().find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    /// The language an `Accept-Language` value prefers among ours (highest
    /// weight, the earlier on a tie; `*` means English); English when none fits.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut best: Option<(u16, Lang)> = None;
        for range in accept_language.split(',').take(MAX_RANGES) {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .map(weight)
                .next()
                .unwrap_or(1000);
            let lang = if tag == "*" { Some(Lang::En) } else { Lang::from_tag(tag) };
            if let Some(lang) = lang
                && weight > 0
                && best.is_none_or(|(w, _)| weight > w)
            {
                best = Some((weight, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or_default()
    }

    /// The language of a request's `Accept-Language` header (English without one).
    pub fn of_request(headers: &HeaderMap) -> Lang {
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::negotiate)
            .unwrap_or_default()
    }

    /// The language of a UI page: the operator's kept choice, else `Accept-Language`.
    pub fn of_page(headers: &HeaderMap) -> Lang {
        crate::headers::cookie(headers, LANG_COOKIE)
            .and_then(|c| Lang::ALL.into_iter().find(|l| l.code() == c))
            .unwrap_or_else(|| Lang::of_request(headers))
    }
}

/// A quality value (`0`, `0.5`, `1.000`) in thousandths; a malformed one counts as 0.
fn weight(q: &str) -> u16 {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let digits = |s: &str| s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    match int {
        "1" if frac.bytes().all(|b| b == b'0') && frac.len() <= 3 => 1000,
        "0" if digits(frac) => format!("{frac:0<3}").parse().unwrap_or(0),
        _ => 0,
    }
}

/// One language's error texts, unpacked: every text, each ended by a NUL,
/// in the order of `ERROR_CODES`, and where each starts.
struct Texts {
    all: String,
    starts: Vec<u32>,
}

/// The unpacked error texts, by language, each made on first use.
static TEXTS: [OnceLock<Texts>; 8] = [const { OnceLock::new() }; 8];

/// `lang`'s error texts, unpacked on first use. Empty should the embedded
/// stream not unpack (a test rules that out): the answer stays English.
fn texts(lang: Lang) -> &'static Texts {
    TEXTS[lang as usize].get_or_init(|| {
        let (deflated, len) = ERROR_TEXTS[lang as usize];
        let all = crate::inflate::inflate(deflated, len)
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let mut starts = Vec::with_capacity(ERROR_CODES.len());
        let mut at = 0;
        for text in all.split_terminator('\0') {
            starts.push(u32::try_from(at).unwrap_or(u32::MAX));
            at += text.len() + 1;
        }
        if starts.len() != ERROR_CODES.len() {
            return Texts { all: String::new(), starts: Vec::new() };
        }
        Texts { all, starts }
    })
}

/// The sentence for an API error code in `lang`, if the code has one (a
/// test makes sure every code has one in every language).
pub fn error_text(code: ErrorCode, lang: Lang) -> Option<&'static str> {
    let i = ERROR_CODES.binary_search(&code.as_str()).ok()?;
    let texts = texts(lang);
    let start = *texts.starts.get(i)? as usize;
    let len = texts.all.get(start..)?.find('\0')?;
    texts.all.get(start..start + len)
}

/// Every error code that has texts.
pub fn error_codes() -> impl Iterator<Item = &'static str> {
    ERROR_CODES.iter().copied()
}

/// Words an API error answer in the language `accept_language` prefers: the
/// code's sentence becomes the `message`, the English message the `detail`.
/// Answers that are not API errors, and English ones, pass unchanged (but
/// every error answer says that it varies with `Accept-Language`).
pub(crate) fn localize_error(mut resp: Response, accept_language: Option<&HeaderValue>) -> Response {
    let Some(info) = resp.extensions_mut().remove::<ErrorInfo>() else { return resp };
    resp.headers_mut().append(header::VARY, HeaderValue::from_static("accept-language"));
    let lang = accept_language.and_then(|v| v.to_str().ok()).map(Lang::negotiate).unwrap_or_default();
    if lang == Lang::En {
        return resp;
    }
    let Some(text) = error_text(info.code, lang) else { return resp };
    let body = ErrorBody {
        error: ErrorDetail {
            code: info.code,
            message: text.to_owned(),
            field: info.field,
            detail: Some(info.message),
        },
    };
    let Ok(bytes) = serde_json::to_vec(&body) else { return resp };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.code()));
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests;
