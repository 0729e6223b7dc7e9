//! Conditional GET and HEAD (RFC 9110 §13): the preconditions a request
//! carries, evaluated against a representation's entity tag and modification
//! time in the order of §13.2.2, for the UI's embedded files and the
//! webroot's. (`If-Range` belongs to the range logic of the webroot.)

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, header};

/// What the preconditions of a GET or HEAD lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// None failed: answer as usual.
    Proceed,
    /// 304: the client's copy is current (`If-None-Match`, `If-Modified-Since`).
    NotModified,
    /// 412: `If-Match` or `If-Unmodified-Since` failed.
    Failed,
}

/// Evaluates the preconditions of a GET or HEAD for the representation with
/// the strong entity tag `etag` (quoted) and, if known, the modification time
/// `modified` (§13.2.2):
/// 1. `If-Match` present: false (no tag matches by the strong comparison) → 412;
/// 2. else `If-Unmodified-Since` present and a valid date: modified after it → 412;
/// 3. `If-None-Match` present: a tag matches by the weak comparison → 304;
/// 4. else `If-Modified-Since` present and a valid date: not modified after it → 304.
pub(crate) fn evaluate(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> Precondition {
    if let Some(list) = joined(headers, &header::IF_MATCH) {
        if !tag_list_matches(&list, etag, true) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (date(headers, &header::IF_UNMODIFIED_SINCE), modified)
        && secs(modified) > secs(since)
    {
        return Precondition::Failed;
    }
    if let Some(list) = joined(headers, &header::IF_NONE_MATCH) {
        if tag_list_matches(&list, etag, false) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(modified)) = (date(headers, &header::IF_MODIFIED_SINCE), modified)
        && secs(modified) <= secs(since)
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Every value of the header `name`, joined by commas (a list may come in
/// several lines); `None` when absent.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    // A value that is not visible ASCII matches nothing: an empty list.
    Some(values.filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(","))
}

/// A valid HTTP date in the header `name` (an invalid one is ignored, §13.1.3-4).
fn date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let v = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(v.trim()).ok()
}

/// Whole seconds: HTTP dates have no finer resolution.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether the list (`*` or entity tags, §8.8.3) matches the strong tag
/// `etag`: by the strong comparison (a weak tag never matches) or the weak
/// one (`W/` ignored) (§8.8.3.2). A malformed list matches nothing.
pub(crate) fn tag_list_matches(list: &str, etag: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let (weak, tail) = match rest.strip_prefix("W/") {
            Some(t) => (true, t),
            None => (false, rest),
        };
        // An opaque tag: a quoted string without quotes inside (commas allowed).
        let Some(body) = tail.strip_prefix('"') else { return false };
        let Some(end) = body.find('"') else { return false };
        let tag = &tail[..end + 2];
        if tag == etag && !(strong && weak) {
            return true;
        }
        rest = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).expect("value"));
        }
        h
    }

    const TAG: &str = "\"abc\"";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    #[test]
    fn tag_lists_compare_strongly_or_weakly() {
        assert!(tag_list_matches("\"abc\"", TAG, true));
        assert!(tag_list_matches(" \"x\" , \"abc\"", TAG, true));
        assert!(tag_list_matches("*", TAG, true));
        assert!(!tag_list_matches("W/\"abc\"", TAG, true), "a weak tag never matches strongly");
        assert!(tag_list_matches("W/\"abc\"", TAG, false));
        assert!(!tag_list_matches("\"abcd\", \"ab\"", TAG, false));
        assert!(tag_list_matches("\"a,b\", \"abc\"", TAG, false), "a comma inside a tag");
        assert!(!tag_list_matches("abc", TAG, false), "unquoted: malformed");
        assert!(!tag_list_matches("", TAG, false));
    }

    #[test]
    fn the_order_of_section_13_2_2() {
        let m = Some(at(1_000_000));
        let ev = |pairs: &[(HeaderName, &str)]| evaluate(&headers(pairs), TAG, m);
        assert_eq!(ev(&[]), Precondition::Proceed);
        assert_eq!(ev(&[(header::IF_MATCH, "\"other\"")]), Precondition::Failed);
        assert_eq!(
            ev(&[(header::IF_MATCH, "\"other\""), (header::IF_MATCH, "\"abc\"")]),
            Precondition::Proceed
        );
        assert_eq!(ev(&[(header::IF_MATCH, "*")]), Precondition::Proceed);
        // If-Unmodified-Since: modified after the date fails; at or before it holds.
        assert_eq!(ev(&[(header::IF_UNMODIFIED_SINCE, &date(999_999))]), Precondition::Failed);
        assert_eq!(ev(&[(header::IF_UNMODIFIED_SINCE, &date(1_000_000))]), Precondition::Proceed);
        assert_eq!(
            ev(&[(header::IF_UNMODIFIED_SINCE, "yesterday")]),
            Precondition::Proceed,
            "invalid: ignored"
        );
        // If-Match, when present, decides: If-Unmodified-Since is ignored.
        assert_eq!(
            ev(&[(header::IF_MATCH, TAG), (header::IF_UNMODIFIED_SINCE, &date(1))]),
            Precondition::Proceed
        );
        assert_eq!(
            ev(&[(header::IF_MATCH, "\"other\""), (header::IF_UNMODIFIED_SINCE, &date(2_000_000))]),
            Precondition::Failed
        );
        // A failed If-Match wins over a matching If-None-Match.
        assert_eq!(
            ev(&[(header::IF_MATCH, "\"other\""), (header::IF_NONE_MATCH, TAG)]),
            Precondition::Failed
        );
        assert_eq!(ev(&[(header::IF_MATCH, TAG), (header::IF_NONE_MATCH, TAG)]), Precondition::NotModified);
        // If-None-Match, when present, decides: If-Modified-Since is ignored.
        assert_eq!(ev(&[(header::IF_NONE_MATCH, "W/\"abc\"")]), Precondition::NotModified);
        assert_eq!(
            ev(&[(header::IF_NONE_MATCH, "\"other\""), (header::IF_MODIFIED_SINCE, &date(2_000_000))]),
            Precondition::Proceed
        );
        assert_eq!(ev(&[(header::IF_MODIFIED_SINCE, &date(1_000_000))]), Precondition::NotModified);
        assert_eq!(ev(&[(header::IF_MODIFIED_SINCE, &date(999_999))]), Precondition::Proceed);
        // Without a modification time, the dates say nothing.
        let h = headers(&[
            (header::IF_UNMODIFIED_SINCE, &date(1)),
            (header::IF_MODIFIED_SINCE, &date(2_000_000)),
        ]);
        assert_eq!(evaluate(&h, TAG, None), Precondition::Proceed);
    }
}
