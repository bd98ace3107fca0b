//! Reading the JSON that Python writes.
//!
//! Python's `json.dumps` writes the non-finite floats as bare `NaN`, `Infinity` and
//! `-Infinity`, which strict JSON (and `serde_json`) rejects. diffusers saves
//! `DPMSolverMultistepScheduler` configs with `"lambda_min_clipped": -Infinity`, and the
//! reference fixtures' `cases.json` embed such configs, so every JSON text this crate reads goes
//! through [`parse_python_json`], which turns those bare words (outside strings) into the
//! strings `"NaN"`, `"Infinity"` and `"-Infinity"`. The config reader accepts those strings
//! wherever it expects a float.

use crate::error::{Result, SchedulerError};
use std::path::Path;

/// The bare non-finite literals Python writes, longest first.
const LITERALS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];

/// Parses JSON text that may hold Python's bare `NaN`, `Infinity` and `-Infinity`.
///
/// `origin` names the text in errors (a path, or a description such as `"config"`).
pub fn parse_python_json(text: &str, origin: &str) -> Result<serde_json::Value> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_string = true;
            out.push(c);
            rest = &rest[1..];
            continue;
        }
        if let Some(lit) = LITERALS.iter().find(|lit| rest.starts_with(**lit)) {
            out.push('"');
            out.push_str(lit);
            out.push('"');
            rest = &rest[lit.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out).map_err(|e| SchedulerError::Json {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// Reads and parses a JSON file (such as a model's `scheduler/scheduler_config.json`) with
/// [`parse_python_json`].
pub fn read_python_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = sonic_core::config::read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| SchedulerError::Json {
        origin: path.display().to_string(),
        message: format!("not UTF-8: {e}"),
    })?;
    parse_python_json(&text, &path.display().to_string())
}

/// Reads a float that may be written as one of the strings [`parse_python_json`] produces.
pub(crate) fn lenient_f64(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.as_str() {
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            "NaN" | "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_literals_become_strings_outside_strings_only() {
        let v = parse_python_json(
            r#"{"a": -Infinity, "b": [Infinity, NaN, 1.5], "c": "NaN -Infinity \" Infinity"}"#,
            "test",
        )
        .unwrap();
        assert_eq!(lenient_f64(&v["a"]), Some(f64::NEG_INFINITY));
        assert_eq!(lenient_f64(&v["b"][0]), Some(f64::INFINITY));
        assert!(lenient_f64(&v["b"][1]).unwrap().is_nan());
        assert_eq!(lenient_f64(&v["b"][2]), Some(1.5));
        assert_eq!(v["c"], "NaN -Infinity \" Infinity");
    }

    #[test]
    fn bad_json_names_its_origin() {
        let e = parse_python_json("{\"a\": }", "my.json").unwrap_err();
        assert!(matches!(e, SchedulerError::Json { .. }));
        assert!(e.to_string().contains("my.json"), "{e}");
    }
}
