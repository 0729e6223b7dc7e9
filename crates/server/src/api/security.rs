//! `/api/v1/access-control`, `blocked`, `logfile`, `events` (SPEC §4, §5).

use portcullis_core::ErrorCode;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use portcullis_core::access_control::AccessControlSettings;
use portcullis_core::events::Event;
use portcullis_core::intrusion::BlockedClient;
use portcullis_core::logfile::LogfileDocument;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::Runtime;

/// The running IP-level access control.
#[utoipa::path(get, path = "/api/v1/access-control", tag = "access-control",
    responses((status = 200, body = AccessControlSettings)))]
pub async fn get_access_control(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<AccessControlSettings> {
    Json(rt.running().access_control.clone())
}

/// Query of a Set that may deny the requester.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ForceQuery {
    /// Apply rules that deny the address making the request, provisionally:
    /// rolled back by themselves unless confirmed from an address they allow.
    #[serde(default)]
    pub force: bool,
}

/// Set for IP-level access control: applied at once (denied clients are
/// refused at the connection), not stored. Rules that deny the requester's
/// own address are refused (409 `would_lock_out`, naming it) unless
/// `?force=true`; forced, they are provisional (202 with the deadline):
/// rolled back after the grace period unless `POST /api/v1/config/confirm`
/// comes from an address they allow.
#[utoipa::path(put, path = "/api/v1/access-control", tag = "access-control", params(ForceQuery),
    request_body = AccessControlSettings,
    responses((status = 200, body = AccessControlSettings),
        (status = 202, description = "forced rules that deny the requester, applied provisionally", body = crate::api::config::ProvisionalChange),
        (status = 400, body = ErrorBody),
        (status = 409, description = "would_lock_out: the rules deny the requester (send ?force=true), or change_unconfirmed", body = ErrorBody)))]
pub async fn put_access_control(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Query(q): Query<ForceQuery>,
    ApiJson(settings): ApiJson<AccessControlSettings>,
) -> Result<Response, ApiError> {
    let (running, pending) = rt.set_access_control(settings, &admin.actor, q.force).await?;
    Ok(crate::api::config::set_answer(&running.access_control, pending))
}

/// Most clients `GET /api/v1/blocked` returns at once (CrowdSec may hold 100,000 bans).
pub const MAX_BLOCKED_PAGE: usize = 10_000;

/// A page of `/api/v1/blocked`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct BlockedQuery {
    /// Entries to skip (local blocks come first, then CrowdSec's bans by address).
    #[serde(default)]
    pub offset: usize,
    /// Entries to return, at most 10,000 (default 1,000).
    pub limit: Option<usize>,
}

/// A client refused now: blocked by the device's intrusion detection
/// (`origin` `local`) or under a CrowdSec ban decision (`origin` `crowdsec`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlockedEntry {
    /// The address or network refused.
    pub address: String,
    /// `local` or `crowdsec`.
    pub origin: &'static str,
    /// Local: when the block was set (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Local: when the client last failed a login (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// When the block or ban ends by itself (RFC 3339); absent for a block
    /// until reboot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// CrowdSec: who made the decision (`cscli`, `crowdsec`, `CAPI`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// CrowdSec: the scenario behind it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl From<BlockedClient> for BlockedEntry {
    fn from(b: BlockedClient) -> Self {
        Self {
            address: b.address.to_string(),
            origin: "local",
            since: Some(rfc3339(b.since)),
            last_failure: Some(rfc3339(b.last_failure)),
            until: b.until.map(rfc3339),
            decided_by: None,
            scenario: None,
        }
    }
}

/// The clients refused now: blocked by intrusion detection (temporary deny
/// until reboot), then those under a CrowdSec ban, with its expiry; paged.
#[utoipa::path(get, path = "/api/v1/blocked", tag = "intrusion-detection", params(BlockedQuery),
    responses((status = 200, body = Vec<BlockedEntry>)))]
pub async fn blocked(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
    Query(q): Query<BlockedQuery>,
) -> Json<Vec<BlockedEntry>> {
    let limit = q.limit.unwrap_or(1_000).min(MAX_BLOCKED_PAGE);
    let local = rt.security().blocked().into_iter().map(BlockedEntry::from);
    #[cfg(feature = "crowdsec")]
    let all = local.chain(rt.security().fleet().bans().into_iter().map(|b| BlockedEntry {
        address: b.address.to_string(),
        origin: "crowdsec",
        since: None,
        last_failure: None,
        until: Some(rfc3339(b.until)),
        decided_by: Some(b.origin),
        scenario: Some(b.scenario),
    }));
    #[cfg(not(feature = "crowdsec"))]
    let all = local;
    Json(all.skip(q.offset).take(limit).collect())
}

/// Which block to lift.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UnblockQuery {
    /// An address of the blocked client (for IPv6, any address of its /64).
    pub address: String,
}

/// The lifted block.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unblocked {
    /// The network that was blocked.
    pub address: String,
}

/// Lifts a block.
#[utoipa::path(delete, path = "/api/v1/blocked", tag = "intrusion-detection", params(UnblockQuery),
    responses((status = 200, body = Unblocked), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unblock(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Query(q): Query<UnblockQuery>,
) -> Result<Json<Unblocked>, ApiError> {
    let ip: IpAddr = q.address.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidValue,
            format!("\"{}\" is not an IP address", q.address),
        )
        .field("address")
    })?;
    match rt.unblock(ip, &admin.actor) {
        Some(key) => Ok(Json(Unblocked { address: key.to_string() })),
        None => Err(ApiError::not_found(format!("{ip} is not blocked")).field("address")),
    }
}

/// Format of the logfile answer.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogfileQuery {
    /// `json` (default) or `text`.
    #[serde(default)]
    pub format: Option<String>,
}

/// The web server logfile: accesses aggregated per client, user and outcome.
#[utoipa::path(get, path = "/api/v1/logfile", tag = "intrusion-detection", params(LogfileQuery),
    responses((status = 200, body = LogfileDocument), (status = 400, body = ErrorBody)))]
pub async fn logfile(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
    Query(q): Query<LogfileQuery>,
) -> Result<Response, ApiError> {
    match q.format.as_deref() {
        None | Some("json") => {
            Ok(Json(LogfileDocument { entries: rt.security().logfile_entries() }).into_response())
        }
        Some("text") => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], rt.security().logfile_text())
                .into_response())
        }
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidValue,
            format!("unknown format \"{other}\"; use json or text"),
        )
        .field("format")),
    }
}

/// Which events to list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Only events with a larger id (for polling).
    #[serde(default)]
    pub since: u64,
    /// At most this many (the newest), 1-1000, default 100.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsView {
    /// Events, oldest first.
    pub events: Vec<Event>,
}

/// The event log: alerts, blocks, configuration and certificate changes,
/// reboots, each with its actor (the audit trail).
#[utoipa::path(get, path = "/api/v1/events", tag = "intrusion-detection", params(EventsQuery),
    responses((status = 200, body = EventsView)))]
pub async fn events(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
    Query(q): Query<EventsQuery>,
) -> Result<Json<EventsView>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::OutOfRange,
            "limit must be between 1 and 1000",
        )
        .field("limit"));
    }
    Ok(Json(EventsView { events: rt.security().events(q.since, limit) }))
}
