//! `/api/v1/users/{name}`: the accounts, written at once (not through
//! Set/Store).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Group;
use crate::error::{ApiError, ErrorBody};
use crate::http::{Admin, ApiJson, PasswordRefusal, Viewer};
use crate::runtime::{ApplyError, Runtime};

/// An account as shown by the API (never its hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Login name.
    pub name: String,
    /// Group.
    pub group: Group,
    /// Whether it has a second factor (two-step verification); never its secret.
    pub second_factor: bool,
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

portcullis_core::input!(UserInput);

/// Every account.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = Vec<UserView>)))]
pub async fn list_users(State(rt): State<Arc<Runtime>>, _a: Admin) -> Json<Vec<UserView>> {
    Json(
        rt.auth()
            .users()
            .users
            .values()
            .map(|u| UserView {
                name: u.name.clone(),
                group: u.group,
                second_factor: u.second_factor.is_some(),
            })
            .collect(),
    )
}

/// One account (admins see all; a user sees itself).
#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn get_user(
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
    let users = rt.auth().users();
    let u =
        users.users.get(&name).ok_or_else(|| ApiError::not_found(format!("there is no user \"{name}\"")))?;
    Ok(Json(UserView { name: u.name.clone(), group: u.group, second_factor: u.second_factor.is_some() }))
}

/// Creates or changes an account; written at once. A member of `users` may
/// change only its own password. Changing one's own password needs the
/// current one (`current_password`); a wrong one counts as a failed login.
#[utoipa::path(put, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    request_body = UserInput, responses((status = 200, body = UserView),
        (status = 400, description = "invalid input; current_password missing (required) or wrong (current_password_wrong)", body = ErrorBody)))]
pub async fn put_user(
    State(rt): State<Arc<Runtime>>,
    v: Viewer,
    Path(name): Path<String>,
    info: Option<axum::Extension<crate::conn::ConnInfo>>,
    ApiJson(input): ApiJson<UserInput>,
) -> Result<Response, ApiError> {
    let is_admin = v.identity.group == Group::Admins;
    if !is_admin && (v.identity.user != name || input.group.is_some()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "you may only change your own password",
        ));
    }
    if input.password.is_some() && v.identity.user == name {
        let Some(current) = &input.current_password else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Required,
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
                    ErrorCode::CurrentPasswordWrong,
                    "the current password is wrong",
                )
                .field("current_password"));
            }
            Err(PasswordRefusal::Refused(resp)) => return Ok(resp),
        }
    }
    let group = rt.save_user(&name, input.group, input.password, &v.actor).await.map_err(user_error)?;
    let second_factor = rt.auth().has_second_factor(&name);
    Ok(Json(UserView { name, group, second_factor }).into_response())
}

/// Deletes an account (never the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_user(
    State(rt): State<Arc<Runtime>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    rt.delete_user(&name, &admin.actor).await.map_err(user_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_error(e: ApplyError) -> ApiError {
    match e {
        ApplyError::Invalid(e) => match e.code {
            ErrorCode::NotFound => ApiError::not_found(e.message),
            ErrorCode::LastAdmin => ApiError::conflict(ErrorCode::LastAdmin, e.message).field(e.field),
            _ => ApiError::invalid(e),
        },
        other => other.into(),
    }
}
