//! `/api/v1/openapi.json`: the OpenAPI document of the API, built from the
//! handlers' annotations in the sibling modules.

use axum::response::{IntoResponse, Response};
use http::header;
use utoipa::OpenApi;

use crate::auth;
use crate::error::ErrorBody;

use super::{
    authentication, certificate, config, health, profiles, security, session, users, webroot, webserver,
};

/// The OpenAPI document (JSON).
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ApiDoc::openapi().to_pretty_json().unwrap_or_default())
        .into_response()
}

struct SecurityAddon;

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
    }
}

/// Error answers that every operation may give, documented in one place
/// instead of on each handler (schemathesis found them undocumented): 401
/// without valid credentials, 403 for a group or client address that may
/// not, 429 while the failed-login rate bound holds the client back, 503
/// while password checks are saturated; and for a JSON body, 400
/// (malformed, unknown field), 413 (over the limit) and 415 (not JSON).
struct CommonResponses;

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

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "portcullis", description = "Web server of a network device: settings, certificates, users."),
    paths(health::healthz, webserver::get_webserver, webserver::put_webserver, webserver::get_factory,
        config::config_status, config::config_store, config::config_restore, config::config_confirm, config::reboot,
        webserver::listeners, certificate::show, certificate::delete, certificate::generate, certificate::upload,
        certificate::upload_certificate, certificate::download, certificate::request, certificate::get_acme,
        certificate::put_acme, certificate::enrol_acme,
        security::get_access_control, security::put_access_control, security::blocked, security::unblock,
        security::logfile, security::events, authentication::get_authentication, authentication::put_authentication,
        webroot::get_webroot, webroot::put_webroot, profiles::list, profiles::get, profiles::put, profiles::delete,
        profiles::test, users::list_users, users::get_user, users::put_user, users::delete_user, session::login,
        session::logout, session::get_session),
    components(schemas(ErrorBody, crate::error::ErrorDetail, portcullis_core::ErrorCode, config::ProvisionalChange)),
    modifiers(&SecurityAddon, &CommonResponses),
    security(("basic" = []), ("session" = []))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

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
