//! Stands in for the webroot in builds without the `webroot` feature: the
//! same names, but a [`Webroot`] cannot exist (an uninhabited type), so every
//! path that serves files is known unreachable and left out of the binary.
//! Asking for a webroot fails at start with the feature named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::response::Response;
use http::{HeaderMap, Method};

/// A folder served at `/`: never, in this build.
#[derive(Debug)]
pub enum Webroot {}

/// Why a webroot cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("webroot {path}: {reason}")]
pub struct WebrootError {
    /// The folder given.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// A webroot's answer to a request (none in this build; the variants keep
/// the callers' code the same in every build).
#[allow(dead_code)]
pub(crate) enum Answer {
    /// Complete.
    Ready(Response),
    /// The content must be read first.
    Read(Read),
}

/// Content to read for an answer (none in this build).
pub(crate) enum Read {}

impl Webroot {
    /// Refuses: this build does not include the `webroot` feature.
    pub fn new(dir: &Path) -> Result<Arc<Self>, WebrootError> {
        Err(WebrootError {
            path: dir.to_path_buf(),
            reason: "this build of portcullis does not include the \"webroot\" feature".into(),
        })
    }

    /// Answers a GET or HEAD for `path` (unreachable: no webroot exists).
    pub async fn serve(self: &Arc<Self>, _method: &Method, _path: &str, _headers: &HeaderMap) -> Response {
        match **self {}
    }

    pub(crate) fn answer(&self, _method: &Method, _path: &str, _headers: &HeaderMap) -> Answer {
        match *self {}
    }

    pub(crate) async fn read(self: &Arc<Self>, read: Read) -> Response {
        match read {}
    }
}
