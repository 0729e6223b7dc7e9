//! `GET /metrics`: the Prometheus exposition (text format 0.0.4) for an
//! administrator's credentials (Basic, like every API client) or any API
//! token (a read-only one is the scraper's credential: `Authorization:
//! Bearer`); an anonymous scrape is refused like any request without a login.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::auth::{AuthMethod, Group};
use crate::error::ApiError;
use crate::http::Viewer;
use crate::runtime::Runtime;

/// The metrics, with the gauges read now (blocked clients by origin,
/// unsaved changes, the certificate's notAfter).
#[utoipa::path(get, path = "/metrics", tag = "fleet",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, body = crate::error::ErrorBody), (status = 501, body = crate::error::ErrorBody)))]
pub async fn metrics(State(rt): State<Arc<Runtime>>, v: Viewer) -> Response {
    let token = matches!(v.identity.via, AuthMethod::Token { .. });
    if v.identity.group != Group::Admins && !token {
        return ApiError::new(
            http::StatusCode::FORBIDDEN,
            portcullis_core::ErrorCode::Forbidden,
            "only members of the group \"admins\" or an API token may read the metrics",
        )
        .into_response();
    }
    let security = rt.security();
    let m = security.fleet().metrics();
    let local = i64::try_from(security.blocked().len()).unwrap_or(i64::MAX);
    m.clients_blocked.get_or_create(&portcullis_fleet::metrics::OriginLabel { origin: "local" }).set(local);
    #[cfg(feature = "crowdsec")]
    {
        let bans = security.fleet().decisions().read().unwrap_or_else(|e| e.into_inner()).len();
        m.clients_blocked
            .get_or_create(&portcullis_fleet::metrics::OriginLabel { origin: "crowdsec" })
            .set(i64::try_from(bans).unwrap_or(i64::MAX));
    }
    security.fleet().refresh_gauges();
    m.unsaved_changes.set(i64::from(rt.status().unsaved_changes));
    m.certificate_not_after.set(rt.certs().served().not_after.unix_timestamp());
    ([(header::CONTENT_TYPE, portcullis_fleet::metrics::CONTENT_TYPE)], m.encode()).into_response()
}
