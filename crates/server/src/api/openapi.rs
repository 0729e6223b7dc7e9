//! `/api/v1/openapi.json`: the OpenAPI document of the API, built from the
//! handlers' annotations in the sibling modules.
//!
//! The document of the full build is committed (`crates/server/openapi.json`),
//! generated from the code's types by the test `openapi_document_is_current`
//! (which fails when it is stale; `PORTCULLIS_BLESS=1` rewrites it). A build
//! serves that text without the paths of the features it leaves out: building
//! the document at run time took utoipa's builder code, about 0.7 MiB of the
//! binary. The text is embedded compressed (DEFLATE, made by `build.rs`: 20
//! KB instead of 210) and unpacked on the first request for it.

#[cfg(feature = "openapi")]
use axum::response::{IntoResponse, Response};
#[cfg(feature = "openapi")]
use http::header;
#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
use utoipa::OpenApi;

#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
use crate::auth;
#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
use crate::error::ErrorBody;

#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
use super::{
    authentication, backup, build, certificate, config, crowdsec, health, metrics, profiles, second_factor,
    security, session, syslog, tokens, users, webroot, webserver,
};

// OPENAPI_FULL: the OpenAPI document of the full build (see the module
// docs), compressed, and its length; made by build.rs.
#[cfg(feature = "openapi")]
include!(concat!(env!("OUT_DIR"), "/openapi_document.rs"));

/// The OpenAPI document of the full build, unpacked (empty should that fail,
/// which a test rules out).
#[cfg(feature = "openapi")]
fn openapi_full() -> String {
    let (deflated, len) = OPENAPI_FULL;
    crate::inflate::inflate(deflated, len).and_then(|b| String::from_utf8(b).ok()).unwrap_or_default()
}

/// Paths of the document that belong to an optional feature.
const OPENAPI_FEATURE_PATHS: [(&str, &str); 8] = [
    ("/api/v1/certificate/acme", "acme"),
    ("/api/v1/webroot", "webroot"),
    ("/metrics", "metrics"),
    ("/api/v1/syslog", "syslog"),
    ("/api/v1/crowdsec", "crowdsec"),
    ("/api/v1/config/export", "backup"),
    ("/api/v1/config/import", "backup"),
    ("/api/v1/users/{name}/totp", "totp"),
];

/// The OpenAPI document of this build: what a left-out feature serves is removed.
#[cfg(feature = "openapi")]
pub async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        let full = openapi_full();
        openapi_for_build(&full, &crate::build_info::absent_features()).unwrap_or(full)
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// `full` without the paths of the `absent` features, and without the schemas
/// nothing left refers to. `None` if `full` is not a JSON object.
pub fn openapi_for_build(full: &str, absent: &[&str]) -> Option<String> {
    let mut doc: serde_json::Value = serde_json::from_str(full).ok()?;
    let gone = |path: &str| {
        OPENAPI_FEATURE_PATHS
            .iter()
            .any(|(prefix, feature)| absent.contains(feature) && path.starts_with(prefix))
    };
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        paths.retain(|path, _| !gone(path));
    }
    prune_schemas(&mut doc);
    serde_json::to_string_pretty(&doc).ok()
}

/// Removes the component schemas that neither a path nor a kept schema refers to.
fn prune_schemas(doc: &mut serde_json::Value) {
    const PREFIX: &str = "#/components/schemas/";
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(r)) => {
                            if let Some(name) = r.strip_prefix(PREFIX) {
                                out.push(name.to_string());
                            }
                        }
                        _ => refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let Some(schemas) = doc.pointer("/components/schemas").and_then(|s| s.as_object()).cloned() else {
        return;
    };
    let mut keep = std::collections::BTreeSet::new();
    let mut todo = Vec::new();
    refs(doc.get("paths").unwrap_or(&serde_json::Value::Null), &mut todo);
    while let Some(name) = todo.pop() {
        if keep.insert(name.clone())
            && let Some(schema) = schemas.get(&name)
        {
            refs(schema, &mut todo);
        }
    }
    if let Some(s) = doc.pointer_mut("/components/schemas").and_then(|s| s.as_object_mut()) {
        s.retain(|name, _| keep.contains(name));
    }
}

#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
struct SecurityAddon;

#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
        // API tokens (`POST /api/v1/tokens`): `Authorization: Bearer pcl_…`.
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pcl_ followed by 43 base64url characters")
                    .description(Some(
                        "An API token, made by an administrator for an account (POST /api/v1/tokens), with a scope: read-only (GET only), operator (no account or token changes) or administrator.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Error answers that every operation may give, documented in one place
/// instead of on each handler (schemathesis found them undocumented): 401
/// without valid credentials, 403 for a group or client address that may
/// not, 421 for a `Host` that is not the device's, 429 while the
/// failed-login rate bound holds the client back, 503 while password checks
/// are saturated; and for a JSON body, 400
/// (malformed, unknown field), 413 (over the limit) and 415 (not JSON).
#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
struct CommonResponses;

#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if path == "/healthz" {
                continue;
            }
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let mut common = vec![
                    ("401", "no or wrong credentials"),
                    ("403", "the user's group or the client's address may not"),
                    ("421", "the Host is not one of the device's names (host_not_allowed)"),
                    ("429", "too many failed logins from this address; retry after Retry-After"),
                    ("503", "password checks are saturated; retry after Retry-After"),
                ];
                if op.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json")) {
                    common.extend([
                        ("400", "the body is malformed or names an unknown field"),
                        ("413", "the body is too large"),
                        ("415", "the body is not application/json"),
                    ]);
                }
                for (status, description) in common {
                    if !op.responses.responses.contains_key(status) {
                        op.responses.responses.insert(status.to_string(), error(description));
                    }
                }
            }
        }
    }
}

/// The OpenAPI document of the whole API, as the full build serves it
/// (`openapi.json` is made from it by a test; see [`openapi_for_build`]).
#[cfg(all(
    feature = "acme",
    feature = "webroot",
    feature = "metrics",
    feature = "syslog",
    feature = "crowdsec",
    feature = "backup",
    feature = "totp"
))]
#[derive(OpenApi)]
#[openapi(
    info(title = "portcullis", description = "Web server of a network device: settings, certificates, users."),
    paths(health::healthz, build::get_build, webserver::get_webserver, webserver::put_webserver, webserver::get_factory,
        config::config_status, config::config_store, config::config_restore, config::config_confirm, config::reboot,
        backup::export, backup::import,
        webserver::listeners, certificate::show, certificate::delete, certificate::generate, certificate::upload,
        certificate::upload_certificate, certificate::download, certificate::request, certificate::get_acme,
        certificate::put_acme, certificate::enrol_acme,
        security::get_access_control, security::put_access_control, security::blocked, security::unblock,
        security::logfile, security::events, authentication::get_authentication, authentication::put_authentication,
        webroot::get_webroot, webroot::put_webroot, profiles::list, profiles::get, profiles::put, profiles::delete,
        profiles::test, users::list_users, users::get_user, users::put_user, users::delete_user, session::login,
        session::logout, session::get_session, metrics::metrics, syslog::get_syslog, syslog::put_syslog,
        crowdsec::get_crowdsec, crowdsec::put_crowdsec, tokens::create_token, tokens::list_tokens,
        tokens::revoke_token, second_factor::start, second_factor::confirm, second_factor::reset),
    components(schemas(ErrorBody, crate::error::ErrorDetail, portcullis_core::ErrorCode, config::ProvisionalChange)),
    modifiers(&SecurityAddon, &CommonResponses),
    security(("basic" = []), ("session" = []), ("bearer" = []))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document is what the code's types make: regenerate it
    /// with `PORTCULLIS_BLESS=1 cargo test -p portcullis openapi_document`.
    #[cfg(all(
        feature = "acme",
        feature = "webroot",
        feature = "metrics",
        feature = "syslog",
        feature = "crowdsec",
        feature = "backup",
        feature = "totp"
    ))]
    #[test]
    fn openapi_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
        let made = ApiDoc::openapi().to_pretty_json().expect("serializes") + "\n";
        if std::env::var_os("PORTCULLIS_BLESS").is_some() {
            std::fs::write(&path, &made).expect("writes openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == made,
            "crates/server/openapi.json is stale: run PORTCULLIS_BLESS=1 cargo test -p portcullis openapi_document"
        );
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn the_embedded_document_unpacks_to_the_committed_one() {
        assert_eq!(openapi_full(), include_str!("../../openapi.json"));
    }

    #[test]
    fn a_left_out_feature_leaves_the_document() {
        let full = include_str!("../../openapi.json");
        let doc = |absent: &[&str]| -> serde_json::Value {
            serde_json::from_str(&openapi_for_build(full, absent).expect("filters")).expect("JSON")
        };
        let all = doc(&[]);
        let paths = |d: &serde_json::Value| d["paths"].as_object().expect("paths").clone();
        let schemas =
            |d: &serde_json::Value| d["components"]["schemas"].as_object().expect("schemas").clone();
        assert!(paths(&all).contains_key("/api/v1/certificate/acme"));
        assert!(schemas(&all).contains_key("AcmeStatus"));
        let small = doc(&["acme", "webroot"]);
        let kept = paths(&small);
        assert!(!kept.keys().any(|p| p.starts_with("/api/v1/certificate/acme") || p == "/api/v1/webroot"));
        assert_eq!(kept.len(), paths(&all).len() - 3, "exactly the ACME and webroot paths go");
        assert!(kept.contains_key("/api/v1/certificate/generate") && kept.contains_key("/api/v1/build"));
        // Schemas only those paths used go; shared ones stay.
        assert!(
            !schemas(&small).contains_key("AcmeStatus") && !schemas(&small).contains_key("WebrootSettings")
        );
        assert!(
            schemas(&small).contains_key("ErrorBody") && schemas(&small).contains_key("WebServerSettings")
        );
        // Without backups: export and import go, the rest of config/ stays.
        let no_backup = doc(&["backup"]);
        let kept = paths(&no_backup);
        assert_eq!(kept.len(), paths(&all).len() - 2, "exactly export and import go");
        assert!(!kept.contains_key("/api/v1/config/export") && !kept.contains_key("/api/v1/config/import"));
        assert!(kept.contains_key("/api/v1/config/store") && kept.contains_key("/api/v1/config/status"));
        assert!(
            !schemas(&no_backup).contains_key("ImportOutcome")
                && !schemas(&no_backup).contains_key("BackupInfo")
        );
        assert!(schemas(&no_backup).contains_key("ProvisionalChange"));
        // Without two-step verification: its two paths go, the accounts' stay.
        let no_totp = doc(&["totp"]);
        let kept = paths(&no_totp);
        assert_eq!(kept.len(), paths(&all).len() - 2, "exactly the two totp paths go");
        assert!(kept.contains_key("/api/v1/users/{name}") && !kept.keys().any(|p| p.contains("/totp")));
        assert!(
            !schemas(&no_totp).contains_key("Enrolment") && !schemas(&no_totp).contains_key("RecoveryCodes")
        );
    }

    #[cfg(all(
        feature = "acme",
        feature = "webroot",
        feature = "metrics",
        feature = "syslog",
        feature = "crowdsec",
        feature = "backup",
        feature = "totp"
    ))]
    #[test]
    fn the_document_lists_every_error_code() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode is an enum of strings")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let all: Vec<&str> = portcullis_core::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        assert_eq!(
            doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }
}
