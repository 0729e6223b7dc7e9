//! The JSON API under `/api/v1` (names from SPEC §8): one resource per
//! module, and here only the routes that join them.

pub mod authentication;
#[cfg(feature = "backup")]
pub mod backup;
pub mod build;
pub mod certificate;
pub mod config;
#[cfg(feature = "crowdsec")]
pub mod crowdsec;
pub mod health;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod openapi;
pub mod profiles;
#[cfg(feature = "totp")]
pub mod second_factor;
pub mod security;
pub mod session;
#[cfg(feature = "syslog")]
pub mod syslog;
pub mod tokens;
pub mod users;
#[cfg(feature = "webroot")]
pub mod webroot;
pub mod webserver;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::runtime::Runtime;

/// Routes that need a login (mounted behind the authentication layer).
pub fn protected_routes(upload_limit: usize) -> Router<Arc<Runtime>> {
    let router = Router::new()
        .route("/api/v1/build", get(build::get_build))
        .route("/api/v1/webserver", get(webserver::get_webserver).put(webserver::put_webserver))
        .route("/api/v1/webserver/factory", get(webserver::get_factory))
        .route("/api/v1/config/status", get(config::config_status))
        .route("/api/v1/config/store", post(config::config_store))
        .route("/api/v1/config/restore", post(config::config_restore))
        .route("/api/v1/config/confirm", post(config::config_confirm))
        .route("/api/v1/reboot", post(config::reboot))
        .route("/api/v1/listeners", get(webserver::listeners))
        .route(
            "/api/v1/authentication",
            get(authentication::get_authentication).put(authentication::put_authentication),
        )
        .route("/api/v1/profiles", get(profiles::list))
        .route(
            "/api/v1/profiles/{kind}/{name}",
            get(profiles::get).put(profiles::put).delete(profiles::delete),
        )
        .route("/api/v1/profiles/{kind}/{name}/test", post(profiles::test))
        .route("/api/v1/users", get(users::list_users))
        .route("/api/v1/users/{name}", get(users::get_user).put(users::put_user).delete(users::delete_user))
        .route("/api/v1/tokens", get(tokens::list_tokens).post(tokens::create_token))
        .route("/api/v1/tokens/{name}", axum::routing::delete(tokens::revoke_token))
        .route("/api/v1/certificate", get(certificate::show).delete(certificate::delete))
        .route("/api/v1/access-control", get(security::get_access_control).put(security::put_access_control))
        .route("/api/v1/blocked", get(security::blocked).delete(security::unblock))
        .route("/api/v1/logfile", get(security::logfile))
        .route("/api/v1/events", get(security::events))
        .route("/api/v1/certificate/download", get(certificate::download))
        .route("/api/v1/certificate/request", get(certificate::request))
        .route("/api/v1/certificate/generate", post(certificate::generate))
        .route(
            "/api/v1/certificate/upload",
            post(certificate::upload).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/v1/certificate/upload-certificate",
            post(certificate::upload_certificate).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        );
    // What a build leaves out answers `feature_not_built` (after the login,
    // like everything here), never a 404.
    #[cfg(feature = "webroot")]
    let router = router.route("/api/v1/webroot", get(webroot::get_webroot).put(webroot::put_webroot));
    #[cfg(not(feature = "webroot"))]
    let router = router.route("/api/v1/webroot", crate::build_info::not_built_route("webroot"));
    #[cfg(feature = "metrics")]
    let router = router.route("/metrics", get(metrics::metrics));
    #[cfg(not(feature = "metrics"))]
    let router = router.route("/metrics", crate::build_info::not_built_route("metrics"));
    #[cfg(feature = "syslog")]
    let router = router.route("/api/v1/syslog", get(syslog::get_syslog).put(syslog::put_syslog));
    #[cfg(not(feature = "syslog"))]
    let router = router.route("/api/v1/syslog", crate::build_info::not_built_route("syslog"));
    #[cfg(feature = "crowdsec")]
    let router = router.route("/api/v1/crowdsec", get(crowdsec::get_crowdsec).put(crowdsec::put_crowdsec));
    #[cfg(not(feature = "crowdsec"))]
    let router = router.route("/api/v1/crowdsec", crate::build_info::not_built_route("crowdsec"));
    #[cfg(feature = "backup")]
    let router = router.route("/api/v1/config/export", post(backup::export)).route(
        "/api/v1/config/import",
        post(backup::import).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
    );
    #[cfg(not(feature = "backup"))]
    let router = router
        .route("/api/v1/config/export", crate::build_info::not_built_route("backup"))
        .route("/api/v1/config/import", crate::build_info::not_built_route("backup"));
    #[cfg(feature = "totp")]
    let router = router
        .route("/api/v1/users/{name}/totp", post(second_factor::start).delete(second_factor::reset))
        .route("/api/v1/users/{name}/totp/confirm", post(second_factor::confirm));
    #[cfg(not(feature = "totp"))]
    let router = router
        .route("/api/v1/users/{name}/totp", crate::build_info::not_built_route("totp"))
        .route("/api/v1/users/{name}/totp/confirm", crate::build_info::not_built_route("totp"));
    #[cfg(feature = "acme")]
    let router = router
        .route("/api/v1/certificate/acme", get(certificate::get_acme).put(certificate::put_acme))
        .route("/api/v1/certificate/acme/enrol", post(certificate::enrol_acme));
    #[cfg(not(feature = "acme"))]
    let router = router
        .route("/api/v1/certificate/acme", crate::build_info::not_built_route("acme"))
        .route("/api/v1/certificate/acme/enrol", crate::build_info::not_built_route("acme"));
    router
}

/// Routes open without a login.
pub fn public_routes(rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    #[cfg(feature = "openapi")]
    let openapi_route = get(openapi::openapi);
    #[cfg(not(feature = "openapi"))]
    let openapi_route = crate::build_info::not_built_route("openapi");
    #[cfg(feature = "acme")]
    let http01_route = get(certificate::http01);
    #[cfg(not(feature = "acme"))]
    let http01_route = crate::build_info::not_built_route("acme");
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/v1/openapi.json", openapi_route)
        .route("/.well-known/acme-challenge/{token}", http01_route)
        .route(
            "/api/v1/session",
            post(session::login).delete(session::logout).get(session::get_session).route_layer(
                axum::middleware::from_fn_with_state(rt.clone(), crate::http::identify_optional),
            ),
        )
}
