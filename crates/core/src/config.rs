//! The whole configuration as stored on disk and held running: parsing with
//! field-precise errors, validation, and the section diff behind "Close".

use crate::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::access_control::AccessControlSettings;
use crate::crowdsec::CrowdSecSettings;
use crate::profiles::Profiles;
use crate::settings::{AuthenticationSettings, ProfileNames, WebServerSettings, WebrootSettings};
use crate::syslog::SyslogSettings;

/// Version of the stored file format; bumped when a change needs migrating.
pub const CONFIG_VERSION: u32 = 1;

/// Every setting the life cycle (Set, Factory, Restore, Store, Reboot) manages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Config {
    /// File format version.
    pub version: u32,
    /// The "Web Server" dialog.
    pub webserver: WebServerSettings,
    /// IP-level access control.
    pub access_control: AccessControlSettings,
    /// Notification profiles (e-mail, IP Notify, phone).
    pub profiles: Profiles,
    /// Authentication schemes.
    pub authentication: AuthenticationSettings,
    /// Static content.
    pub webroot: WebrootSettings,
    /// Export of the event log (and optionally the logfile) to syslog collectors.
    pub syslog: SyslogSettings,
    /// The CrowdSec bouncer and signals.
    pub crowdsec: CrowdSecSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            webserver: WebServerSettings::default(),
            access_control: AccessControlSettings::default(),
            profiles: Profiles::default(),
            authentication: AuthenticationSettings::default(),
            webroot: WebrootSettings::default(),
            syslog: SyslogSettings::default(),
            crowdsec: CrowdSecSettings::default(),
        }
    }
}

/// A configuration file that was read, with the keys it had that we do not know.
#[derive(Debug, Clone)]
pub struct ParsedConfig {
    /// The configuration.
    pub config: Config,
    /// Dotted paths of keys that were ignored (warned about, not fatal: a newer
    /// firmware's file must still start an older one).
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Parses a stored configuration file, collecting unknown keys as warnings.
    pub fn parse(text: &str) -> Result<ParsedConfig, ValidationError> {
        let mut unknown_keys = Vec::new();
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            ValidationError::new("", ErrorCode::MalformedJson, format!("not valid JSON: {e}"))
        })?;
        let config: Config = deserialize_tracked(value, &mut unknown_keys)
            .map_err(|(_, e)| ValidationError::new("", ErrorCode::InvalidConfig, e.to_string()))?;
        if config.version > CONFIG_VERSION {
            return Err(ValidationError::new(
                "version",
                ErrorCode::UnsupportedVersion,
                format!(
                    "configuration version {} is newer than this firmware understands ({CONFIG_VERSION})",
                    config.version
                ),
            ));
        }
        Ok(ParsedConfig { config, unknown_keys })
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let prefixed = |section: &str, mut e: ValidationError| {
            e.field = if e.field.is_empty() { section.to_string() } else { format!("{section}.{}", e.field) };
            e
        };
        self.profiles.validate().map_err(|e| prefixed("profiles", e))?;
        self.access_control.validate().map_err(|e| prefixed("access_control", e))?;
        self.syslog.validate().map_err(|e| prefixed("syslog", e))?;
        self.crowdsec.validate().map_err(|e| prefixed("crowdsec", e))?;
        self.webserver.validate(&self.profile_names())
    }

    /// Names of the notification profiles defined in this configuration.
    pub fn profile_names(&self) -> ProfileNames {
        self.profiles.names()
    }

    /// Names of the top-level sections whose values differ between `self` and `other`.
    pub fn changed_sections(&self, other: &Config) -> Vec<String> {
        let mut out = Vec::new();
        if self.webserver != other.webserver {
            out.push("webserver".to_string());
        }
        if self.access_control != other.access_control {
            out.push("access_control".to_string());
        }
        if self.profiles != other.profiles {
            out.push("profiles".to_string());
        }
        if self.authentication != other.authentication {
            out.push("authentication".to_string());
        }
        if self.webroot != other.webroot {
            out.push("webroot".to_string());
        }
        if self.syslog != other.syslog {
            out.push("syslog".to_string());
        }
        if self.crowdsec != other.crowdsec {
            out.push("crowdsec".to_string());
        }
        out
    }

    /// A copy without secrets (profiles' passwords, the syslog client key,
    /// the CrowdSec bouncer key and machine password), for reads.
    pub fn redacted(&self) -> Self {
        Self {
            profiles: self.profiles.redacted(),
            syslog: self.syslog.redacted(),
            crowdsec: self.crowdsec.redacted(),
            ..self.clone()
        }
    }

    /// What changed from `self` to `new`, for the audit trail (the details of
    /// a `config_changed` event): `{"sections": [...], "fields": [...]}`,
    /// the fields as dotted paths (`webserver.https_port`,
    /// `access_control.rules[2].source`). Paths only, never a value: a
    /// password or key that changed shows as changed, never as itself.
    pub fn changes(&self, new: &Config) -> serde_json::Value {
        let old = serde_json::to_value(self).unwrap_or_default();
        let new_value = serde_json::to_value(new).unwrap_or_default();
        changes_between(&old, &new_value, self.changed_sections(new))
    }

    /// The file text as stored: pretty JSON with a trailing newline.
    pub fn to_file_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// At most this many changed fields are listed in one event; beyond, the
/// count of the rest (`more`) says how many more.
pub const MAX_CHANGED_FIELDS: usize = 64;

/// `{"sections", "fields"}` (and `more` beyond [`MAX_CHANGED_FIELDS`]) for two
/// JSON forms of a setting: the dotted paths of the leaves that differ. A
/// list whose length changed is one path (its entries moved); one of the
/// same length is compared entry by entry.
pub fn changes_between(
    old: &serde_json::Value,
    new: &serde_json::Value,
    sections: Vec<String>,
) -> serde_json::Value {
    let mut fields = Vec::new();
    changed_paths(String::new(), old, new, &mut fields);
    let more = fields.len().saturating_sub(MAX_CHANGED_FIELDS);
    fields.truncate(MAX_CHANGED_FIELDS);
    let mut details = serde_json::json!({"sections": sections, "fields": fields});
    if more > 0 {
        details["more"] = more.into();
    }
    details
}

fn changed_paths(path: String, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if old == new {
        return;
    }
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                let null = Value::Null;
                changed_paths(join(key), a.get(key).unwrap_or(&null), b.get(key).unwrap_or(&null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                changed_paths(format!("{path}[{i}]"), x, y, out);
            }
        }
        _ => out.push(path),
    }
}

/// Parses operator input (an API body) into `T`, refusing unknown fields (a
/// typo must not be silently ignored) and keys given twice, and naming the
/// offending field.
pub fn parse_input<T: Input>(body: &[u8]) -> Result<T, ValidationError> {
    T::from_value(strict_json(body)?)
}

/// A type read from operator input (an API body, a setting) with
/// [`parse_value`]'s checks; implemented with [`input!`](crate::input).
///
/// Why a trait: a generic function is compiled again in every crate that
/// calls it, so the server's API and this crate's setting keys each had a
/// copy of every settings type's parser. [`input!`](crate::input) makes
/// `from_value` a plain function of the type's own crate, compiled once
/// (issue 18, binary size).
pub trait Input: Sized {
    /// Reads `value` as [`parse_value`] does.
    fn from_value(value: JsonValue) -> Result<Self, ValidationError>;
}

/// The JSON value [`Input`] reads (named here for [`input!`](crate::input)'s expansion).
pub use serde_json::Value as JsonValue;

/// Implements [`config::Input`](crate::config::Input) for types that derive
/// `Deserialize`.
#[macro_export]
macro_rules! input {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::config::Input for $t {
            fn from_value(value: $crate::config::JsonValue) -> Result<Self, $crate::ValidationError> {
                $crate::config::parse_value(value)
            }
        }
    )+};
}

crate::input!(
    Config,
    WebServerSettings,
    AccessControlSettings,
    Profiles,
    crate::profiles::EmailProfile,
    crate::profiles::IpNotifyProfile,
    crate::profiles::PhoneProfile,
    AuthenticationSettings,
    WebrootSettings,
    SyslogSettings,
    CrowdSecSettings,
    crate::acme::AcmeSettings,
);

/// Reads a JSON document as [`serde_json::Value`], refusing an object that
/// names a key twice, at any depth (`duplicate_key`, naming it).
///
/// serde_json keeps the last of repeated keys without a word, so
/// `{"block_ip": true, "block_ip": false}` would be read as whatever the
/// last says, while a proxy, a log or a person reading the request may
/// believe the first. One reading, done once per body, with the checks
/// below; the value then goes through the usual typed parsing.
pub fn strict_json(body: &[u8]) -> Result<serde_json::Value, ValidationError> {
    let duplicate = std::cell::RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(body);
    let parsed = serde::de::DeserializeSeed::deserialize(
        strict::Seed { path: String::new(), duplicate: &duplicate },
        &mut reader,
    )
    .and_then(|v| reader.end().map(|()| v));
    if let Some(path) = duplicate.into_inner() {
        return Err(ValidationError::new(
            path.clone(),
            ErrorCode::DuplicateKey,
            format!("\"{path}\" is given twice; give each key once"),
        ));
    }
    parsed.map_err(|e| {
        ValidationError::new("", ErrorCode::MalformedJson, format!("the body is not valid JSON: {e}"))
    })
}

/// The visitor of [`strict_json`].
mod strict {
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    /// Reads one value at `path`; the first repeated key's path goes to `duplicate`.
    pub(super) struct Seed<'a> {
        pub(super) path: String,
        pub(super) duplicate: &'a RefCell<Option<String>>,
    }

    impl Seed<'_> {
        fn child(&self, path: String) -> Self {
            Seed { path, duplicate: self.duplicate }
        }
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number JSON cannot hold"))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(self.child(format!("{}[{}]", self.path, out.len())))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
                if !seen.insert(key.clone()) {
                    *self.duplicate.borrow_mut() = Some(path);
                    return Err(de::Error::custom("duplicate key"));
                }
                let value = map.next_value_seed(self.child(path))?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Like [`parse_input`], from an already parsed JSON value.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ValidationError> {
    let mut unknown = Vec::new();
    let result = deserialize_tracked(value, &mut unknown);
    match (unknown.into_iter().next(), result) {
        (None, Ok(t)) => Ok(t),
        (unknown, result) => Err(refusal(unknown, result.err())),
    }
}

/// The one way settings and API bodies are deserialized: `T` from `value`,
/// with the dotted paths of keys `T` does not know pushed to `unknown` and,
/// on failure, the path of the refused field.
///
/// Every `Deserialize` impl is compiled once per deserializer type it is
/// used with, so a single stack (unknown keys and error paths in one pass,
/// one callback type) keeps one copy of each settings type's parser in
/// the binary instead of one per wrapper (issue 18, binary size).
fn deserialize_tracked<T: DeserializeOwned>(
    value: serde_json::Value,
    unknown: &mut Vec<String>,
) -> Result<T, (String, serde_json::Error)> {
    let mut track = serde_path_to_error::Track::new();
    let mut note = |path: serde_ignored::Path| unknown.push(path.to_string());
    let note: &mut dyn FnMut(serde_ignored::Path) = &mut note;
    serde_ignored::deserialize(serde_path_to_error::Deserializer::new(value, &mut track), note)
        .map_err(|e| (track.path().to_string(), e))
}

/// Why [`parse_value`] refused its input: the first unknown field, else
/// the deserializer's error at its path. Not generic, so kept once.
#[inline(never)]
fn refusal(unknown: Option<String>, error: Option<(String, serde_json::Error)>) -> ValidationError {
    // An unknown field is the likelier cause of any other error (a typo), so it is reported first.
    if let Some(field) = unknown {
        return ValidationError::new(
            field.clone(),
            ErrorCode::UnknownField,
            format!("unknown setting \"{field}\""),
        );
    }
    let Some((mut field, e)) = error else {
        return ValidationError::new("", ErrorCode::InvalidValue, "invalid input");
    };
    if field == "." {
        field.clear();
    }
    let message = strip_position(&e.to_string());
    // "missing field `x`" is reported at the parent; name the field itself.
    if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        let path = if field.is_empty() { missing.to_string() } else { format!("{field}.{missing}") };
        return ValidationError::new(path, ErrorCode::Required, format!("\"{missing}\" is required"));
    }
    ValidationError::new(field, ErrorCode::InvalidValue, message)
}

/// The message for a person that says what a deserializer's refusal means
/// (`invalid value: integer `70000`, expected u16` → `70000 is out of range:
/// give a whole number from 0 to 65535`), or `None` when it has no better
/// words. The deserializer's text is then the detail for the log.
pub fn for_people(message: &str) -> Option<String> {
    fn int_range(ty: &str) -> Option<(i128, i128)> {
        Some(match ty {
            "u8" => (0, u8::MAX.into()),
            "u16" => (0, u16::MAX.into()),
            "u32" => (0, u32::MAX.into()),
            "u64" | "usize" => (0, u64::MAX.into()),
            "i32" => (i32::MIN.into(), i32::MAX.into()),
            "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
            _ => return None,
        })
    }
    if let Some(rest) = message.strip_prefix("invalid value: integer `")
        && let Some((value, ty)) = rest.split_once("`, expected ")
        && let Some((min, max)) = int_range(ty)
    {
        return Some(format!("{value} is out of range: give a whole number from {min} to {max}"));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((_, expected)) = rest.rsplit_once(", expected ")
    {
        let wanted = match expected {
            ty if int_range(ty).is_some() => "a whole number",
            "f32" | "f64" => "a number",
            "a boolean" => "true or false",
            "a string" => "text",
            "a sequence" => "a list",
            "a map" => "an object",
            _ => return None,
        };
        return Some(format!("{wanted} is expected here"));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once("`, expected ")
    {
        let choices: Vec<&str> = expected
            .trim_start_matches("one of ")
            .split([',', ' '])
            .filter(|w| w.starts_with('`') && w.ends_with('`') && w.len() > 1)
            .map(|w| w.trim_matches('`'))
            .collect();
        if !choices.is_empty() {
            return Some(format!("\"{value}\" is not one of the choices: {}", choices.join(", ")));
        }
    }
    None
}

/// serde_json appends " at line L column C", which means nothing to an operator
/// filling a form; keep it only for syntax errors, where it helps.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_sections_and_fields_never_values() {
        use crate::profiles::{EmailProfile, Secret};
        let old = Config::default();
        let mut new = old.clone();
        new.webserver.https_port = Some(8443);
        new.webserver.intrusion_detection.notification_threshold = 7;
        let mut mail = EmailProfile { server: "smtp.example".into(), ..Default::default() };
        mail.password = Some(Secret::new("hunter2-secret"));
        new.profiles.email.insert("ops".into(), mail.clone());
        let d = old.changes(&new);
        assert_eq!(d["sections"], serde_json::json!(["webserver", "profiles"]));
        assert_eq!(
            d["fields"],
            serde_json::json!([
                "profiles.email.ops",
                "webserver.https_port",
                "webserver.intrusion_detection.notification_threshold"
            ])
        );
        // A changed password: its path, never its value.
        let mut newer = new.clone();
        mail.password = Some(Secret::new("another-secret"));
        newer.profiles.email.insert("ops".into(), mail);
        let d = new.changes(&newer);
        assert_eq!(d["fields"], serde_json::json!(["profiles.email.ops.password"]));
        let text = d.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(d.get("more").is_none());
        assert_eq!(old.changes(&old), serde_json::json!({"sections": [], "fields": []}));
    }

    #[test]
    fn deserializer_refusals_in_words_for_people() {
        use crate::settings::WebServerSettings;
        let refusal = |body: &str| parse_input::<WebServerSettings>(body.as_bytes()).expect_err("refused");
        let e = refusal(r#"{"http_ports": [8080, 70000]}"#);
        assert_eq!(e.message, "invalid value: integer `70000`, expected u16", "the detail stays for the log");
        assert_eq!(
            for_people(&e.message).as_deref(),
            Some("70000 is out of range: give a whole number from 0 to 65535")
        );
        let e = refusal(r#"{"http_enabled": "yes"}"#);
        assert_eq!(
            for_people(&e.message).as_deref(),
            Some("true or false is expected here"),
            "{}",
            e.message
        );
        let e = refusal(r#"{"http_ports": "80"}"#);
        assert_eq!(for_people(&e.message).as_deref(), Some("a list is expected here"), "{}", e.message);
        let e = refusal(r#"{"https_port": "443"}"#);
        assert_eq!(
            for_people(&e.message).as_deref(),
            Some("a whole number is expected here"),
            "{}",
            e.message
        );
        assert_eq!(
            for_people("unknown variant `maybe`, expected one of `allow`, `deny`").as_deref(),
            Some("\"maybe\" is not one of the choices: allow, deny")
        );
        assert_eq!(for_people("port 0 is not a valid port; use 1-65535"), None, "already for people");
    }

    #[test]
    fn lists_compare_by_entry_and_long_changes_are_cut() {
        let old = serde_json::json!({"a": [1, 2, 3], "b": [1]});
        let new = serde_json::json!({"a": [1, 5, 3], "b": [1, 2]});
        assert_eq!(changes_between(&old, &new, vec![])["fields"], serde_json::json!(["a[1]", "b"]));
        let old = serde_json::json!({"x": (0..100).collect::<Vec<u32>>()});
        let new = serde_json::json!({"x": (1..101).collect::<Vec<u32>>()});
        let d = changes_between(&old, &new, vec!["x".into()]);
        assert_eq!(d["fields"].as_array().map(Vec::len), Some(MAX_CHANGED_FIELDS));
        assert_eq!(d["more"], 100 - MAX_CHANGED_FIELDS);
    }

    #[test]
    fn keys_given_twice_are_refused_at_any_depth() {
        use crate::settings::WebServerSettings;
        let refusal = |body: &str| parse_input::<WebServerSettings>(body.as_bytes()).expect_err("refused");
        let e = refusal(r#"{"http_enabled": true, "http_enabled": false}"#);
        assert_eq!((e.code.as_str(), e.field.as_str()), ("duplicate_key", "http_enabled"));
        assert!(e.message.contains("twice"), "{}", e.message);
        let e = refusal(r#"{"intrusion_detection": {"block_ip": true, "enabled": true, "block_ip": false}}"#);
        assert_eq!((e.code.as_str(), e.field.as_str()), ("duplicate_key", "intrusion_detection.block_ip"));
        // In an array, and an unknown key given twice: the repetition is said first.
        let e = strict_json(br#"{"rules": [{"kind": "allow"}, {"kind": "deny", "kind": "allow"}]}"#)
            .expect_err("refused");
        assert_eq!((e.code.as_str(), e.field.as_str()), ("duplicate_key", "rules[1].kind"));
        let e = refusal(r#"{"thresh": 1, "thresh": 2}"#);
        assert_eq!(e.code, "duplicate_key");
        // The same key in sibling objects is no repetition; escapes are decoded before comparing.
        let ok = strict_json(br#"{"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]}"#).expect("ok");
        assert_eq!(ok["c"][1]["x"], 2);
        let e = strict_json(br#"{"a": 1, "\u0061": 2}"#).expect_err("refused");
        assert_eq!(e.field, "a");
        // Everything else reads as serde_json reads it.
        let text = r#"{"n": -1, "u": 18446744073709551615, "f": 1.5, "s": "x\ny", "z": null, "b": [true, false], "e": {}}"#;
        assert_eq!(
            strict_json(text.as_bytes()).expect("ok"),
            serde_json::from_str::<serde_json::Value>(text).expect("ok")
        );
        for bad in ["", "{", r#"{"a": 1} x"#, "[1,]", r#"{"a" 1}"#] {
            assert_eq!(strict_json(bad.as_bytes()).expect_err(bad).code, "malformed_json", "{bad}");
        }
    }

    #[test]
    fn round_trip() {
        let c = Config::default();
        let parsed = Config::parse(&c.to_file_text()).expect("parses");
        assert_eq!(parsed.config, c);
        assert!(parsed.unknown_keys.is_empty());
    }

    #[test]
    fn unknown_keys_in_the_file_warn() {
        let text = r#"{"version":1,"webserver":{"http_ports":[8080],"colour":"red"},"future":{}}"#;
        let parsed = Config::parse(text).expect("parses");
        assert_eq!(parsed.config.webserver.http_ports, vec![8080]);
        assert_eq!(parsed.unknown_keys, vec!["future".to_string(), "webserver.colour".to_string()]);
    }

    #[test]
    fn torn_file_is_refused() {
        let text = Config::default().to_file_text();
        assert!(Config::parse(&text[..text.len() / 2]).is_err());
        assert!(Config::parse("").is_err());
    }

    #[test]
    fn api_input_names_the_field() {
        let e = parse_input::<WebServerSettings>(br#"{"http_ports":[70000]}"#).expect_err("refused");
        assert_eq!(e.field, "http_ports[0]");
        let e = parse_input::<WebServerSettings>(br#"{"intrusion_detection":{"thresh":5}}"#)
            .expect_err("refused");
        assert_eq!(e.field, "intrusion_detection.thresh");
        assert_eq!(e.code, "unknown_field");
        let e = parse_input::<WebServerSettings>(b"{").expect_err("refused");
        assert_eq!(e.code, "malformed_json");
        let e = parse_input::<WebServerSettings>(br#"{"http_enabled":"yes"}"#).expect_err("refused");
        assert_eq!(e.field, "http_enabled");
        assert_eq!(e.code, "invalid_value");
    }

    #[test]
    fn sections_diff() {
        let a = Config::default();
        let mut b = a.clone();
        assert!(a.changed_sections(&b).is_empty());
        b.webserver.http_ports = vec![8080.into()];
        assert_eq!(a.changed_sections(&b), vec!["webserver".to_string()]);
    }
}
