//! Pure rules of portcullis: what a valid setting is, when an alert fires,
//! which logfile entry an access merges into, whether a client may connect.
//!
//! Nothing here touches a socket, a file or the wall clock: time comes in as
//! an argument (see [`clock`]), so every rule is tested in microseconds.

pub mod access_control;
pub mod account_lockout;
pub mod acme;
pub mod alert;
pub mod audio;
pub mod certificate;
pub mod clock;
pub mod config;
pub mod crowdsec;
pub mod error;
pub mod error_code;
pub mod events;
pub mod expiry;
pub mod hosts;
pub mod hsts;
pub mod intrusion;
pub mod logfile;
pub mod profiles;
pub mod second_factor;
pub mod session;
pub mod setting_key;
pub mod settings;
pub mod syslog;
pub mod throttle;
pub mod tokens;
pub mod trust;

pub use clock::{Clock, ManualClock, Monotonic, SystemClock, Timestamp};
pub use error::ValidationError;
pub use error_code::ErrorCode;
