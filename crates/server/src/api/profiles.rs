//! `/api/v1/profiles/{email|ip-notify|phone}/{name}` (+ `/test`): the
//! notification profiles, under the Set/Store life cycle. Secrets (SMTP, HTTP
//! and SIP passwords) are never returned; a PUT that omits one keeps it.

use portcullis_core::ErrorCode;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use portcullis_core::alert::AlertContext;
use portcullis_core::profiles::{EmailProfile, IpNotifyProfile, PhoneProfile, Profiles, merge_secrets};
use portcullis_notify::Notification;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, Viewer};
use crate::runtime::Runtime;

/// The kinds in the API's paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    IpNotify,
    Phone,
}

impl Kind {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "email" => Ok(Self::Email),
            "ip-notify" => Ok(Self::IpNotify),
            "phone" => Ok(Self::Phone),
            other => Err(ApiError::not_found(format!(
                "unknown profile kind \"{other}\"; use email, ip-notify or phone"
            ))),
        }
    }

    /// The build feature of the channel (`email`, `ip-notify`, `sip`).
    fn feature(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::IpNotify => "ip-notify",
            Self::Phone => "sip",
        }
    }

    /// Refuses a channel this build left out: such a profile could never send.
    /// (Reading and deleting stay allowed, for a configuration from a fuller build.)
    fn require_built(self) -> Result<Self, ApiError> {
        if crate::build_info::built(self.feature()) {
            Ok(self)
        } else {
            Err(crate::build_info::not_built_error(self.feature()))
        }
    }

    fn section(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::IpNotify => "ip_notify",
            Self::Phone => "phone",
        }
    }
}

fn get_one(profiles: &Profiles, kind: Kind, name: &str) -> Option<serde_json::Value> {
    match kind {
        Kind::Email => profiles.email.get(name).map(|p| serde_json::to_value(p).unwrap_or_default()),
        Kind::IpNotify => profiles.ip_notify.get(name).map(|p| serde_json::to_value(p).unwrap_or_default()),
        Kind::Phone => profiles.phone.get(name).map(|p| serde_json::to_value(p).unwrap_or_default()),
    }
}

fn missing(kind: Kind, name: &str) -> ApiError {
    ApiError::not_found(format!("there is no {} profile named \"{name}\"", kind.section()))
}

/// Every profile, secrets removed.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles", responses((status = 200, body = Profiles)))]
pub async fn list(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<Profiles> {
    Json(rt.running().profiles.redacted())
}

/// One profile, secrets removed.
#[utoipa::path(get, path = "/api/v1/profiles/{kind}/{name}", tag = "profiles",
    params(("kind" = String, Path, description = "email, ip-notify or phone"), ("name" = String, Path)),
    responses((status = 200, description = "the profile (EmailProfile, IpNotifyProfile or PhoneProfile)", body = serde_json::Value), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind = Kind::parse(&kind)?;
    get_one(&rt.running().profiles.redacted(), kind, &name).map(Json).ok_or_else(|| missing(kind, &name))
}

/// Creates or replaces a profile (Set: running at once, stored by Store).
/// An omitted password keeps the stored one; an empty one clears it.
#[utoipa::path(put, path = "/api/v1/profiles/{kind}/{name}", tag = "profiles",
    params(("kind" = String, Path, description = "email, ip-notify or phone"), ("name" = String, Path)),
    request_body(content = serde_json::Value, description = "EmailProfile, IpNotifyProfile or PhoneProfile"),
    responses((status = 200, body = serde_json::Value), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path((kind, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind = Kind::parse(&kind)?.require_built()?;
    let prefix = |mut e: portcullis_core::ValidationError| {
        e.field = if e.field.is_empty() { format!("profiles.{}.{name}", kind.section()) } else { e.field };
        ApiError::invalid(e)
    };
    let running = rt.running();
    let mut profiles = running.profiles.clone();
    match kind {
        Kind::Email => {
            let p: EmailProfile = portcullis_core::config::parse_input(&body)?;
            profiles.email.insert(name.clone(), p);
        }
        Kind::IpNotify => {
            let p: IpNotifyProfile = portcullis_core::config::parse_input(&body)?;
            profiles.ip_notify.insert(name.clone(), p);
        }
        Kind::Phone => {
            let p: PhoneProfile = portcullis_core::config::parse_input(&body)?;
            profiles.phone.insert(name.clone(), p);
        }
    }
    let profiles = merge_secrets(profiles, &running.profiles);
    profiles.validate().map_err(prefix)?;
    let running = rt.set_profiles(profiles, &admin.actor).await?;
    get_one(&running.profiles.redacted(), kind, &name).map(Json).ok_or_else(|| missing(kind, &name))
}

/// Deletes a profile; refused while the intrusion detection settings select it.
#[utoipa::path(delete, path = "/api/v1/profiles/{kind}/{name}", tag = "profiles",
    params(("kind" = String, Path, description = "email, ip-notify or phone"), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path((kind, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = Kind::parse(&kind)?;
    let running = rt.running();
    let id = &running.webserver.intrusion_detection;
    let selected = match kind {
        Kind::Email => &id.email_profile,
        Kind::IpNotify => &id.ip_notify_profile,
        Kind::Phone => &id.phone_profile,
    };
    if selected.as_deref() == Some(name.as_str()) {
        return Err(ApiError::conflict(
            ErrorCode::ProfileInUse,
            format!("the intrusion detection settings select \"{name}\"; choose another profile there first"),
        ));
    }
    let mut profiles = running.profiles.clone();
    let removed = match kind {
        Kind::Email => profiles.email.remove(&name).is_some(),
        Kind::IpNotify => profiles.ip_notify.remove(&name).is_some(),
        Kind::Phone => profiles.phone.remove(&name).is_some(),
    };
    if !removed {
        return Err(missing(kind, &name));
    }
    rt.set_profiles(profiles, &admin.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Outcome of a test notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestOutcome {
    /// Whether it was delivered.
    pub ok: bool,
    /// Error code when it was not.
    pub code: Option<ErrorCode>,
    /// What happened, for a person.
    pub message: String,
}

/// Sends a test notification through the (running) profile now, once, and
/// says what happened; the outcome is also in the event log.
#[utoipa::path(post, path = "/api/v1/profiles/{kind}/{name}/test", tag = "profiles",
    params(("kind" = String, Path, description = "email, ip-notify or phone"), ("name" = String, Path)),
    responses((status = 200, body = TestOutcome), (status = 404, body = ErrorBody)))]
pub async fn test(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<TestOutcome>, ApiError> {
    let kind = Kind::parse(&kind)?.require_built()?;
    let running = rt.running();
    let p = &running.profiles;
    let notification = match kind {
        Kind::Email => p.email.get(&name).map(|profile| Notification::Email {
            profile: profile.clone(),
            logfile_text: rt.security().logfile_text(),
        }),
        Kind::IpNotify => p.ip_notify.get(&name).map(|profile| Notification::IpNotify(profile.clone())),
        Kind::Phone => p.phone.get(&name).map(|profile| Notification::Phone(profile.clone())),
    }
    .ok_or_else(|| missing(kind, &name))?;
    let ctx = AlertContext {
        device: crate::notifications::device_name(),
        event: "test".into(),
        message: format!("test notification requested by {}", admin.identity.user),
        client_ip: admin.actor.client_ip,
        user: Some(admin.identity.user.clone()),
        count: 0,
        time: rt.now(),
    };
    Ok(Json(match rt.notifier().test(&name, notification, ctx).await {
        Ok(summary) => TestOutcome { ok: true, code: None, message: summary },
        Err(e) => TestOutcome { ok: false, code: Some(e.code()), message: e.to_string() },
    }))
}
