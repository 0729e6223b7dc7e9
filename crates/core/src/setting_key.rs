//! One setting addressed by its path in the API's JSON, as the command
//! line's `config get KEY` and `config set KEY VALUE` take it.
//!
//! The "Web Server" dialog's settings are named as in `/api/v1/webserver`
//! (`http_ports`, `intrusion_detection.notification_threshold`), the other
//! sections with the section first (`access_control.enabled`,
//! `authentication.digest`, `webroot.public`, `profiles.email.NAME.host`);
//! `webserver.` in front of a dialog setting is accepted too. A list entry is
//! `name[N]` (or `name.N`). These are the paths a refused value's `field`
//! names, so an error points at the key that was given.

use serde::Serialize;
use serde_json::Value;

use crate::ErrorCode;
use crate::ValidationError;
use crate::config::{Config, Input};

/// The sections a key may start with.
pub const SECTIONS: [&str; 7] =
    ["webserver", "access_control", "profiles", "authentication", "webroot", "syslog", "crowdsec"];

/// Why a key could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// No setting has this path.
    #[error(
        "unknown setting \"{0}\": see `portcullis config show` for the keys (the \"webserver\" section's without its name, e.g. http_ports or intrusion_detection.notification_threshold; the other sections' with theirs, e.g. access_control.enabled)"
    )]
    UnknownKey(String),
    /// The setting is a secret: it is never read back.
    #[error("{0}: a secret is never read back")]
    Secret(String),
    /// The value breaks a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// One step of a key: an object's member or a list's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Member(String),
    Entry(usize),
}

/// A parsed key: its section and the path inside the section's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingKey {
    /// The section (one of [`SECTIONS`]).
    pub section: &'static str,
    steps: Vec<Step>,
}

impl SettingKey {
    /// Reads `key`; a first member that is neither a section nor a setting
    /// of the "Web Server" dialog is an unknown key.
    pub fn parse(key: &str) -> Result<Self, SettingError> {
        let unknown = || SettingError::UnknownKey(key.to_string());
        let mut steps = Vec::new();
        for part in key.split('.') {
            let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
            if name.is_empty() && (steps.is_empty() || rest.is_empty()) {
                return Err(unknown());
            }
            if !name.is_empty() {
                steps.push(match name.parse::<usize>() {
                    Ok(i) if !steps.is_empty() => Step::Entry(i),
                    _ => Step::Member(name.to_string()),
                });
            }
            while !rest.is_empty() {
                let inner = rest.strip_prefix('[').and_then(|r| r.split_once(']')).ok_or_else(unknown)?;
                steps.push(Step::Entry(inner.0.parse().map_err(|_| unknown())?));
                rest = inner.1;
            }
        }
        let Some(Step::Member(first)) = steps.first().cloned() else {
            return Err(unknown());
        };
        if let Some(section) = SECTIONS.iter().find(|s| **s == first) {
            steps.remove(0);
            return Ok(Self { section, steps });
        }
        let dialog = serde_json::to_value(crate::settings::WebServerSettings::default()).unwrap_or_default();
        if dialog.get(&first).is_some() {
            return Ok(Self { section: "webserver", steps });
        }
        Err(unknown())
    }

    /// The key as a refused value's `field` names it: dialog settings
    /// without `webserver.`, others with their section, entries as `[N]`.
    pub fn field(&self) -> String {
        let mut out = if self.section == "webserver" { String::new() } else { self.section.to_string() };
        for step in &self.steps {
            match step {
                Step::Member(m) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(m);
                }
                Step::Entry(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// The value of this setting in `config`, secrets refused (the redaction
    /// the API's reads use).
    pub fn get(&self, config: &Config) -> Result<Value, SettingError> {
        // Every section's secrets (profiles' passwords, the syslog client
        // key, CrowdSec's bouncer key and machine password).
        let redacted = config.redacted();
        let full = self.find(&section_value(config, self.section))?;
        let shown = self.find(&section_value(&redacted, self.section)).ok();
        match shown {
            // Redaction makes a secret null: shown unless that hid something.
            Some(v) if !v.is_null() || full.is_null() => Ok(v),
            _ => Err(SettingError::Secret(self.field())),
        }
    }

    fn find(&self, root: &Value) -> Result<Value, SettingError> {
        let mut at = root;
        for step in &self.steps {
            at = match step {
                Step::Member(m) => at.get(m.as_str()),
                Step::Entry(i) => at.as_array().and_then(|a| a.get(*i)),
            }
            .ok_or_else(|| SettingError::UnknownKey(self.field()))?;
        }
        Ok(at.clone())
    }

    /// `config` with this setting changed to `value`, parsed as the API
    /// parses the section's body (unknown fields refused, fields named);
    /// the section's rules are the runtime's to check when it applies it.
    pub fn set(&self, config: &Config, value: Value) -> Result<Config, SettingError> {
        let mut root = section_value(config, self.section);
        let unknown = || SettingError::UnknownKey(self.field());
        match self.steps.split_last() {
            None => root = value,
            Some((last, parents)) => {
                let mut at = &mut root;
                for step in parents {
                    at = match step {
                        Step::Member(m) => at.get_mut(m.as_str()),
                        Step::Entry(i) => at.as_array_mut().and_then(|a| a.get_mut(*i)),
                    }
                    .ok_or_else(unknown)?;
                }
                match last {
                    // A member not shown (an optional one) may be new; the
                    // parse below refuses it if the section has no such field.
                    Step::Member(m) => {
                        at.as_object_mut().ok_or_else(unknown)?.insert(m.clone(), value);
                    }
                    Step::Entry(i) => {
                        *at.as_array_mut().and_then(|a| a.get_mut(*i)).ok_or_else(unknown)? = value;
                    }
                }
            }
        }
        let mut new = config.clone();
        let parsed = match self.section {
            "webserver" => parse_into(root, &mut new.webserver),
            "access_control" => parse_into(root, &mut new.access_control),
            "profiles" => parse_into(root, &mut new.profiles),
            "authentication" => parse_into(root, &mut new.authentication),
            "syslog" => parse_into(root, &mut new.syslog),
            "crowdsec" => parse_into(root, &mut new.crowdsec),
            _ => parse_into(root, &mut new.webroot),
        };
        parsed.map_err(|mut e| {
            if self.section != "webserver" {
                e.field = if e.field.is_empty() {
                    self.section.to_string()
                } else {
                    format!("{}.{}", self.section, e.field)
                };
            }
            // serde_ignored names list entries `rules.0`, the key may say `rules[0]`.
            let dotted = self.field().replace('[', ".").replace(']', "");
            if e.code == ErrorCode::UnknownField && (e.field == self.field() || e.field == dotted) {
                return unknown();
            }
            SettingError::Invalid(e)
        })?;
        Ok(new)
    }
}

fn parse_into<T: Input>(value: Value, into: &mut T) -> Result<(), ValidationError> {
    *into = T::from_value(value)?;
    Ok(())
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

/// A section of `config` as the API's JSON.
fn section_value(config: &Config, section: &str) -> Value {
    match section {
        "webserver" => to_value(&config.webserver),
        "access_control" => to_value(&config.access_control),
        "profiles" => to_value(&config.profiles),
        "authentication" => to_value(&config.authentication),
        "syslog" => to_value(&config.syslog),
        "crowdsec" => to_value(&config.crowdsec),
        _ => to_value(&config.webroot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_section_and_field() {
        let k = SettingKey::parse("intrusion_detection.notification_threshold").expect("valid");
        assert_eq!(
            (k.section, k.field().as_str()),
            ("webserver", "intrusion_detection.notification_threshold")
        );
        let k = SettingKey::parse("webserver.http_ports[0]").expect("valid");
        assert_eq!((k.section, k.field().as_str()), ("webserver", "http_ports[0]"));
        let k = SettingKey::parse("access_control.rules.2.source").expect("valid");
        assert_eq!((k.section, k.field().as_str()), ("access_control", "access_control.rules[2].source"));
        for bad in ["", "nonsense", "http_ports.", ".http_ports", "http_ports[x]", "http_ports[1"] {
            assert!(matches!(SettingKey::parse(bad), Err(SettingError::UnknownKey(_))), "{bad}");
        }
    }

    #[test]
    fn set_then_get_and_refusals() {
        let c = Config::default();
        let k = SettingKey::parse("intrusion_detection.notification_threshold").expect("valid");
        let new = k.set(&c, 7.into()).expect("valid");
        assert_eq!(k.get(&new).expect("valid"), Value::from(7));
        assert_eq!(k.get(&c).expect("valid"), Value::from(10));
        let e = SettingKey::parse("https_port").expect("valid").set(&c, "x".into()).expect_err("refused");
        assert!(matches!(e, SettingError::Invalid(ref v) if v.field == "https_port"), "{e:?}");
        let e = SettingKey::parse("intrusion_detection.nope")
            .expect("valid")
            .set(&c, 1.into())
            .expect_err("refused");
        assert!(matches!(e, SettingError::UnknownKey(ref k) if k == "intrusion_detection.nope"), "{e:?}");
        let e = SettingKey::parse("access_control.trusted_proxies")
            .expect("valid")
            .set(&c, "[]".parse().expect("valid"));
        assert!(e.is_ok(), "{e:?}");
        let e = SettingKey::parse("http_ports[5]").expect("valid").set(&c, 81.into()).expect_err("refused");
        assert!(matches!(e, SettingError::UnknownKey(_)), "{e:?}");
    }
}
