//! Python values to JSON text (via `crate::json`), and user ids.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::json::{self, MAX_DEPTH};
use crate::Error;

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
}

fn unencodable(value: &Bound<'_, PyAny>) -> Error {
    Error::Serialization(format!(
        "a value of type {} cannot be stored: use None, bool, int, float, str, list, tuple or dict with str keys",
        type_name(value)
    ))
}

fn write_text(out: &mut String, text: &Bound<'_, PyString>) -> Result<(), Error> {
    let text = text.to_str().map_err(|_| {
        Error::Serialization(
            "a str that is not valid UTF-8 (lone surrogate) cannot be stored".into(),
        )
    })?;
    json::write_str(out, text);
    Ok(())
}

fn write_value(out: &mut String, value: &Bound<'_, PyAny>, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Serialization(format!(
            "values nest at most {MAX_DEPTH} deep (or the value contains itself)"
        )));
    }
    if value.is_none() {
        out.push_str("null");
    } else if let Ok(text) = value.cast::<PyString>() {
        write_text(out, text)?;
    } else if let Ok(flag) = value.cast::<PyBool>() {
        out.push_str(if flag.is_true() { "true" } else { "false" });
    } else if value.is_instance_of::<PyInt>() {
        if let Ok(small) = value.extract::<i64>() {
            json::write_int(out, small);
        } else if let Ok(large) = value.extract::<u64>() {
            json::write_int(out, large);
        } else {
            return Err(Error::Serialization(
                "integers are stored in [-2**63, 2**64)".into(),
            ));
        }
    } else if let Ok(float) = value.cast::<PyFloat>() {
        json::write_f64(out, float.value())?;
    } else if let Ok(dict) = value.cast::<PyDict>() {
        out.push('{');
        for (index, (key, item)) in dict.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            let key = key.cast::<PyString>().map_err(|_| {
                Error::Serialization(format!("dict keys must be str, not {}", type_name(&key)))
            })?;
            write_text(out, key)?;
            out.push(':');
            write_value(out, &item, depth + 1)?;
        }
        out.push('}');
    } else if let Ok(list) = value.cast::<PyList>() {
        write_items(out, list.iter(), depth)?;
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        write_items(out, tuple.iter(), depth)?;
    } else {
        return Err(unencodable(value));
    }
    Ok(())
}

fn write_items<'py>(
    out: &mut String,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
) -> Result<(), Error> {
    out.push('[');
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_value(out, &item, depth + 1)?;
    }
    out.push(']');
    Ok(())
}

/// The compact JSON text of `value`, as serde_json writes it;
/// `SerializationError` for anything outside the stored types.
#[pyfunction]
pub fn encode_value(value: &Bound<'_, PyAny>) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, 0)?;
    Ok(out)
}

/// `[field, json, field, json, ...]` for a mapping of field -> value;
/// `TypeError` for a field name that is not a str, `SerializationError` for
/// a value that cannot be stored. Nothing is returned partially.
#[pyfunction]
pub fn encode_fields<'py>(
    py: Python<'py>,
    mapping: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let items = match mapping.cast::<PyDict>() {
        Ok(dict) => dict.items(),
        Err(_) => mapping
            .call_method0("items")?
            .try_iter()?
            .collect::<PyResult<Vec<_>>>()
            .map(|v| PyList::new(py, v))??,
    };
    let flat = PyList::empty(py);
    for item in items.iter() {
        let (field, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item.extract()?;
        if !field.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!(
                "field names are str, not {}",
                type_name(&field)
            )));
        }
        flat.append(field)?;
        flat.append(encode_value(&value)?)?;
    }
    Ok(flat)
}

/// A user id: an int (not a bool) in [0, 2**64).
pub fn uid(value: &Bound<'_, PyAny>) -> Result<u64, Error> {
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        if let Ok(uid) = value.extract::<u64>() {
            return Ok(uid);
        }
    }
    Err(Error::InvalidUser(format!(
        "a user id is an int in [0, 2**64), not {}",
        type_name(value)
    )))
}
