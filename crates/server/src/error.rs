//! The one API error type: logs its cause once, answers
//! `{"error": {"code", "message", "field"}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use portcullis_core::{ErrorCode, ValidationError};
use serde::Serialize;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Message for a person.
    pub message: String,
    /// The field concerned, if any.
    pub field: Option<String>,
    /// Internal cause, logged and never sent to the client.
    pub cause: Option<String>,
}

/// The JSON body of an error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Code, message and field of an error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (the `ErrorCode` schema lists them all).
    pub code: ErrorCode,
    /// Message for a person, in the language `Accept-Language` prefers
    /// (English without one).
    pub message: String,
    /// The field concerned, or null.
    pub field: Option<String>,
    /// The English technical detail, present when `message` is in another
    /// language: it names the exact value or limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What an error answer says, kept on the response so that the front layer
/// can word its message in the client's language (the `i18n` module).
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// The English message.
    pub message: String,
    /// The field concerned.
    pub field: Option<String>,
}

impl ErrorInfo {
    /// The answer with `status` and the English JSON error body, carrying itself for translation.
    pub fn into_response(self, status: StatusCode) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                field: self.field.clone(),
                detail: None,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(self);
        resp
    }
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, cause: None }
    }

    /// Names the field concerned.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        let f = field.into();
        self.field = if f.is_empty() { None } else { Some(f) };
        self
    }

    /// A 500 whose cause is logged, not shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: ErrorCode::InternalError,
            message: "the server could not complete the request; see its log".into(),
            field: None,
            cause: Some(cause.to_string()),
        }
    }

    /// 507 `storage_full`: the data folder's file system is full, and the
    /// change was not made (every write is atomic). The cause is logged.
    pub fn storage_full(cause: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::INSUFFICIENT_STORAGE,
            code: ErrorCode::StorageFull,
            message: "the device's storage is full; nothing was changed".into(),
            field: None,
            cause: Some(cause.to_string()),
        }
    }

    /// 400 for refused input. A deserializer's refusal is worded for people
    /// (`70000 is out of range: …`); its own text goes to the log.
    pub fn invalid(e: ValidationError) -> Self {
        let message = match portcullis_core::config::for_people(&e.message) {
            Some(words) => {
                tracing::debug!(field = %e.field, detail = %e.message, "input refused by the deserializer");
                words
            }
            None => e.message,
        };
        Self::new(StatusCode::BAD_REQUEST, e.code, message).field(e.field)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_storage_full() { Self::storage_full(e) } else { Self::internal(e) }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::invalid(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self.cause {
            Some(cause) => tracing::error!(code = %self.code, %cause, "request failed"),
            // The technical detail stays in the log whatever language the answer is in.
            None => tracing::debug!(
                status = self.status.as_u16(),
                code = %self.code,
                field = self.field.as_deref().unwrap_or(""),
                detail = %self.message,
                "request refused"
            ),
        }
        ErrorInfo { code: self.code, message: self.message, field: self.field }.into_response(self.status)
    }
}

/// The code used for a bare HTTP status when no handler gave one.
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        406 => ErrorCode::NotAcceptable,
        408 => ErrorCode::RequestTimeout,
        412 => ErrorCode::PreconditionFailed,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        416 => ErrorCode::RangeNotSatisfiable,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::TooManyRequests,
        431 => ErrorCode::HeadersTooLarge,
        503 => ErrorCode::Unavailable,
        507 => ErrorCode::StorageFull,
        s if s >= 500 => ErrorCode::InternalError,
        _ => ErrorCode::Error,
    }
}
