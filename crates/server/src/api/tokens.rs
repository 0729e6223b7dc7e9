//! `/api/v1/tokens`: API tokens, credentials made for machines (sent as
//! `Authorization: Bearer`), written at once with the accounts (not through
//! Set/Store). Administrators only; the secret is in the creation's answer
//! and nowhere else, ever.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use portcullis_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson};
use crate::runtime::{ApplyError, Runtime};
use crate::tokens::{NewToken, TokenView};

/// A token just made: its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The secret (`pcl_…`): send it as `Authorization: Bearer <token>`.
    /// It cannot be shown again; a lost one is revoked and replaced.
    pub token: String,
    /// The token as it is listed (`last_used` null: never used yet).
    #[serde(flatten)]
    pub view: TokenView,
}

/// Makes a token for an account (default: the caller's), its scope never
/// wider than the account's rights.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken),
        (status = 400, description = "invalid input; scope_exceeds_account when the scope is wider than the account's rights", body = ErrorBody),
        (status = 409, description = "a token of that name exists (duplicate)", body = ErrorBody)))]
pub async fn create_token(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    ApiJson(input): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (token, v) =
        rt.create_token(input, Some(&admin.identity.user), &admin.actor).await.map_err(token_error)?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, view: v })))
}

/// Every token (never a secret).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenView>)))]
pub async fn list_tokens(State(rt): State<Arc<Runtime>>, _a: Admin) -> Json<Vec<TokenView>> {
    Json(rt.auth().tokens())
}

/// Revokes a token: refused from the next request on, open connections included.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    rt.revoke_token(&name, &admin.actor).await.map_err(token_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn token_error(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Invalid(e) => match e.code {
            ErrorCode::NotFound if e.field == "name" => ApiError::not_found(e.message),
            ErrorCode::Duplicate if e.field == "name" => {
                ApiError::conflict(ErrorCode::Duplicate, e.message).field(e.field)
            }
            _ => ApiError::invalid(e),
        },
        other => other.into(),
    }
}
