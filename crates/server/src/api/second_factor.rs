//! `/api/v1/users/{name}/totp`: an account's second factor (README
//! "Two-step verification"). Its person enrols it, signed in: start (a new
//! secret, as text and as a QR code), then confirm with the app's first
//! code (the answer carries the recovery codes, once). A reset removes it:
//! an administrator's for any account, its person's with a current code.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use portcullis_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{AuthMethod, Group};
use crate::error::{ApiError, ErrorBody};
use crate::http::{ApiJson, Viewer};
use crate::runtime::{ApplyError, Runtime};
pub use crate::second_factor::Enrolment;

/// A code of the second factor: the app's 6 digits (or, where it says so, a recovery code).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CodeInput {
    /// The code.
    pub code: String,
}

portcullis_core::input!(CodeInput);

/// The recovery codes of a second factor just confirmed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten one-time codes for when the phone is lost: each logs in once in
    /// place of the app's code. Shown this once; keep them safe.
    pub recovery_codes: Vec<String>,
}

/// Refuses what only the account's own person may do, signed in (not by
/// an API token: a machine does not enrol a person's phone).
fn own_person(v: &Viewer, name: &str) -> Result<(), ApiError> {
    if v.identity.user != name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "a second factor is enrolled by the account's own person, signed in",
        ));
    }
    if matches!(v.identity.via, AuthMethod::Token { .. }) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "a second factor is enrolled by its person, not with an API token",
        ));
    }
    Ok(())
}

/// Starts the enrolment of one's own second factor: a new secret, its
/// `otpauth://` URI and QR code. Not in force until confirmed.
#[utoipa::path(post, path = "/api/v1/users/{name}/totp", tag = "users", params(("name" = String, Path)),
    responses((status = 200, body = Enrolment),
        (status = 409, description = "the account has a second factor already (second_factor_exists)", body = ErrorBody)))]
pub async fn start(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
) -> Result<Json<Enrolment>, ApiError> {
    own_person(&v, &name)?;
    Ok(Json(rt.start_second_factor(&name).map_err(factor_error)?))
}

/// Confirms the enrolment with the app's first code: from now on the
/// account's logins need a code. Answers the recovery codes, once.
#[utoipa::path(post, path = "/api/v1/users/{name}/totp/confirm", tag = "users", params(("name" = String, Path)),
    request_body = CodeInput,
    responses((status = 200, body = RecoveryCodes),
        (status = 400, description = "the code is wrong (second_factor_wrong), or no enrolment waits (second_factor_not_pending)", body = ErrorBody)))]
pub async fn confirm(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<CodeInput>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    own_person(&v, &name)?;
    let codes = rt.confirm_second_factor(&name, &input.code, &v.actor).await.map_err(factor_error)?;
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
}

/// Resets an account's second factor: its password alone logs in again.
/// An administrator resets any account's without a code; one's own needs
/// a current code (or a recovery code) in the body, `{"code": "…"}`, and
/// a wrong one counts as a failed login.
#[utoipa::path(delete, path = "/api/v1/users/{name}/totp", tag = "users", params(("name" = String, Path)),
    request_body(content = CodeInput, description = "only to reset one's own second factor"),
    responses((status = 204),
        (status = 400, description = "one's own reset without a right code (required, second_factor_wrong, second_factor_code_used)", body = ErrorBody),
        (status = 404, description = "no such account, or it has no second factor", body = ErrorBody)))]
pub async fn reset(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
    info: Option<axum::Extension<crate::conn::ConnInfo>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let own = v.identity.user == name;
    if !own && v.identity.group != Group::Admins {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "only members of the group \"admins\" may reset another account's second factor",
        ));
    }
    if own {
        let code = own_code(&headers, &body)?;
        let mut ext = http::Extensions::new();
        if let Some(axum::Extension(i)) = info {
            ext.insert(i);
        }
        let path = format!("/api/v1/users/{name}/totp");
        if let Err(refusal) = rt.use_second_factor(&name, &code, &v.actor).await {
            if let Some(ip) = crate::http::client_ip(&ext) {
                rt.failed_login(ip, &name, &path);
            }
            let (code, message) = crate::http::second_factor_refusal(refusal);
            return Err(ApiError::new(StatusCode::BAD_REQUEST, code, message).field("code"));
        }
    }
    rt.reset_second_factor(&name, &v.actor).await.map_err(factor_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The code of a reset of one's own second factor, from its JSON body.
fn own_code(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let required = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Required,
            "give a current code of your second factor (or a recovery code) to reset it",
        )
        .field("code")
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(required());
    }
    let json = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ));
    }
    let input: CodeInput = portcullis_core::config::parse_input(body)?;
    Ok(input.code)
}

fn factor_error(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Invalid(e) => match e.code {
            ErrorCode::NotFound => ApiError::not_found(e.message),
            ErrorCode::SecondFactorExists => ApiError::conflict(e.code, e.message).field(e.field),
            _ => ApiError::invalid(e),
        },
        other => other.into(),
    }
}
