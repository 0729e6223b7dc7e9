//! What an alert says: the values of the template placeholders
//! ([`AlertContext`]) and the rendering of a profile's template with them,
//! escaped so that attacker-controlled values (a user name tried at the
//! login) cannot forge headers, lines or JSON.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What a notification is about: the values of the template placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertContext {
    /// `{device}`: the device's name.
    pub device: String,
    /// `{event}`: what happened, e.g. `intrusion_alert` or `test`.
    pub event: String,
    /// `{message}`: one line for a person.
    pub message: String,
    /// `{client_ip}`: the attacker's address, if any.
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
    /// `{user}`: the user name tried, if any (attacker-controlled).
    pub user: Option<String>,
    /// `{count}`: failed attempts counted.
    pub count: u32,
    /// `{time}`: when it happened (RFC 3339 in the template).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: OffsetDateTime,
}

/// How placeholder values are escaped when a template is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Values as text; control characters become spaces (no header or line injection).
    Text,
    /// Values escaped for the inside of a JSON string.
    Json,
}

/// Fills the placeholders `{device}`, `{client_ip}`, `{user}`, `{count}`,
/// `{time}`, `{message}` and `{event}` of `template`; anything else stays as
/// written. Missing values (no client, no user) become empty.
pub fn render(template: &str, ctx: &AlertContext) -> String {
    render_with(template, ctx, Escape::Text)
}

/// [`render`] with a choice of escaping for the values.
pub fn render_with(template: &str, ctx: &AlertContext, escape: Escape) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let value = after.find('}').and_then(|end| placeholder(&after[1..end], ctx).map(|v| (v, end)));
        match value {
            Some((v, end)) => {
                push_escaped(&mut out, &v, escape);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn placeholder(name: &str, ctx: &AlertContext) -> Option<String> {
    Some(match name {
        "device" => ctx.device.clone(),
        "event" => ctx.event.clone(),
        "message" => ctx.message.clone(),
        "client_ip" => ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "user" => ctx.user.clone().unwrap_or_default(),
        "count" => ctx.count.to_string(),
        "time" => ctx.time.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        _ => return None,
    })
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    for c in value.chars() {
        match escape {
            // Values are one line: a newline in an attacker's user name must not
            // start a new header or forge a line of the message.
            Escape::Text if c.is_control() => out.push(' '),
            Escape::Text => out.push(c),
            Escape::Json => match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::DEFAULT_IP_NOTIFY_BODY;

    fn ctx() -> AlertContext {
        AlertContext {
            device: "cam-1".into(),
            event: "intrusion_alert".into(),
            message: "too many failed logins".into(),
            client_ip: Some("192.0.2.7".parse().expect("ip")),
            user: Some("admin".into()),
            count: 6,
            time: time::macros::datetime!(2026-01-02 03:04:05 UTC),
        }
    }

    #[test]
    fn render_fills_placeholders() {
        let out = render(
            "{device}/{event}: {message} from {client_ip} as {user} x{count} at {time} {unknown} {",
            &ctx(),
        );
        assert_eq!(
            out,
            "cam-1/intrusion_alert: too many failed logins from 192.0.2.7 as admin x6 at 2026-01-02T03:04:05Z {unknown} {"
        );
        let none = AlertContext { client_ip: None, user: None, ..ctx() };
        assert_eq!(render("[{client_ip}|{user}]", &none), "[|]");
        assert_eq!(render("{{device}}", &ctx()), "{cam-1}");
    }

    #[test]
    fn render_escapes_attacker_values() {
        let evil = AlertContext { user: Some("x\"}\r\nBcc: a@b\\".into()), ..ctx() };
        assert_eq!(render("{user}", &evil), "x\"}  Bcc: a@b\\");
        let json = render_with(DEFAULT_IP_NOTIFY_BODY, &evil, Escape::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("still JSON");
        assert_eq!(parsed["user"], "x\"}\r\nBcc: a@b\\");
        assert_eq!(parsed["count"], 6);
    }
}
