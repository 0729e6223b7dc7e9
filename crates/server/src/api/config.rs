//! `/api/v1/config/…` and `/api/v1/reboot`: the configuration life cycle
//! (Close, Store, Restore, Confirm, Reboot, SPEC §2).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::ErrorCode;
use portcullis_core::settings::ListenerSpec;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, Viewer};
use crate::runtime::{ApplyError, ConfigStatus, Runtime};

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(v) => ApiError::invalid(v),
            ApplyError::Bind(b) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::PortUnavailable, b.to_string())
                    .field(if b.tls { "https_port" } else { "http_ports" })
            }
            // A full data folder is the operator's to know (507), not a server fault.
            ApplyError::Store(s) => s.into(),
            ApplyError::Certificate(c) => c.into(),
            e @ ApplyError::Unconfirmed(_) => ApiError::conflict(ErrorCode::ChangeUnconfirmed, e.to_string()),
            ApplyError::UnknownSetting(message) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::UnknownField, message)
            }
            e @ ApplyError::NothingPending => ApiError::conflict(ErrorCode::NothingPending, e.to_string()),
            e @ ApplyError::ConfirmFromNew(_) => {
                ApiError::conflict(ErrorCode::ConfirmFromNewAddress, e.to_string())
            }
            e @ ApplyError::WouldLockOut(_) => {
                ApiError::conflict(ErrorCode::WouldLockOut, e.to_string()).field("rules")
            }
        }
    }
}

/// A change applied provisionally (answered `202 Accepted`): it could cut
/// the operator off, so it is rolled back by itself at `deadline` unless
/// `POST /api/v1/config/confirm` arrives through the new configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProvisionalChange {
    /// Always true: the change is running, but not for good yet.
    pub provisional: bool,
    /// When it is rolled back unless confirmed (RFC 3339).
    pub deadline: String,
    /// Why it must be confirmed.
    pub reason: String,
    /// How to confirm it: `POST /api/v1/config/confirm`, through the new
    /// configuration (a port it keeps, from an address it allows).
    pub confirm: String,
    /// The settings now running (the resource's GET body).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// The answer to a Set: the running settings (200), or, when the change is
/// provisional, a [`ProvisionalChange`] holding them (202).
pub fn set_answer<T: Serialize>(settings: &T, pending: Option<crate::runtime::PendingView>) -> Response {
    match pending {
        None => Json(settings).into_response(),
        Some(p) => (
            StatusCode::ACCEPTED,
            Json(ProvisionalChange {
                provisional: true,
                deadline: p.deadline,
                reason: p.reason,
                confirm: "POST /api/v1/config/confirm".into(),
                settings: serde_json::to_value(settings).unwrap_or_default(),
            }),
        )
            .into_response(),
    }
}

/// Close: whether the running configuration differs from the stored one.
#[utoipa::path(get, path = "/api/v1/config/status", tag = "config", responses((status = 200, body = ConfigStatus)))]
pub async fn config_status(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<ConfigStatus> {
    Json(rt.status())
}

/// Store: writes the running configuration permanently (crash-safe).
#[utoipa::path(post, path = "/api/v1/config/store", tag = "config", responses((status = 200, body = ConfigStatus)))]
pub async fn config_store(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
) -> Result<Json<ConfigStatus>, ApiError> {
    rt.store(&admin.actor).await?;
    Ok(Json(rt.status()))
}

/// Restore: the running configuration goes back to the stored one.
#[utoipa::path(post, path = "/api/v1/config/restore", tag = "config", responses((status = 200, body = ConfigStatus)))]
pub async fn config_restore(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
) -> Result<Json<ConfigStatus>, ApiError> {
    rt.restore(&admin.actor).await?;
    Ok(Json(rt.status()))
}

/// Confirm: keeps a provisional change (one that could have cut the operator
/// off). It must come through the new configuration: a port the change keeps
/// or opens, from an address its rules allow.
#[utoipa::path(post, path = "/api/v1/config/confirm", tag = "config",
    responses((status = 200, body = ConfigStatus), (status = 409, body = ErrorBody)))]
pub async fn config_confirm(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    info: Option<axum::Extension<crate::conn::ConnInfo>>,
) -> Result<Json<ConfigStatus>, ApiError> {
    let via = info.map(|i| i.via());
    rt.confirm(&admin.actor, via).await?;
    Ok(Json(rt.status()))
}

/// Outcome of a soft reboot.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebootOutcome {
    /// Listeners open after the reboot.
    pub listeners: Vec<ListenerSpec>,
}

/// Reboot: soft restart inside the process (running := stored, listeners
/// rebound, certificates reloaded).
#[utoipa::path(post, path = "/api/v1/reboot", tag = "config", responses((status = 200, body = RebootOutcome)))]
pub async fn reboot(State(rt): State<Arc<Runtime>>, admin: Admin) -> Result<Json<RebootOutcome>, ApiError> {
    rt.reboot(&admin.actor).await?;
    Ok(Json(RebootOutcome { listeners: rt.open_listeners().await }))
}
