//! The search space: named parameters, each a float (uniform or log-uniform), an integer
//! (optionally on a step grid or log-uniform) or a categorical choice, parsed from JSON.
//!
//! ```json
//! {
//!   "lr":          {"type": "float", "low": 1e-5, "high": 1e-3, "log": true},
//!   "temperature": {"type": "float", "low": 0.03, "high": 0.3},
//!   "batch_size":  {"type": "int", "low": 2, "high": 8, "step": 2},
//!   "mode":        {"type": "categorical", "choices": ["faithful", "chained"]}
//! }
//! ```
//!
//! Parameter names are the (dotted) keys of the stage config they override, e.g.
//! `"loss.mse_weight"` sets `{"loss": {"mse_weight": ...}}`.
//!
//! Samplers work in an *internal* coordinate per parameter: the value itself for uniform floats
//! and integers, its natural logarithm for log-scale ones, and the choice index for categorical
//! parameters.

use crate::error::{Result, TuneError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The sampled values of one trial, by parameter name (floats and integers as JSON numbers,
/// categorical choices as the JSON value listed in the config).
pub type Params = BTreeMap<String, Value>;

/// One parameter's distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSpec {
    /// A real number in `[low, high]`, uniform, or log-uniform when `log` (then `low > 0`).
    Float {
        /// Lower bound (inclusive).
        low: f64,
        /// Upper bound (inclusive).
        high: f64,
        /// Sample the logarithm uniformly.
        log: bool,
    },
    /// An integer in `{low, low + step, ..., <= high}`; log-uniform when `log` (then
    /// `low >= 1` and `step == 1`).
    Int {
        /// Lower bound (inclusive).
        low: i64,
        /// Upper bound (inclusive; values stop at the last grid point not above it).
        high: i64,
        /// Grid step (>= 1).
        step: i64,
        /// Sample the logarithm uniformly.
        log: bool,
    },
    /// One of a list of JSON values (strings, numbers, booleans, ...).
    Categorical {
        /// The choices, in config order.
        choices: Vec<Value>,
    },
}

/// Numeric bounds of a parameter in its internal coordinate, for the Parzen estimators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NumericDomain {
    /// Lower bound of the internal coordinate (widened by half a step for integers).
    pub low: f64,
    /// Upper bound of the internal coordinate (widened by half a step for integers).
    pub high: f64,
    /// Integer parameters: the grid step and whether the internal coordinate is a logarithm,
    /// so that a value's probability mass is the density integrated over its grid cell.
    pub discrete: Option<(f64, bool)>,
}

impl ParamSpec {
    /// The parameter's value for internal coordinate `x` (clamped to the bounds; integers
    /// rounded to the grid; categorical: the choice with index `round(x)`).
    pub fn from_internal(&self, x: f64) -> Value {
        match self {
            ParamSpec::Float { low, high, log } => {
                let v = if *log { x.exp() } else { x };
                Value::from(v.clamp(*low, *high))
            }
            ParamSpec::Int {
                low,
                high,
                step,
                log,
            } => {
                let v = if *log { x.exp() } else { x };
                Value::from(self.snap_int(v, *low, *high, *step))
            }
            ParamSpec::Categorical { choices } => {
                let last = choices.len().saturating_sub(1);
                let i = if x.is_finite() && x > 0.0 {
                    (x.round() as usize).min(last)
                } else {
                    0
                };
                choices.get(i).cloned().unwrap_or(Value::Null)
            }
        }
    }

    fn snap_int(&self, v: f64, low: i64, high: i64, step: i64) -> i64 {
        let n_max = (high - low) / step;
        let k = ((v - low as f64) / step as f64).round();
        let k = if k.is_finite() {
            k.clamp(0.0, n_max as f64) as i64
        } else {
            0
        };
        low + k * step
    }

    /// The internal coordinate of `value`, or `None` when the value is not in the space (wrong
    /// type, out of bounds, off the grid, not a listed choice).
    pub fn to_internal(&self, value: &Value) -> Option<f64> {
        match self {
            ParamSpec::Float { low, high, log } => {
                let v = value.as_f64()?;
                if !(v >= *low && v <= *high) {
                    return None;
                }
                Some(if *log { v.ln() } else { v })
            }
            ParamSpec::Int {
                low,
                high,
                step,
                log,
            } => {
                let v = value.as_i64()?;
                if v < *low || v > *high || (v - low) % step != 0 {
                    return None;
                }
                Some(if *log { (v as f64).ln() } else { v as f64 })
            }
            ParamSpec::Categorical { choices } => {
                choices.iter().position(|c| c == value).map(|i| i as f64)
            }
        }
    }

    /// Bounds of the internal coordinate (None for categorical parameters).
    pub(crate) fn numeric_domain(&self) -> Option<NumericDomain> {
        match self {
            ParamSpec::Float { low, high, log } => Some(if *log {
                NumericDomain {
                    low: low.ln(),
                    high: high.ln(),
                    discrete: None,
                }
            } else {
                NumericDomain {
                    low: *low,
                    high: *high,
                    discrete: None,
                }
            }),
            ParamSpec::Int {
                low,
                high,
                step,
                log,
            } => {
                let top = low + ((high - low) / step) * step;
                let half = *step as f64 / 2.0;
                let (lo, hi) = (*low as f64 - half, top as f64 + half);
                Some(if *log {
                    NumericDomain {
                        low: lo.ln(),
                        high: hi.ln(),
                        discrete: Some((*step as f64, true)),
                    }
                } else {
                    NumericDomain {
                        low: lo,
                        high: hi,
                        discrete: Some((*step as f64, false)),
                    }
                })
            }
            ParamSpec::Categorical { .. } => None,
        }
    }

    /// The number of choices of a categorical parameter.
    pub(crate) fn n_choices(&self) -> Option<usize> {
        match self {
            ParamSpec::Categorical { choices } => Some(choices.len()),
            _ => None,
        }
    }

    /// The canonical JSON form (as accepted by [`SearchSpace::from_json`]).
    pub fn to_json(&self) -> Value {
        match self {
            ParamSpec::Float { low, high, log } => serde_json::json!({
                "type": "float", "low": low, "high": high, "log": log
            }),
            ParamSpec::Int {
                low,
                high,
                step,
                log,
            } => serde_json::json!({
                "type": "int", "low": low, "high": high, "step": step, "log": log
            }),
            ParamSpec::Categorical { choices } => serde_json::json!({
                "type": "categorical", "choices": choices
            }),
        }
    }
}

/// A named set of parameters (sorted by name, which fixes the sampling order).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSpace {
    params: BTreeMap<String, ParamSpec>,
}

/// A position in a config file, for errors that name the dotted key.
pub(crate) struct KeyCtx<'a> {
    pub origin: &'a Path,
    pub prefix: String,
}

impl KeyCtx<'_> {
    pub fn err(&self, key: &str, reason: impl Into<String>) -> TuneError {
        TuneError::Config {
            path: self.origin.to_path_buf(),
            key: if key.is_empty() {
                self.prefix.clone()
            } else if self.prefix.is_empty() {
                key.to_string()
            } else {
                format!("{}.{key}", self.prefix)
            },
            reason: reason.into(),
        }
    }
}

pub(crate) fn get_f64(obj: &Map<String, Value>, key: &str, ctx: &KeyCtx<'_>) -> Result<f64> {
    let v = obj.get(key).ok_or_else(|| ctx.err(key, "missing"))?;
    let f = v
        .as_f64()
        .ok_or_else(|| ctx.err(key, format!("expected a number, found {v}")))?;
    if !f.is_finite() {
        return Err(ctx.err(key, format!("must be finite, found {f}")));
    }
    Ok(f)
}

pub(crate) fn get_i64(obj: &Map<String, Value>, key: &str, ctx: &KeyCtx<'_>) -> Result<i64> {
    let v = obj.get(key).ok_or_else(|| ctx.err(key, "missing"))?;
    v.as_i64()
        .ok_or_else(|| ctx.err(key, format!("expected an integer, found {v}")))
}

pub(crate) fn get_bool(obj: &Map<String, Value>, key: &str, ctx: &KeyCtx<'_>) -> Result<bool> {
    match obj.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ctx.err(key, format!("expected true or false, found {v}"))),
    }
}

pub(crate) fn check_keys(
    obj: &Map<String, Value>,
    allowed: &[&str],
    ctx: &KeyCtx<'_>,
) -> Result<()> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ctx.err(
                k,
                format!("unknown key (allowed here: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

impl SearchSpace {
    /// Parses a search space from a JSON object of `name -> {"type": ...}` entries. `origin`
    /// names the file and `prefix` the key of the object inside it (e.g. `"space"`), so that
    /// errors read `space.lr.low: missing`.
    pub fn from_json(value: &Value, origin: &Path, prefix: &str) -> Result<Self> {
        let root = KeyCtx {
            origin,
            prefix: prefix.to_string(),
        };
        let obj = value.as_object().ok_or_else(|| {
            root.err(
                "",
                format!("expected an object of parameters, found {value}"),
            )
        })?;
        if obj.is_empty() {
            return Err(root.err("", "the search space has no parameters"));
        }
        let mut params = BTreeMap::new();
        for (name, entry) in obj {
            let ctx = KeyCtx {
                origin,
                prefix: format!("{prefix}.{name}"),
            };
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err(ctx.err("", "parameter names must be non-empty dotted keys"));
            }
            params.insert(name.clone(), Self::parse_param(entry, &ctx)?);
        }
        Ok(Self { params })
    }

    fn parse_param(entry: &Value, ctx: &KeyCtx<'_>) -> Result<ParamSpec> {
        let obj = entry.as_object().ok_or_else(|| {
            ctx.err(
                "",
                format!("expected an object with a \"type\", found {entry}"),
            )
        })?;
        let ty = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(v) => return Err(ctx.err("type", format!("expected a string, found {v}"))),
            None => return Err(ctx.err("type", "missing (float, int or categorical)")),
        };
        match ty {
            "float" => {
                check_keys(obj, &["type", "low", "high", "log"], ctx)?;
                let low = get_f64(obj, "low", ctx)?;
                let high = get_f64(obj, "high", ctx)?;
                let log = get_bool(obj, "log", ctx)?;
                if high <= low {
                    return Err(ctx.err("high", format!("must exceed low = {low}, found {high}")));
                }
                if log && low <= 0.0 {
                    return Err(
                        ctx.err("low", format!("must be > 0 when log is true, found {low}"))
                    );
                }
                Ok(ParamSpec::Float { low, high, log })
            }
            "int" => {
                check_keys(obj, &["type", "low", "high", "step", "log"], ctx)?;
                let low = get_i64(obj, "low", ctx)?;
                let high = get_i64(obj, "high", ctx)?;
                let step = if obj.contains_key("step") {
                    get_i64(obj, "step", ctx)?
                } else {
                    1
                };
                let log = get_bool(obj, "log", ctx)?;
                if step < 1 {
                    return Err(ctx.err("step", format!("must be >= 1, found {step}")));
                }
                if high <= low {
                    return Err(ctx.err("high", format!("must exceed low = {low}, found {high}")));
                }
                if high - low < step {
                    return Err(ctx.err(
                        "step",
                        format!("{step} leaves a single value in [{low}, {high}]"),
                    ));
                }
                if log && low < 1 {
                    return Err(
                        ctx.err("low", format!("must be >= 1 when log is true, found {low}"))
                    );
                }
                if log && step != 1 {
                    return Err(ctx.err("step", "must be 1 when log is true"));
                }
                Ok(ParamSpec::Int {
                    low,
                    high,
                    step,
                    log,
                })
            }
            "categorical" => {
                check_keys(obj, &["type", "choices"], ctx)?;
                let choices = match obj.get("choices") {
                    Some(Value::Array(a)) => a.clone(),
                    Some(v) => {
                        return Err(ctx.err("choices", format!("expected an array, found {v}")));
                    }
                    None => return Err(ctx.err("choices", "missing")),
                };
                if choices.len() < 2 {
                    return Err(ctx.err("choices", "needs at least two choices"));
                }
                for (i, c) in choices.iter().enumerate() {
                    if choices[..i].contains(c) {
                        return Err(ctx.err("choices", format!("{c} is listed twice")));
                    }
                }
                Ok(ParamSpec::Categorical { choices })
            }
            other => Err(ctx.err(
                "type",
                format!("unknown parameter type `{other}` (float, int or categorical)"),
            )),
        }
    }

    /// Builds a space from specs in code.
    pub fn new(params: impl IntoIterator<Item = (String, ParamSpec)>) -> Self {
        Self {
            params: params.into_iter().collect(),
        }
    }

    /// The parameters, sorted by name.
    pub fn params(&self) -> &BTreeMap<String, ParamSpec> {
        &self.params
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the space has no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The canonical JSON form (stored in the study header and compared on re-opening).
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.params
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    /// Checks that `params` assigns a value in the space to every parameter and nothing else;
    /// the error names the first offending parameter.
    pub fn validate(&self, params: &Params) -> std::result::Result<(), String> {
        for (name, spec) in &self.params {
            match params.get(name) {
                None => return Err(format!("`{name}` has no value")),
                Some(v) if spec.to_internal(v).is_none() => {
                    return Err(format!("`{name}` = {v} is outside {}", spec.to_json()));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = params.keys().find(|k| !self.params.contains_key(*k)) {
            return Err(format!("`{extra}` is not in the search space"));
        }
        Ok(())
    }
}

/// Where a config came from, for error messages about in-memory values.
pub fn inline_origin(what: &str) -> PathBuf {
    PathBuf::from(format!("<{what}>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<SearchSpace> {
        SearchSpace::from_json(&v, Path::new("tune.json"), "space")
    }

    fn key_of(e: TuneError) -> String {
        match e {
            TuneError::Config { key, .. } => key,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn parses_all_types_and_round_trips() {
        let s = parse(json!({
            "lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": true},
            "w": {"type": "float", "low": 0.0, "high": 2.0},
            "n": {"type": "int", "low": 2, "high": 9, "step": 2},
            "m": {"type": "categorical", "choices": ["a", "b", 3]}
        }))
        .unwrap();
        assert_eq!(s.len(), 4);
        let again = parse(s.to_json()).unwrap();
        assert_eq!(again, s);
        let n = &s.params()["n"];
        // grid 2,4,6,8; 9 is not reachable
        assert_eq!(n.from_internal(100.0), json!(8));
        assert_eq!(n.from_internal(4.9), json!(4));
        assert_eq!(n.to_internal(&json!(5)), None);
        assert_eq!(n.to_internal(&json!(6)), Some(6.0));
        let lr = &s.params()["lr"];
        assert!(
            (lr.from_internal(lr.to_internal(&json!(1e-4)).unwrap())
                .as_f64()
                .unwrap()
                - 1e-4)
                .abs()
                < 1e-12
        );
        assert_eq!(s.params()["m"].from_internal(2.2), json!(3));
        let d = n.numeric_domain().unwrap();
        assert_eq!((d.low, d.high), (1.0, 9.0));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                json!({"lr": {"type": "float", "high": 1.0}}),
                "space.lr.low",
            ),
            (
                json!({"lr": {"type": "float", "low": 1.0, "high": 0.5}}),
                "space.lr.high",
            ),
            (
                json!({"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": true}}),
                "space.lr.low",
            ),
            (
                json!({"lr": {"type": "float", "low": "a", "high": 1.0}}),
                "space.lr.low",
            ),
            (
                json!({"lr": {"type": "float", "low": 0.1, "high": 1.0, "hgih": 2}}),
                "space.lr.hgih",
            ),
            (
                json!({"lr": {"type": "float", "low": 0.1, "high": 1.0, "log": "yes"}}),
                "space.lr.log",
            ),
            (json!({"lr": {"low": 0.1, "high": 1.0}}), "space.lr.type"),
            (json!({"lr": {"type": "gauss"}}), "space.lr.type"),
            (
                json!({"n": {"type": "int", "low": 1.5, "high": 4}}),
                "space.n.low",
            ),
            (
                json!({"n": {"type": "int", "low": 1, "high": 4, "step": 0}}),
                "space.n.step",
            ),
            (
                json!({"n": {"type": "int", "low": 0, "high": 4, "log": true}}),
                "space.n.low",
            ),
            (
                json!({"c": {"type": "categorical", "choices": ["x"]}}),
                "space.c.choices",
            ),
            (
                json!({"c": {"type": "categorical", "choices": ["x", "x"]}}),
                "space.c.choices",
            ),
            (json!({"c": {"type": "categorical"}}), "space.c.choices"),
            (json!({"c": 3}), "space.c"),
            (json!({}), "space"),
            (json!([1]), "space"),
        ];
        for (v, key) in cases {
            let e = parse(v.clone()).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("tune.json"), "{msg}");
            assert_eq!(key_of(e), key, "for {v}");
        }
    }

    #[test]
    fn validate_names_the_parameter() {
        let s = parse(json!({
            "a": {"type": "float", "low": 0.0, "high": 1.0},
            "b": {"type": "int", "low": 0, "high": 3}
        }))
        .unwrap();
        let mut p = Params::new();
        p.insert("a".into(), json!(0.5));
        assert!(s.validate(&p).unwrap_err().contains("`b`"));
        p.insert("b".into(), json!(7));
        assert!(s.validate(&p).unwrap_err().contains("`b`"));
        p.insert("b".into(), json!(2));
        assert!(s.validate(&p).is_ok());
        p.insert("c".into(), json!(2));
        assert!(s.validate(&p).unwrap_err().contains("`c`"));
    }
}
