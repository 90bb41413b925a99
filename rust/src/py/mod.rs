//! The `dce_session._core` extension module: converts types and errors,
//! nothing else. Exceptions are the classes of `dce_session.errors`.

mod value;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};

use crate::renew::{self, Decision, Policy, Successor, SuccessorState};
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

/// The rotation step for a presented session (see `renew::decide`): one of
/// "keep", "rotate", "read_successor", "follow", "destroy", "reissue".
/// `successor_state` is None (not read yet), "missing", "superseded" or
/// "live" (then `successor_idle` is its idle seconds).
#[pyfunction]
#[pyo3(signature = (interval, grace, inactive, now, created_at, idle, successor_created=None, successor_state=None, successor_idle=0))]
#[allow(clippy::too_many_arguments)] // a flat signature keeps the Python call cheap
fn renew_decision(
    interval: u64,
    grace: u64,
    inactive: u64,
    now: u64,
    created_at: u64,
    idle: u64,
    successor_created: Option<u64>,
    successor_state: Option<&str>,
    successor_idle: u64,
) -> Result<&'static str, Error> {
    let state = match successor_state {
        None => None,
        Some("missing") => Some(SuccessorState::Missing),
        Some("superseded") => Some(SuccessorState::Superseded),
        Some("live") => Some(SuccessorState::Live {
            idle: successor_idle,
        }),
        Some(other) => return Err(Error::Config(format!("unknown successor state {other:?}"))),
    };
    let successor = successor_created.map(|created| Successor { created, state });
    let policy = Policy {
        interval,
        grace,
        inactive,
    };
    Ok(
        match renew::decide(policy, now, created_at, idle, successor) {
            Decision::Keep => "keep",
            Decision::Rotate => "rotate",
            Decision::ReadSuccessor => "read_successor",
            Decision::Follow => "follow",
            Decision::Destroy => "destroy",
            Decision::Reissue => "reissue",
        },
    )
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
    module.add_function(wrap_pyfunction!(value::encode_value, module)?)?;
    module.add_function(wrap_pyfunction!(value::encode_fields, module)?)?;
    module.add("SID_MIN_LEN", sid::MIN_LEN)?;
    module.add("SID_MAX_LEN", sid::MAX_LEN)?;
    Ok(())
}
