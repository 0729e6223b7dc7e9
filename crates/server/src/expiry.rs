//! The expiry watch: every certificate in use (factory, individual, ACME) is
//! checked against the expiry stages, in every build.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::events::EventKind;
use portcullis_core::expiry::ExpiryWatch;
use time::OffsetDateTime;

use crate::runtime::Runtime;

/// What the expiry watch has announced.
pub const EXPIRY_FILE: &str = "certs/expiry.json";

/// Checks the certificate in use against the expiry stages, at start and then
/// every `check_every`; each stage is announced once per certificate (event,
/// and an alert to the selected profiles).
pub fn spawn_expiry_watch(rt: &Arc<Runtime>, check_every: Duration) {
    let weak = Arc::downgrade(rt);
    tokio::spawn(async move {
        loop {
            let Some(rt) = weak.upgrade() else { break };
            check_expiry(&rt).await;
            drop(rt);
            tokio::time::sleep(check_every).await;
        }
    });
}

async fn check_expiry(rt: &Runtime) {
    // A factory certificate made by earlier firmware while the clock was
    // unset expires once the clock is set: make a good one instead.
    rt.renew_expired_factory().await;
    let now = rt.now();
    let Ok(view) = rt.certs().files.view(now, Vec::new()) else { return };
    let Ok(not_after) =
        OffsetDateTime::parse(&view.certificate.not_after, &time::format_description::well_known::Rfc3339)
    else {
        return;
    };
    let mut watch: ExpiryWatch = rt
        .data_folder()
        .read(EXPIRY_FILE)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let Some(stage) = watch.due(&view.certificate.fingerprint_sha256, not_after, now) else { return };
    if let Err(e) = rt.data_folder().write_json(EXPIRY_FILE, &watch, crate::store::PUBLIC_MODE) {
        tracing::error!(error = %e, "cannot store the expiry watch");
    }
    let message = format!(
        "the {:?} certificate {} {} ({})",
        view.source,
        view.certificate.subject,
        stage.describe(),
        view.certificate.not_after
    );
    rt.security().event(
        now,
        EventKind::CertificateExpiring,
        None,
        message.clone(),
        serde_json::json!({"stage": stage, "not_after": view.certificate.not_after}),
    );
    rt.alert(portcullis_core::alert::AlertContext {
        device: crate::notifications::device_name(),
        event: "certificate_expiry".into(),
        message,
        client_ip: None,
        user: None,
        count: 0,
        time: now,
    });
}
