//! The one error type of the core; `py` maps each variant to the exception
//! class of the same name in `dce_session.errors`.

use std::fmt;

/// Everything the core can refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A string that is not a sid in the dce wire format.
    InvalidSid(String),
    /// A setting or argument out of its range (ttl, creation second, ...).
    Config(String),
    /// A value that cannot be written as the JSON the dce family reads.
    Serialization(String),
    /// A user id that is not an integer in `[0, 2**64)`.
    InvalidUser(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSid(m)
            | Error::Config(m)
            | Error::Serialization(m)
            | Error::InvalidUser(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
