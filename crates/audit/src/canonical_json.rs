//! Canonical JSON for audit details: sorted keys, no whitespace, integers only.

use std::fmt::Write;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalJsonError {
    #[error("audit details may not hold floating-point numbers (at {0})")]
    Float(String),
    #[error("audit details nest deeper than {0} levels")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 16;

/// Writes `v` with object keys in byte order and no insignificant whitespace.
///
/// It does not rely on `serde_json`'s map order, which changes when any crate
/// in the build enables `preserve_order`. Floats are refused: amounts are
/// decimal strings, and a float's text form is not canonical.
pub fn canonical_json(v: &Value) -> Result<String, CanonicalJsonError> {
    let mut out = String::new();
    write_value(v, &mut out, 0, "$")?;
    Ok(out)
}

fn write_value(
    v: &Value,
    out: &mut String,
    depth: usize,
    path: &str,
) -> Result<(), CanonicalJsonError> {
    if depth > MAX_DEPTH {
        return Err(CanonicalJsonError::TooDeep(MAX_DEPTH));
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                return Err(CanonicalJsonError::Float(path.to_owned()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, depth + 1, &format!("{path}[{i}]"))?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(&map[k], out, depth + 1, &format!("{path}.{k}"))?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorted_compact_integers() {
        let v = json!({"b": [1, -2, {"z": null, "a": true}], "a": "x\"y\n\u{1}é", "c": 18446744073709551615u64});
        expect_test::expect![[
            r#"{"a":"x\"y\n\u0001é","b":[1,-2,{"a":true,"z":null}],"c":18446744073709551615}"#
        ]]
        .assert_eq(&canonical_json(&v).unwrap());
    }

    #[test]
    fn refuses_floats_and_depth() {
        assert_eq!(
            canonical_json(&json!({"amount": 1.5})),
            Err(CanonicalJsonError::Float("$.amount".into()))
        );
        let mut v = json!(1);
        for _ in 0..20 {
            v = json!([v]);
        }
        assert!(matches!(
            canonical_json(&v),
            Err(CanonicalJsonError::TooDeep(_))
        ));
    }
}
