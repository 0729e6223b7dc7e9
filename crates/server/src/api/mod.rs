//! The JSON API under `/api/v1` (names from SPEC §8) and its OpenAPI document.

pub mod certificate;
pub mod profiles;
pub mod security;

use portcullis_core::ErrorCode;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use portcullis_core::settings::{ListenerSpec, WebServerSettings};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{self, Group, Verdict};
use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::{ApplyError, ConfigStatus, Runtime};

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(v) => ApiError::invalid(v),
            ApplyError::Bind(b) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::PortUnavailable, b.to_string())
                    .field(if b.tls { "https_port" } else { "http_ports" })
            }
            ApplyError::Store(s) => ApiError::internal(s),
            e @ ApplyError::Unconfirmed(_) => ApiError::conflict(ErrorCode::ChangeUnconfirmed, e.to_string()),
            e @ ApplyError::NothingPending => ApiError::conflict(ErrorCode::NothingPending, e.to_string()),
            e @ ApplyError::ConfirmFromNew(_) => {
                ApiError::conflict(ErrorCode::ConfirmFromNewAddress, e.to_string())
            }
        }
    }
}

/// Routes that need a login (mounted behind the authentication layer).
pub fn protected_routes(upload_limit: usize) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/api/v1/webserver", get(get_webserver).put(put_webserver))
        .route("/api/v1/webserver/factory", get(get_factory))
        .route("/api/v1/config/status", get(config_status))
        .route("/api/v1/config/store", post(config_store))
        .route("/api/v1/config/restore", post(config_restore))
        .route("/api/v1/config/confirm", post(config_confirm))
        .route("/api/v1/reboot", post(reboot))
        .route("/api/v1/listeners", get(listeners))
        .route("/api/v1/authentication", get(get_authentication).put(put_authentication))
        .route("/api/v1/webroot", get(get_webroot).put(put_webroot))
        .route("/api/v1/profiles", get(profiles::list))
        .route(
            "/api/v1/profiles/{kind}/{name}",
            get(profiles::get).put(profiles::put).delete(profiles::delete),
        )
        .route("/api/v1/profiles/{kind}/{name}/test", post(profiles::test))
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{name}", get(get_user).put(put_user).delete(delete_user))
        .route("/api/v1/certificate", get(certificate::show).delete(certificate::delete))
        .route("/api/v1/access-control", get(security::get_access_control).put(security::put_access_control))
        .route("/api/v1/blocked", get(security::blocked).delete(security::unblock))
        .route("/api/v1/logfile", get(security::logfile))
        .route("/api/v1/events", get(security::events))
        .route("/api/v1/certificate/download", get(certificate::download))
        .route("/api/v1/certificate/acme", get(certificate::get_acme).put(certificate::put_acme))
        .route("/api/v1/certificate/acme/enrol", post(certificate::enrol_acme))
        .route("/api/v1/certificate/request", get(certificate::request))
        .route("/api/v1/certificate/generate", post(certificate::generate))
        .route(
            "/api/v1/certificate/upload",
            post(certificate::upload).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/v1/certificate/upload-certificate",
            post(certificate::upload_certificate).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
}

/// Routes open without a login.
pub fn public_routes(rt: &Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/.well-known/acme-challenge/{token}", get(certificate::http01))
        .route(
            "/api/v1/session",
            post(login).delete(logout).get(get_session).route_layer(axum::middleware::from_fn_with_state(
                rt.clone(),
                crate::http::identify_optional,
            )),
        )
}

/// Health of the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always "ok" when the server answers.
    pub status: &'static str,
}

/// Liveness check, open without login.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ApiDoc::openapi().to_pretty_json().unwrap_or_default())
        .into_response()
}

/// The running "Web Server" settings.
#[utoipa::path(get, path = "/api/v1/webserver", tag = "webserver",
    responses((status = 200, body = WebServerSettings), (status = 401, body = ErrorBody)))]
async fn get_webserver(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<WebServerSettings> {
    Json(rt.running().webserver.clone())
}

/// Set: validates and makes the settings running at once (listeners opened and
/// closed); nothing is written to disk until Store.
#[utoipa::path(put, path = "/api/v1/webserver", tag = "webserver", request_body = WebServerSettings,
    responses((status = 200, body = WebServerSettings), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "a port cannot be opened", body = ErrorBody)))]
async fn put_webserver(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    info: Option<axum::Extension<crate::listen::ConnInfo>>,
    ApiJson(settings): ApiJson<WebServerSettings>,
) -> Result<Json<WebServerSettings>, ApiError> {
    let via = info.map(|i| ListenerSpec { port: i.local_port, tls: i.tls });
    let running = rt.set_webserver(settings, &admin.actor, via).await?;
    Ok(Json(running.webserver.clone()))
}

/// Factory: the factory defaults of the dialog (to load into the form; a Set applies them).
#[utoipa::path(get, path = "/api/v1/webserver/factory", tag = "webserver",
    responses((status = 200, body = WebServerSettings)))]
async fn get_factory(_v: Viewer) -> Json<WebServerSettings> {
    Json(WebServerSettings::default())
}

/// Close: whether the running configuration differs from the stored one.
#[utoipa::path(get, path = "/api/v1/config/status", tag = "config", responses((status = 200, body = ConfigStatus)))]
async fn config_status(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<ConfigStatus> {
    Json(rt.status())
}

/// Store: writes the running configuration permanently (crash-safe).
#[utoipa::path(post, path = "/api/v1/config/store", tag = "config", responses((status = 200, body = ConfigStatus)))]
async fn config_store(State(rt): State<Arc<Runtime>>, admin: Admin) -> Result<Json<ConfigStatus>, ApiError> {
    rt.store(&admin.actor).await?;
    Ok(Json(rt.status()))
}

/// Restore: the running configuration goes back to the stored one.
#[utoipa::path(post, path = "/api/v1/config/restore", tag = "config", responses((status = 200, body = ConfigStatus)))]
async fn config_restore(
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
async fn config_confirm(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    info: Option<axum::Extension<crate::listen::ConnInfo>>,
) -> Result<Json<ConfigStatus>, ApiError> {
    let via = info.map(|i| ListenerSpec { port: i.local_port, tls: i.tls });
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
async fn reboot(State(rt): State<Arc<Runtime>>, admin: Admin) -> Result<Json<RebootOutcome>, ApiError> {
    rt.reboot(&admin.actor).await?;
    Ok(Json(RebootOutcome { listeners: rt.open_listeners().await }))
}

/// The listeners open now.
#[utoipa::path(get, path = "/api/v1/listeners", tag = "webserver", responses((status = 200, body = Vec<ListenerSpec>)))]
async fn listeners(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<Vec<ListenerSpec>> {
    Json(rt.open_listeners().await)
}

/// The running authentication settings.
#[utoipa::path(get, path = "/api/v1/authentication", tag = "users",
    responses((status = 200, body = portcullis_core::settings::AuthenticationSettings)))]
async fn get_authentication(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
) -> Json<portcullis_core::settings::AuthenticationSettings> {
    Json(rt.running().authentication.clone())
}

/// Set for the authentication schemes (Digest on or off). Switching Digest
/// off removes every stored Digest secret at once; switched on, each user's
/// secret is derived at its next password change or password login.
#[utoipa::path(put, path = "/api/v1/authentication", tag = "users",
    request_body = portcullis_core::settings::AuthenticationSettings,
    responses((status = 200, body = portcullis_core::settings::AuthenticationSettings), (status = 400, body = ErrorBody)))]
async fn put_authentication(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<portcullis_core::settings::AuthenticationSettings>,
) -> Result<Json<portcullis_core::settings::AuthenticationSettings>, ApiError> {
    let running = rt.set_authentication(settings, &admin.actor).await?;
    Ok(Json(running.authentication.clone()))
}

/// The running static content settings.
#[utoipa::path(get, path = "/api/v1/webroot", tag = "webserver",
    responses((status = 200, body = portcullis_core::settings::WebrootSettings)))]
async fn get_webroot(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
) -> Json<portcullis_core::settings::WebrootSettings> {
    Json(rt.running().webroot.clone())
}

/// Set for the static content settings (public, or login required).
#[utoipa::path(put, path = "/api/v1/webroot", tag = "webserver",
    request_body = portcullis_core::settings::WebrootSettings,
    responses((status = 200, body = portcullis_core::settings::WebrootSettings), (status = 400, body = ErrorBody)))]
async fn put_webroot(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(settings): ApiJson<portcullis_core::settings::WebrootSettings>,
) -> Result<Json<portcullis_core::settings::WebrootSettings>, ApiError> {
    let running = rt.set_webroot(settings, &admin.actor).await?;
    Ok(Json(running.webroot.clone()))
}

/// An account as shown by the API (never its hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Login name.
    pub name: String,
    /// Group.
    pub group: Group,
}

/// Creating or changing an account.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserInput {
    /// Group; defaults to `users` for a new account, unchanged for an existing one.
    #[serde(default)]
    pub group: Option<Group>,
    /// New password; required for a new account.
    #[serde(default)]
    pub password: Option<String>,
}

/// Every account.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = Vec<UserView>)))]
async fn list_users(State(rt): State<Arc<Runtime>>, _a: Admin) -> Json<Vec<UserView>> {
    Json(rt.auth.users().users.values().map(|u| UserView { name: u.name.clone(), group: u.group }).collect())
}

/// One account (admins see all; a user sees itself).
#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    if v.identity.group != Group::Admins && v.identity.user != name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "you may only view your own account",
        ));
    }
    let users = rt.auth.users();
    let u =
        users.users.get(&name).ok_or_else(|| ApiError::not_found(format!("there is no user \"{name}\"")))?;
    Ok(Json(UserView { name: u.name.clone(), group: u.group }))
}

/// Creates or changes an account; written at once. A member of `users` may
/// change only its own password.
#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    request_body = UserInput, responses((status = 200, body = UserView), (status = 400, body = ErrorBody)))]
async fn put_user(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<UserInput>,
) -> Result<Json<UserView>, ApiError> {
    let is_admin = v.identity.group == Group::Admins;
    if !is_admin && (v.identity.user != name || input.group.is_some()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "you may only change your own password",
        ));
    }
    let hash = match &input.password {
        Some(p) => {
            auth::validate_password(p)?;
            let p = p.clone();
            let hash = tokio::task::spawn_blocking(move || auth::hash_password(&p))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            Some(hash)
        }
        None => None,
    };
    let digest = rt.running().authentication.digest;
    let group = rt
        .update_users(|users| {
            let group = users.upsert(&name, input.group, hash)?;
            if let (true, Some(p)) = (digest, &input.password) {
                users.set_digest(&name, p);
            }
            Ok::<_, portcullis_core::ValidationError>(group)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(user_error)?;
    rt.event(portcullis_core::events::EventKind::UserChanged, &v.actor, &format!("account \"{name}\" saved"));
    Ok(Json(UserView { name, group }))
}

/// Deletes an account (never the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_user(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    rt.update_users(|users| users.delete(&name)).await.map_err(ApiError::internal)?.map_err(user_error)?;
    rt.event(
        portcullis_core::events::EventKind::UserChanged,
        &admin.actor,
        &format!("account \"{name}\" deleted"),
    );
    Ok(StatusCode::NO_CONTENT)
}

fn user_error(e: portcullis_core::ValidationError) -> ApiError {
    match e.code {
        ErrorCode::NotFound => ApiError::not_found(e.message),
        ErrorCode::LastAdmin => ApiError::conflict(ErrorCode::LastAdmin, e.message).field(e.field),
        _ => ApiError::invalid(e),
    }
}

/// Login with user name and password (for the web UI).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginInput {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// The session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// User name.
    pub user: String,
    /// Group.
    pub group: Group,
    /// Token to send as `X-CSRF-Token` on every unsafe request of this session.
    pub csrf_token: Option<String>,
}

/// Opens a session: sets the `portcullis_session` cookie (HttpOnly,
/// SameSite=Strict, Secure on HTTPS).
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = LoginInput,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
async fn login(
    State(rt): State<Arc<Runtime>>,
    info: Option<axum::Extension<crate::listen::ConnInfo>>,
    ApiJson(input): ApiJson<LoginInput>,
) -> Result<Response, ApiError> {
    let tls = info.as_ref().is_some_and(|i| i.tls);
    let mut ext = http::Extensions::new();
    if let Some(axum::Extension(i)) = info {
        ext.insert(i);
    }
    match rt.auth.verify(&input.user, &input.password).await {
        Verdict::Valid(id) => {
            if let Some(ip) = crate::http::client_ip(&ext) {
                let timeout = rt.running().webserver.intrusion_detection.timeout_minutes;
                rt.security.log_access(ip, Some(&id.user), true, "/api/v1/session", rt.now(), timeout);
            }
            rt.capture_digest(&id.user, &input.password).await;
            let (token, csrf) = rt.auth.open_session(&id);
            let cookie = session_cookie(&token, tls);
            let body = SessionView { user: id.user, group: id.group, csrf_token: Some(csrf) };
            Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
        }
        Verdict::Invalid => {
            crate::http::wrong_credentials(&rt, &ext, &input.user, "/api/v1/session");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::WrongCredentials,
                "wrong user name or password",
            ))
        }
        Verdict::Busy => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Busy, "try again in a moment"))
        }
    }
}

/// The `Set-Cookie` value of a session.
pub fn session_cookie(token: &str, tls: bool) -> String {
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        auth::SESSION_COOKIE,
        if tls { "; Secure" } else { "" }
    )
}

/// Ends the caller's session.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204)))]
async fn logout(State(rt): State<Arc<Runtime>>, headers: http::HeaderMap) -> Response {
    if let Some(token) = crate::http::cookie(&headers, auth::SESSION_COOKIE) {
        rt.auth.close_session(token);
    }
    let clear = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::SESSION_COOKIE);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

/// The caller's identity (and CSRF token when logged in by session).
#[utoipa::path(get, path = "/api/v1/session", tag = "session", responses((status = 200, body = SessionView)))]
async fn get_session(v: Viewer) -> Json<SessionView> {
    let csrf = match v.identity.via {
        auth::AuthMethod::Session { csrf } => Some(csrf),
        auth::AuthMethod::Basic | auth::AuthMethod::Digest => None,
    };
    Json(SessionView { user: v.identity.user, group: v.identity.group, csrf_token: csrf })
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
/// not, 503 while password checks are saturated; and for a JSON body, 400
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
    paths(healthz, get_webserver, put_webserver, get_factory, config_status, config_store, config_restore, config_confirm, reboot,
        listeners, certificate::show, certificate::delete, certificate::generate, certificate::upload,
        certificate::upload_certificate, certificate::download, certificate::request, certificate::get_acme,
        certificate::put_acme, certificate::enrol_acme,
        security::get_access_control, security::put_access_control, security::blocked, security::unblock,
        security::logfile, security::events, get_authentication, put_authentication, get_webroot, put_webroot, profiles::list, profiles::get, profiles::put, profiles::delete, profiles::test, list_users, get_user, put_user, delete_user, login, logout, get_session),
    components(schemas(ErrorBody, crate::error::ErrorDetail, portcullis_core::ErrorCode)),
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
