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

/// Parses JSON text that may hold Python's bare `NaN`, `Infinity` and `-Infinity`
/// (rewritten by [`sonic_core::config::sanitize_python_json`]).
///
/// `origin` names the text in errors (a path, or a description such as `"config"`).
pub fn parse_python_json(text: &str, origin: &str) -> Result<serde_json::Value> {
    let out = sonic_core::config::sanitize_python_json(text);
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

/// A JSON number or one of Python's non-finite spellings, as `f64`.
pub fn lenient_f64(value: &serde_json::Value) -> Option<f64> {
    match value.as_str() {
        Some("inf") => Some(f64::INFINITY),
        Some("-inf") => Some(f64::NEG_INFINITY),
        Some("nan") => Some(f64::NAN),
        _ => sonic_core::config::lenient_f64(value),
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
