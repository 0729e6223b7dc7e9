//! A full data folder (a device's flash filled up): every write is atomic,
//! so the change that needed it was not made and the API answered 507
//! `storage_full`; this layer also records it in the event log (written
//! to disk once there is space again) and alerts the selected profiles, at
//! most once per [`crate::security::STORAGE_ALERT_INTERVAL`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use portcullis_core::events::{Actor, EventKind};

use crate::error::ErrorInfo;
use crate::runtime::Runtime;

/// What the event log and the alert say.
const MESSAGE: &str = "the device's storage is full: a change could not be written and was not made";

/// Notices answers that say the storage is full.
pub(crate) async fn watch(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let client_ip = crate::http::client_ip(req.extensions());
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if resp.extensions().get::<ErrorInfo>().is_some_and(|i| i.code == portcullis_core::ErrorCode::StorageFull)
    {
        noticed(&rt, client_ip, &path);
    }
    resp
}

fn noticed(rt: &Runtime, client_ip: Option<std::net::IpAddr>, path: &str) {
    let now = rt.timestamp();
    tracing::error!(path, "{MESSAGE}");
    rt.security().event(
        now.utc,
        EventKind::StorageFull,
        Some(Actor::new(None, client_ip)),
        MESSAGE,
        serde_json::json!({"request": path}),
    );
    if rt.security().storage_alert_due(now.monotonic) {
        rt.alert(portcullis_core::alert::AlertContext {
            device: crate::notifications::device_name(),
            event: "storage_full".into(),
            message: MESSAGE.into(),
            client_ip,
            user: None,
            count: 0,
            time: now.utc,
        });
    }
}
