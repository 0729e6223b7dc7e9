//! The whole configuration as stored on disk and held running: parsing with
//! field-precise errors, validation, and the section diff behind "Close".

use crate::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::access_control::AccessControlSettings;
use crate::profiles::Profiles;
use crate::settings::{AuthenticationSettings, ProfileNames, WebServerSettings, WebrootSettings};

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
        let config: Config = serde_ignored::deserialize(value, |path| unknown_keys.push(path.to_string()))
            .map_err(|e| ValidationError::new("", ErrorCode::InvalidConfig, e.to_string()))?;
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
        out
    }

    /// The file text as stored: pretty JSON with a trailing newline.
    pub fn to_file_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Parses operator input (an API body) into `T`, refusing unknown fields (a
/// typo must not be silently ignored) and naming the offending field.
pub fn parse_input<T: DeserializeOwned>(body: &[u8]) -> Result<T, ValidationError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ValidationError::new("", ErrorCode::MalformedJson, format!("the body is not valid JSON: {e}"))
    })?;
    parse_value(value)
}

/// Like [`parse_input`], from an already parsed JSON value.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ValidationError> {
    let mut unknown = Vec::new();
    let result = serde_ignored::deserialize::<_, _, T>(value.clone(), |path| unknown.push(path.to_string()));
    // An unknown field is the likelier cause of any other error (a typo), so it is reported first.
    if let Some(field) = unknown.into_iter().next() {
        return Err(ValidationError::new(
            field.clone(),
            ErrorCode::UnknownField,
            format!("unknown setting \"{field}\""),
        ));
    }
    match result {
        Ok(t) => Ok(t),
        Err(_) => {
            // Run again with path tracking, so the error names the field.
            let e = match serde_path_to_error::deserialize::<_, T>(value) {
                Ok(_) => return Err(ValidationError::new("", ErrorCode::InvalidValue, "invalid input")),
                Err(e) => e,
            };
            let mut field = e.path().to_string();
            if field == "." {
                field.clear();
            }
            let message = strip_position(&e.into_inner().to_string());
            // "missing field `x`" is reported at the parent; name the field itself.
            if let Some(missing) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
                let path = if field.is_empty() { missing.to_string() } else { format!("{field}.{missing}") };
                return Err(ValidationError::new(
                    path,
                    ErrorCode::Required,
                    format!("\"{missing}\" is required"),
                ));
            }
            Err(ValidationError::new(field, ErrorCode::InvalidValue, message))
        }
    }
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
        b.webserver.http_ports = vec![8080];
        assert_eq!(a.changed_sections(&b), vec!["webserver".to_string()]);
    }
}
