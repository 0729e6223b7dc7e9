//! `GET /metrics`: the Prometheus exposition (text format 0.0.4) for an
//! administrator's credentials (Basic, like every API client); an anonymous
//! scrape is refused like any request without a login.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::http::Admin;
use crate::runtime::Runtime;

/// The metrics, with the gauges read now (blocked clients by origin,
/// unsaved changes, the certificate's notAfter).
#[utoipa::path(get, path = "/metrics", tag = "fleet",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 401, body = crate::error::ErrorBody), (status = 501, body = crate::error::ErrorBody)))]
pub async fn metrics(State(rt): State<Arc<Runtime>>, _admin: Admin) -> Response {
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
