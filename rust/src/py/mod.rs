//! The `dce_session._core` extension module: converts types and errors,
//! nothing else. Exceptions are the classes of `dce_session.errors`.

mod value;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

use crate::renew::{self, Decision, Policy};
use crate::{keys, sid, Error};

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        let class = match &error {
            Error::InvalidSid(_) => "InvalidSid",
            Error::Config(_) => "ConfigError",
            Error::Serialization(_) => "SerializationError",
            Error::InvalidUser(_) => "InvalidUser",
        };
        Python::attach(|py| {
            match py
                .import("dce_session.errors")
                .and_then(|errors| errors.getattr(class))
            {
                Ok(class) => PyErr::from_type(
                    class.cast_into().expect("an exception class"),
                    error.to_string(),
                ),
                Err(import_failed) => import_failed,
            }
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A fresh sid for `ttl_minutes` (1..65535), created at `created_at` (unix
/// seconds, default now).
#[pyfunction]
#[pyo3(signature = (ttl_minutes, created_at=None))]
fn generate_sid(
    ttl_minutes: &Bound<'_, PyAny>,
    created_at: Option<&Bound<'_, PyAny>>,
) -> Result<String, Error> {
    // Any int (not a bool) is checked for range here, so that a huge or
    // non-int ttl is a ConfigError like any other bad ttl, not an OverflowError.
    let ttl = match plain_i64(ttl_minutes) {
        Some(minutes) => sid::check_ttl(minutes)?,
        None => {
            return Err(Error::Config(format!(
                "ttl_minutes must be an integer in 1..65535, got {}",
                describe(ttl_minutes)
            )))
        }
    };
    let created = match created_at {
        None => now(),
        Some(second) => plain_u64(second).ok_or_else(|| {
            Error::Config(format!(
                "created_at must be an integer in [0, 2**64), got {}",
                describe(second)
            ))
        })?,
    };
    Ok(sid::generate(ttl, created))
}

/// `value` when it is a Python int (not a bool) in [0, 2**64).
fn plain_u64(value: &Bound<'_, PyAny>) -> Option<u64> {
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        value.extract::<u64>().ok()
    } else {
        None
    }
}

/// `value` when it is a Python int (not a bool) in the i64 range.
fn plain_i64(value: &Bound<'_, PyAny>) -> Option<i64> {
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        value.extract::<i64>().ok()
    } else {
        None
    }
}

/// A short description of a bad setting for messages.
fn describe(value: &Bound<'_, PyAny>) -> String {
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        value
            .str()
            .map_or_else(|_| "?".into(), |text| text.to_string())
    } else {
        value
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |name| format!("a {name}"))
    }
}

/// `(ttl_minutes, created_at)` carried by a sid; `InvalidSid` if malformed.
#[pyfunction]
fn parse_sid(sid: &Bound<'_, PyAny>) -> Result<(u16, u64), Error> {
    match sid.cast::<PyString>() {
        Ok(text) => sid::parse(text.to_str().unwrap_or("")),
        Err(_) => Err(Error::InvalidSid(format!(
            "a session id is a str, not {}",
            sid.get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))),
    }
}

/// True when `sid` is a str in the dce wire format.
#[pyfunction]
fn is_valid_sid(sid: &Bound<'_, PyAny>) -> bool {
    sid.cast::<PyString>()
        .ok()
        .and_then(|text| text.to_str().ok().map(sid::is_valid))
        .unwrap_or(false)
}

/// The Redis Cluster hash slot of `key` (CRC16 with hash tags).
#[pyfunction]
fn key_slot(key: &str) -> u16 {
    keys::key_slot(key.as_bytes())
}

/// A fresh sid whose key `<prefix>:<sid>` lies in hash slot `slot`.
#[pyfunction]
fn generate_sid_in_slot(
    ttl_minutes: u16,
    created_at: u64,
    prefix: &str,
    slot: u16,
) -> Result<String, Error> {
    let ttl = sid::check_ttl(i64::from(ttl_minutes))?;
    Ok(sid::generate_in_slot(ttl, created_at, prefix, slot))
}

/// `<prefix>:<sid>`.
#[pyfunction]
fn session_key(prefix: &str, sid: &str) -> String {
    keys::session_key(prefix, sid)
}

/// `<prefix>:<uid>`; `InvalidUser` unless `uid` is an int in [0, 2**64).
#[pyfunction]
fn user_key(prefix: &str, uid: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(keys::user_key(prefix, value::uid(uid)?))
}

/// The lifecycle state a script reported for a presented sid (SEMANTICS
/// Part 3), as `renew_decision` takes it.
#[pyclass(frozen, eq, hash, module = "dce_session._core")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stored {
    #[pyo3(name = "LIVE")]
    Live,
    #[pyo3(name = "FORWARDING")]
    Forwarding,
    #[pyo3(name = "SUPERSEDED")]
    Superseded,
    #[pyo3(name = "ENDED")]
    Ended,
    #[pyo3(name = "GONE")]
    Gone,
}

/// The step `try_renew` takes (see `renew::Decision`). Compares equal to its
/// lower-case name too (`RenewDecision.KEEP == "keep"`).
#[pyclass(frozen, module = "dce_session._core")]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenewDecision {
    #[pyo3(name = "KEEP")]
    Keep,
    #[pyo3(name = "ROTATE")]
    Rotate,
    #[pyo3(name = "FOLLOW")]
    Follow,
    #[pyo3(name = "DESTROY")]
    Destroy,
    #[pyo3(name = "REISSUE")]
    Reissue,
    #[pyo3(name = "REFUSE")]
    Refuse,
    #[pyo3(name = "NEWBORN")]
    Newborn,
}

impl From<Decision> for RenewDecision {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Keep => Self::Keep,
            Decision::Rotate => Self::Rotate,
            Decision::Follow => Self::Follow,
            Decision::Destroy => Self::Destroy,
            Decision::Reissue => Self::Reissue,
            Decision::Refuse => Self::Refuse,
            Decision::Newborn => Self::Newborn,
        }
    }
}

#[pymethods]
impl RenewDecision {
    /// The decision's lower-case name: "keep", "rotate", ...
    #[getter]
    fn label(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Rotate => "rotate",
            Self::Follow => "follow",
            Self::Destroy => "destroy",
            Self::Reissue => "reissue",
            Self::Refuse => "refuse",
            Self::Newborn => "newborn",
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(decision) = other.cast::<RenewDecision>() {
            *decision.get() == *self
        } else if let Ok(text) = other.cast::<PyString>() {
            text.to_str().is_ok_and(|text| text == self.label())
        } else {
            false
        }
    }

    fn __hash__(&self) -> u64 {
        *self as u64
    }

    fn __repr__(&self) -> String {
        format!("RenewDecision.{}", self.label().to_uppercase())
    }
}

/// The rotation step for a presented session created at `created_at`, at
/// `now`, given the state a script reported (`None`: nothing read yet).
/// For `Stored.SUPERSEDED`, `idle` is the old sid's idle seconds and
/// `successor_idle` the successor's.
#[pyfunction]
#[pyo3(signature = (interval, grace, inactive, now, created_at, idle=0, stored=None, successor_idle=0))]
#[allow(clippy::too_many_arguments)] // a flat signature keeps the Python call cheap
fn renew_decision(
    interval: u64,
    grace: u64,
    inactive: u64,
    now: u64,
    created_at: u64,
    idle: u64,
    stored: Option<Stored>,
    successor_idle: u64,
) -> RenewDecision {
    let stored = stored.map(|stored| match stored {
        Stored::Live => renew::Stored::Live,
        Stored::Forwarding => renew::Stored::Forwarding,
        Stored::Superseded => renew::Stored::Superseded {
            idle,
            successor_idle,
        },
        Stored::Ended => renew::Stored::Ended,
        Stored::Gone => renew::Stored::Gone,
    });
    let policy = Policy {
        interval,
        grace,
        inactive,
    };
    renew::decide(policy, now, created_at, stored).into()
}

/// The `dce_session._core` module.
#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(generate_sid, module)?)?;
    module.add_function(wrap_pyfunction!(parse_sid, module)?)?;
    module.add_function(wrap_pyfunction!(is_valid_sid, module)?)?;
    module.add_function(wrap_pyfunction!(session_key, module)?)?;
    module.add_function(wrap_pyfunction!(key_slot, module)?)?;
    module.add_function(wrap_pyfunction!(generate_sid_in_slot, module)?)?;
    module.add_function(wrap_pyfunction!(user_key, module)?)?;
    module.add_function(wrap_pyfunction!(renew_decision, module)?)?;
    module.add_class::<Stored>()?;
    module.add_class::<RenewDecision>()?;
    module.add_function(wrap_pyfunction!(value::encode_value, module)?)?;
    module.add_function(wrap_pyfunction!(value::encode_fields, module)?)?;
    module.add("SID_MIN_LEN", sid::MIN_LEN)?;
    module.add("SID_MAX_LEN", sid::MAX_LEN)?;
    Ok(())
}
