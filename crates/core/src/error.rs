//! The one validation error every layer reports to the operator.

use serde::Serialize;

use crate::error_code::ErrorCode;

/// A refused piece of operator input: which field, a stable code, and a
/// message meant for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Dotted path of the offending field, e.g. `intrusion_detection.notification_threshold`.
    pub field: String,
    /// Stable machine-readable code, e.g. `out_of_range`.
    pub code: ErrorCode,
    /// Human-readable explanation, one sentence.
    pub message: String,
}

impl ValidationError {
    /// Builds an error for `field` with `code` and `message`.
    pub fn new(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { field: field.into(), code, message: message.into() }
    }
}

/// An error's message followed by each cause in its source chain that the
/// text does not already contain: the top-level message of a client library
/// ("client error (Connect)") rarely says what an operator can act on; the
/// cause does.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        cause: Option<Box<Layer>>,
    }

    #[test]
    fn causes_are_added_once() {
        let root = Layer { text: "connection refused", cause: None };
        let mid = Layer { text: "connect: connection refused", cause: Some(Box::new(root)) };
        let top = Layer { text: "client error", cause: Some(Box::new(mid)) };
        // The middle cause already names the root: it is not repeated.
        assert_eq!(error_chain(&top), "client error: connect: connection refused");
        assert_eq!(error_chain(&Layer { text: "alone", cause: None }), "alone");
    }
}
