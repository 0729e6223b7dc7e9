//! `/api/v1/session`: the web UI's login session (cookie and CSRF token).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use portcullis_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Group};
use crate::error::{ApiError, ErrorBody};
use crate::http::{ApiJson, PasswordRefusal, Viewer};
use crate::runtime::Runtime;

/// Login with user name and password (for the web UI).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginInput {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// For an account with two-step verification: the code its
    /// authenticator app shows, or one of its recovery codes. Without it,
    /// such an account's right password answers 401 `second_factor_required`.
    #[serde(default)]
    pub code: Option<String>,
}

portcullis_core::input!(LoginInput);

/// The session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// User name.
    pub user: String,
    /// Group.
    pub group: Group,
    /// Token to send as `X-CSRF-Token` on every unsafe request of this session.
    pub csrf_token: Option<String>,
    /// Whether the account has a second factor (two-step verification).
    pub second_factor: bool,
}

/// Opens a session: sets the `portcullis_session` cookie (HttpOnly,
/// SameSite=Strict, Secure on HTTPS).
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = LoginInput,
    responses((status = 200, body = SessionView),
        (status = 401, description = "wrong_credentials; for an account with a second factor, second_factor_required (no code given), second_factor_wrong or second_factor_code_used", body = ErrorBody),
        (status = 429, description = "too many failed logins from this address; retry after Retry-After", body = ErrorBody)))]
pub async fn login(
    State(rt): State<Arc<Runtime>>,
    info: Option<axum::Extension<crate::conn::ConnInfo>>,
    ApiJson(input): ApiJson<LoginInput>,
) -> Result<Response, ApiError> {
    let tls = info.as_ref().is_some_and(|i| i.tls);
    let mut ext = http::Extensions::new();
    if let Some(axum::Extension(i)) = info {
        ext.insert(i);
    }
    match crate::http::check_password(&rt, &ext, &input.user, &input.password, "/api/v1/session").await {
        Ok(id) => {
            let path = "/api/v1/session";
            if let Err(resp) =
                crate::http::check_second_factor(&rt, &ext, &id.user, input.code.as_deref(), path).await
            {
                return Ok(resp);
            }
            if let Some(ip) = crate::http::client_ip(&ext) {
                let timeout = rt.running().webserver.intrusion_detection.timeout_minutes;
                rt.security().log_access(
                    ip,
                    Some(&id.user),
                    true,
                    "/api/v1/session",
                    rt.timestamp(),
                    timeout,
                );
            }
            rt.capture_digest(&id.user, &input.password).await;
            let (token, csrf) = rt.auth().open_session(&id, rt.clock().monotonic());
            let cookie = session_cookie(&token, tls);
            let second_factor = rt.auth().has_second_factor(&id.user);
            let body = SessionView { user: id.user, group: id.group, csrf_token: Some(csrf), second_factor };
            Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
        }
        Err(PasswordRefusal::Wrong) => Ok(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::WrongCredentials,
            "wrong user name or password",
        )
        .into_response()),
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
pub async fn logout(State(rt): State<Arc<Runtime>>, headers: http::HeaderMap) -> Response {
    if let Some(token) = crate::http::cookie(&headers, auth::SESSION_COOKIE) {
        rt.auth().close_session(token);
    }
    let clear = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::SESSION_COOKIE);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

/// The caller's identity (and CSRF token when logged in by session).
#[utoipa::path(get, path = "/api/v1/session", tag = "session", responses((status = 200, body = SessionView)))]
pub async fn get_session(State(rt): State<Arc<Runtime>>, v: Viewer) -> Json<SessionView> {
    let csrf = match v.identity.via {
        auth::AuthMethod::Session { csrf } => Some(csrf),
        auth::AuthMethod::Basic | auth::AuthMethod::Digest | auth::AuthMethod::Token { .. } => None,
    };
    let second_factor = rt.auth().has_second_factor(&v.identity.user);
    Json(SessionView { user: v.identity.user, group: v.identity.group, csrf_token: csrf, second_factor })
}
