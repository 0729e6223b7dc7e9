//! The JSON API under `/api/v1` (names from SPEC §8) and its OpenAPI document.

pub mod certificate;
pub mod profiles;
pub mod security;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use portcullis_core::settings::{ListenerSpec, WebServerSettings};
use serde::{Deserialize, Serialize};
#[cfg(all(feature = "acme", feature = "webroot"))]
use utoipa::OpenApi;
use utoipa::ToSchema;

use crate::auth::{self, Group};
use crate::error::{ApiError, ErrorBody};
use crate::http::PasswordRefusal;
use crate::http::{Admin, ApiJson, Viewer};
use crate::runtime::{ApplyError, ConfigStatus, Runtime};

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(v) => ApiError::invalid(v),
            ApplyError::Bind(b) => ApiError::new(StatusCode::CONFLICT, "port_unavailable", b.to_string())
                .field(if b.tls { "https_port" } else { "http_ports" }),
            ApplyError::Store(s) => s.into(),
            e @ ApplyError::Unconfirmed(_) => ApiError::conflict("change_unconfirmed", e.to_string()),
            e @ ApplyError::NothingPending => ApiError::conflict("nothing_pending", e.to_string()),
            e @ ApplyError::ConfirmFromNew(_) => {
                ApiError::conflict("confirm_from_new_address", e.to_string())
            }
            e @ ApplyError::WouldLockOut(_) => {
                ApiError::conflict("would_lock_out", e.to_string()).field("rules")
            }
        }
    }
}

/// Routes that need a login (mounted behind the authentication layer).
pub fn protected_routes(upload_limit: usize) -> Router<Arc<Runtime>> {
    let router = Router::new()
        .route("/api/v1/build", get(crate::build_info::get_build))
        .route("/api/v1/webserver", get(get_webserver).put(put_webserver))
        .route("/api/v1/webserver/factory", get(get_factory))
        .route("/api/v1/config/status", get(config_status))
        .route("/api/v1/config/store", post(config_store))
        .route("/api/v1/config/restore", post(config_restore))
        .route("/api/v1/config/confirm", post(config_confirm))
        .route("/api/v1/reboot", post(reboot))
        .route("/api/v1/listeners", get(listeners))
        .route("/api/v1/authentication", get(get_authentication).put(put_authentication))
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
    let router = router.route("/api/v1/webroot", get(get_webroot).put(put_webroot));
    #[cfg(not(feature = "webroot"))]
    let router = router.route("/api/v1/webroot", crate::build_info::not_built_route("webroot"));
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
    let openapi_route = get(openapi);
    #[cfg(not(feature = "openapi"))]
    let openapi_route = crate::build_info::not_built_route("openapi");
    #[cfg(feature = "acme")]
    let http01_route = get(certificate::http01);
    #[cfg(not(feature = "acme"))]
    let http01_route = crate::build_info::not_built_route("acme");
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", openapi_route)
        .route("/.well-known/acme-challenge/{token}", http01_route)
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
async fn healthz() -> impl IntoResponse {
    // A stored answer would say the server lives when it may not.
    ([(header::CACHE_CONTROL, "no-store")], Json(Health { status: "ok" }))
}

/// The OpenAPI document of the full build, generated from the code's types
/// by the test `openapi_document_is_current` (which fails when it is stale;
/// `PORTCULLIS_BLESS=1` rewrites it). Served from this text, not built at run
/// time: utoipa's builder code was about 0.7 MiB of the binary.
#[cfg(feature = "openapi")]
const OPENAPI_FULL: &str = include_str!("../../openapi.json");

/// Paths of the document that belong to an optional feature.
const OPENAPI_FEATURE_PATHS: [(&str, &str); 2] =
    [("/api/v1/certificate/acme", "acme"), ("/api/v1/webroot", "webroot")];

/// The OpenAPI document of this build: what a left-out feature serves is removed.
#[cfg(feature = "openapi")]
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        openapi_for_build(OPENAPI_FULL, &crate::build_info::absent_features())
            .unwrap_or_else(|| OPENAPI_FULL.to_string())
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

/// The running "Web Server" settings.
#[utoipa::path(get, path = "/api/v1/webserver", tag = "webserver",
    responses((status = 200, body = WebServerSettings), (status = 401, body = ErrorBody)))]
async fn get_webserver(State(rt): State<Arc<Runtime>>, _v: Viewer) -> Json<WebServerSettings> {
    Json(rt.running().webserver.clone())
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

/// Set: validates and makes the settings running at once (listeners opened and
/// closed); nothing is written to disk until Store. A Set that closes the port
/// it came through is provisional: 202 with the deadline, confirmed by
/// `POST /api/v1/config/confirm` through a port it keeps or opens.
#[utoipa::path(put, path = "/api/v1/webserver", tag = "webserver", request_body = WebServerSettings,
    responses((status = 200, body = WebServerSettings),
        (status = 202, description = "applied provisionally: confirm before the deadline or it is rolled back", body = ProvisionalChange),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "a port cannot be opened", body = ErrorBody)))]
async fn put_webserver(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    info: Option<axum::Extension<crate::listen::ConnInfo>>,
    ApiJson(settings): ApiJson<WebServerSettings>,
) -> Result<Response, ApiError> {
    let via = info.map(|i| ListenerSpec { port: i.local_port, tls: i.tls });
    let (running, pending) = rt.set_webserver(settings, &admin.actor, via).await?;
    Ok(set_answer(&running.webserver, pending))
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
    if settings.digest && !crate::build_info::built("digest") {
        return Err(crate::build_info::not_built_error("digest"));
    }
    let running = rt.set_authentication(settings, &admin.actor).await?;
    Ok(Json(running.authentication.clone()))
}

#[cfg(feature = "webroot")]
/// The running static content settings.
#[utoipa::path(get, path = "/api/v1/webroot", tag = "webserver",
    responses((status = 200, body = portcullis_core::settings::WebrootSettings)))]
async fn get_webroot(
    State(rt): State<Arc<Runtime>>,
    _v: Viewer,
) -> Json<portcullis_core::settings::WebrootSettings> {
    Json(rt.running().webroot.clone())
}

#[cfg(feature = "webroot")]
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
    /// The current password: required to change one's own password (so a
    /// session left open, or a stolen cookie, cannot take the account over).
    /// An admin changing another account's password does not give it.
    #[serde(default)]
    pub current_password: Option<String>,
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
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "you may only view your own account"));
    }
    let users = rt.auth.users();
    let u =
        users.users.get(&name).ok_or_else(|| ApiError::not_found(format!("there is no user \"{name}\"")))?;
    Ok(Json(UserView { name: u.name.clone(), group: u.group }))
}

/// Creates or changes an account; written at once. A member of `users` may
/// change only its own password. Changing one's own password needs the
/// current one (`current_password`); a wrong one counts as a failed login.
#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    request_body = UserInput, responses((status = 200, body = UserView),
        (status = 400, description = "invalid input; current_password missing (required) or wrong (current_password_wrong)", body = ErrorBody)))]
async fn put_user(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
    info: Option<axum::Extension<crate::listen::ConnInfo>>,
    ApiJson(input): ApiJson<UserInput>,
) -> Result<Response, ApiError> {
    let is_admin = v.identity.group == Group::Admins;
    if !is_admin && (v.identity.user != name || input.group.is_some()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you may only change your own password",
        ));
    }
    if input.password.is_some() && v.identity.user == name {
        let Some(current) = &input.current_password else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "required",
                "give your current password to change it",
            )
            .field("current_password"));
        };
        let mut ext = http::Extensions::new();
        if let Some(axum::Extension(i)) = info {
            ext.insert(i);
        }
        let path = format!("/api/v1/users/{name}");
        match crate::http::check_password(&rt, &ext, &name, current, &path).await {
            Ok(_) => {}
            Err(PasswordRefusal::Wrong) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "current_password_wrong",
                    "the current password is wrong",
                )
                .field("current_password"));
            }
            Err(PasswordRefusal::Refused(resp)) => return Ok(resp),
        }
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
    let digest = rt.digest_on();
    let group = rt
        .update_users(|users| {
            let group = users.upsert(&name, input.group, hash)?;
            if let (true, Some(p)) = (digest, &input.password) {
                users.set_digest(&name, p);
            }
            Ok::<_, portcullis_core::ValidationError>(group)
        })
        .await
        .map_err(ApiError::from)?
        .map_err(user_error)?;
    rt.event(portcullis_core::events::EventKind::UserChanged, &v.actor, &format!("account \"{name}\" saved"));
    Ok(Json(UserView { name, group }).into_response())
}

/// Deletes an account (never the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_user(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    rt.update_users(|users| users.delete(&name)).await.map_err(ApiError::from)?.map_err(user_error)?;
    rt.event(
        portcullis_core::events::EventKind::UserChanged,
        &admin.actor,
        &format!("account \"{name}\" deleted"),
    );
    Ok(StatusCode::NO_CONTENT)
}

fn user_error(e: portcullis_core::ValidationError) -> ApiError {
    match e.code.as_str() {
        "not_found" => ApiError::not_found(e.message),
        "last_admin" => ApiError::conflict("last_admin", e.message).field(e.field),
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
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody),
        (status = 429, description = "too many failed logins from this address; retry after Retry-After", body = ErrorBody)))]
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
    match crate::http::check_password(&rt, &ext, &input.user, &input.password, "/api/v1/session").await {
        Ok(id) => {
            if let Some(ip) = crate::http::client_ip(&ext) {
                let timeout = rt.running().webserver.intrusion_detection.timeout_minutes;
                rt.security.log_access(ip, Some(&id.user), true, "/api/v1/session", rt.timestamp(), timeout);
            }
            rt.capture_digest(&id.user, &input.password).await;
            let (token, csrf) = rt.auth.open_session(&id);
            let cookie = session_cookie(&token, tls);
            let body = SessionView { user: id.user, group: id.group, csrf_token: Some(csrf) };
            Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
        }
        Err(PasswordRefusal::Wrong) => {
            Ok(ApiError::new(StatusCode::UNAUTHORIZED, "wrong_credentials", "wrong user name or password")
                .into_response())
        }
        Err(PasswordRefusal::Refused(resp)) => Ok(resp),
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

#[cfg(all(feature = "acme", feature = "webroot"))]
struct SecurityAddon;

#[cfg(all(feature = "acme", feature = "webroot"))]
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
/// not, 421 for a `Host` that is not the device's, 429 while the
/// failed-login rate bound holds the client back, 503 while password checks
/// are saturated; and for a JSON body, 400
/// (malformed, unknown field), 413 (over the limit) and 415 (not JSON).
#[cfg(all(feature = "acme", feature = "webroot"))]
struct CommonResponses;

#[cfg(all(feature = "acme", feature = "webroot"))]
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
#[cfg(all(feature = "acme", feature = "webroot"))]
#[derive(OpenApi)]
#[openapi(
    info(title = "portcullis", description = "Web server of a network device: settings, certificates, users."),
    paths(healthz, crate::build_info::get_build, get_webserver, put_webserver, get_factory, config_status, config_store, config_restore, config_confirm, reboot,
        listeners, certificate::show, certificate::delete, certificate::generate, certificate::upload,
        certificate::upload_certificate, certificate::download, certificate::request, certificate::get_acme,
        certificate::put_acme, certificate::enrol_acme,
        security::get_access_control, security::put_access_control, security::blocked, security::unblock,
        security::logfile, security::events, get_authentication, put_authentication, get_webroot, put_webroot, profiles::list, profiles::get, profiles::put, profiles::delete, profiles::test, list_users, get_user, put_user, delete_user, login, logout, get_session),
    components(schemas(ErrorBody, crate::error::ErrorDetail, ProvisionalChange)),
    modifiers(&SecurityAddon, &CommonResponses),
    security(("basic" = []), ("session" = []))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document is what the code's types make: regenerate it
    /// with `PORTCULLIS_BLESS=1 cargo test -p portcullis openapi_document`.
    #[cfg(all(feature = "acme", feature = "webroot"))]
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
    }
}
