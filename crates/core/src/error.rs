//! The one validation error every layer reports to the operator.

use serde::Serialize;

/// A refused piece of operator input: which field, a stable code, and a
/// message meant for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field, e.g. `intrusion_detection.notification_threshold`.
    pub field: String,
    /// Stable machine-readable code, e.g. `out_of_range`.
    pub code: String,
    /// Human-readable explanation, one sentence.
    pub message: String,
}

impl ValidationError {
    /// Builds an error for `field` with `code` and `message`.
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: code.into(), message: message.into() }
    }
}
