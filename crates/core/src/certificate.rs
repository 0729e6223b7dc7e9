//! What the core knows of the device's certificates: the kinds of key it
//! generates (for the "generate" form and for ACME).

use serde::{Deserialize, Serialize};

/// Algorithm and size of a key to generate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum KeyType {
    /// RSA with a 2048-bit modulus: the default, as the seed, works everywhere.
    #[default]
    #[serde(rename = "rsa2048")]
    Rsa2048,
    /// ECDSA on NIST P-256: smaller and much faster to generate.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
}
