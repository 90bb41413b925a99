//! Rust core of dce-session.
//!
//! The pure modules know nothing of Python: [`sid`] (generation, parsing,
//! validation), [`random`] (fork-safe buffered OS randomness), [`keys`]
//! (Redis key encoding), [`renew`] (the rotation decision), [`json`] (serde_json-compatible text writing) and
//! [`error`]. The `py` module, behind the `python` feature, only converts
//! types and errors for the `dce_session._core` extension module.

pub mod error;
pub mod json;
pub mod keys;
pub mod random;
pub mod renew;
pub mod sid;

#[cfg(feature = "python")]
mod py;

pub use error::Error;
