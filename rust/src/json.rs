//! Writing JSON text byte for byte as `serde_json::to_string` does, so that
//! dce services in Rust and Go read our values and we read theirs: compact,
//! UTF-8 as is, only `"`, `\` and control characters escaped, floats in
//! shortest round-trip form.

use crate::Error;

/// Deepest nesting written; serde_json refuses to read deeper documents.
pub const MAX_DEPTH: usize = 128;

/// Append `s` as a JSON string literal.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Append a finite float; NaN and infinities are not JSON.
pub fn write_f64(out: &mut String, value: f64) -> Result<(), Error> {
    if !value.is_finite() {
        return Err(Error::Serialization(format!(
            "{value} is not a JSON number"
        )));
    }
    out.push_str(ryu::Buffer::new().format_finite(value));
    Ok(())
}

/// Append an integer.
pub fn write_int<I: itoa::Integer>(out: &mut String, value: I) {
    out.push_str(itoa::Buffer::new().format(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, s);
        out
    }

    #[test]
    fn strings_escape_like_serde_json() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(string("\u{1}\u{1f}\u{7f}"), "\"\\u0001\\u001f\u{7f}\"");
        assert_eq!(string("héllo ☃ 😀"), "\"héllo ☃ 😀\"");
    }

    #[test]
    fn floats_are_shortest_round_trip() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (1e16, "1e16"),
            (1e-7, "1e-7"),
        ];
        for (value, text) in cases {
            let mut out = String::new();
            write_f64(&mut out, value).unwrap();
            assert_eq!(out, text);
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(write_f64(&mut String::new(), bad).is_err());
        }
    }

    #[test]
    fn integers() {
        let mut out = String::new();
        write_int(&mut out, i64::MIN);
        out.push(',');
        write_int(&mut out, u64::MAX);
        assert_eq!(out, "-9223372036854775808,18446744073709551615");
    }
}
