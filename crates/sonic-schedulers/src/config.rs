//! Typed scheduler configs, read from diffusers' config dicts.
//!
//! Every scheduler class has its own config struct holding exactly the keys that diffusers'
//! class takes, with diffusers' defaults for absent keys. Keys the class does not take are
//! ignored (diffusers' `from_config` semantics), so any class can be built from another class's
//! config (a DDIM `scheduler_config.json` can build an Euler scheduler). Values that would change
//! the math in a way this crate does not implement are rejected with
//! [`SchedulerError::UnsupportedConfig`], naming the key and the value; values of the wrong type
//! with [`SchedulerError::InvalidConfigValue`].
//!
//! Why one file of over 600 lines: the code is under 600; the rest are its unit tests, one per
//! rejected key and default.

use crate::error::{Result, SchedulerError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;

/// The sampling scheduler classes this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// `DDIMScheduler` (deterministic, eta = 0).
    Ddim,
    /// `DDIMInverseScheduler` (DDIM inversion: image latents to noise).
    DdimInverse,
    /// `PNDMScheduler` with `skip_prk_steps = true` (PLMS).
    Pndm,
    /// `EulerDiscreteScheduler` (no churn).
    EulerDiscrete,
    /// `DPMSolverMultistepScheduler` (DPM-Solver++ 2M).
    DpmSolverMultistep,
    /// `LCMScheduler` (Latent Consistency Model sampling, for LCM models and LCM-LoRA).
    Lcm,
}

impl SchedulerKind {
    /// Every implemented class.
    pub const ALL: [SchedulerKind; 6] = [
        SchedulerKind::Ddim,
        SchedulerKind::DdimInverse,
        SchedulerKind::Pndm,
        SchedulerKind::EulerDiscrete,
        SchedulerKind::DpmSolverMultistep,
        SchedulerKind::Lcm,
    ];

    /// diffusers' class name, e.g. `"DDIMScheduler"`.
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::DdimInverse => "DDIMInverseScheduler",
            SchedulerKind::Pndm => "PNDMScheduler",
            SchedulerKind::EulerDiscrete => "EulerDiscreteScheduler",
            SchedulerKind::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            SchedulerKind::Lcm => "LCMScheduler",
        }
    }

    /// Parses a diffusers class name (`"DDIMScheduler"`, ...) or a short alias
    /// (case-insensitive): `ddim`, `ddim-inverse`, `pndm` / `plms`, `euler`,
    /// `dpm++2m` / `dpmpp2m` / `dpm-solver++` / `dpmsolver++`, `lcm`.
    pub fn from_name(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let kind = match lower.as_str() {
            "ddimscheduler" | "ddim" => SchedulerKind::Ddim,
            "ddiminversescheduler" | "ddim-inverse" | "ddim_inverse" | "ddiminverse" => {
                SchedulerKind::DdimInverse
            }
            "pndmscheduler" | "pndm" | "plms" => SchedulerKind::Pndm,
            "eulerdiscretescheduler" | "euler" | "euler-discrete" | "euler_discrete" => {
                SchedulerKind::EulerDiscrete
            }
            "dpmsolvermultistepscheduler"
            | "dpm++2m"
            | "dpmpp2m"
            | "dpmpp_2m"
            | "dpm-solver++"
            | "dpmsolver++"
            | "dpm-solver-multistep" => SchedulerKind::DpmSolverMultistep,
            "lcmscheduler" | "lcm" => SchedulerKind::Lcm,
            _ => {
                return Err(SchedulerError::UnknownClass {
                    name: name.to_string(),
                    known: Self::ALL
                        .iter()
                        .map(|k| k.class_name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        };
        Ok(kind)
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class_name())
    }
}

/// How the betas of the training noise schedule are made (`beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `"linear"`: `linspace(beta_start, beta_end)` in float32.
    Linear,
    /// `"scaled_linear"`: `linspace(sqrt(beta_start), sqrt(beta_end))²` in float32 (SD).
    ScaledLinear,
    /// `"squaredcos_cap_v2"`: the Glide cosine schedule (float64, then float32).
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
    /// `"sigmoid"`: `sigmoid(linspace(-6, 6)) * (beta_end - beta_start) + beta_start`
    /// (DDPMScheduler only).
    Sigmoid,
}

impl BetaSchedule {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::ScaledLinear => "scaled_linear",
            BetaSchedule::SquaredCosCapV2 => "squaredcos_cap_v2",
            BetaSchedule::Sigmoid => "sigmoid",
        }
    }
}

/// What the model predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// `"epsilon"`: the noise.
    Epsilon,
    /// `"v_prediction"`: the velocity `sqrt(ᾱ) ε - sqrt(1 - ᾱ) x0`.
    VPrediction,
    /// `"sample"` (also `"original_sample"` for Euler): the clean sample x0.
    #[serde(alias = "original_sample")]
    Sample,
}

impl PredictionType {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            PredictionType::Epsilon => "epsilon",
            PredictionType::VPrediction => "v_prediction",
            PredictionType::Sample => "sample",
        }
    }
}

/// How inference timesteps are spread over the training timesteps (`timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `"leading"`: multiples of `num_train_timesteps / n`, plus `steps_offset`.
    Leading,
    /// `"trailing"`: counted down from `num_train_timesteps`, minus one.
    Trailing,
    /// `"linspace"`: evenly spread over `0..=num_train_timesteps - 1`.
    Linspace,
}

impl TimestepSpacing {
    /// The config string.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestepSpacing::Leading => "leading",
            TimestepSpacing::Trailing => "trailing",
            TimestepSpacing::Linspace => "linspace",
        }
    }
}

/// The sigma appended after the last inference sigma (`final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    /// `"zero"`: the last step lands on the clean sample.
    Zero,
    /// `"sigma_min"`: the last step lands on the smallest training sigma.
    SigmaMin,
}

/// One rule of [`REJECTIONS`]: which values of a key this crate does not implement.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// `true` is rejected (a feature switch that is not implemented).
    True(&'static str),
    /// Any non-null value is rejected.
    Present(&'static str),
    /// A string outside the list is rejected ("CLASS supports: ..." names the list).
    OneOf(&'static [&'static str]),
}

const DDIM: &str = "DDIMScheduler";
const DDIM_INV: &str = "DDIMInverseScheduler";
const PNDM: &str = "PNDMScheduler";
const EULER: &str = "EulerDiscreteScheduler";
const DPM: &str = "DPMSolverMultistepScheduler";
const DDPM: &str = "DDPMScheduler";
const LCM: &str = "LCMScheduler";
const SAMPLERS: &[&str] = &[DDIM, DDIM_INV, PNDM, EULER, DPM, LCM];
const BETAS: &[&str] = &["linear", "scaled_linear", "squaredcos_cap_v2"];
const ALL_SPACINGS: &[&str] = &["leading", "trailing", "linspace"];
const SIGMA_SPACING: &str = "not implemented (use_karras_sigmas is)";

/// The settings diffusers has that this crate does not implement: `(classes, key, rule)`.
/// A config value matched here is rejected with [`SchedulerError::UnsupportedConfig`] naming
/// the key and the value. Rules that depend on other keys (PNDM's `skip_prk_steps` default,
/// Euler's continuous timesteps with v-prediction, DPM's `solver_order`) live with their
/// class.
const REJECTIONS: &[(&[&str], &str, Rule)] = &[
    (SAMPLERS, "beta_schedule", Rule::OneOf(BETAS)),
    (
        &[DDPM],
        "beta_schedule",
        Rule::OneOf(&["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"]),
    ),
    (
        &[DDIM, DDIM_INV, DPM, DDPM, LCM],
        "prediction_type",
        Rule::OneOf(&["epsilon", "sample", "v_prediction"]),
    ),
    (
        &[PNDM],
        "prediction_type",
        Rule::OneOf(&["epsilon", "v_prediction"]),
    ),
    (
        &[EULER],
        "prediction_type",
        Rule::OneOf(&["epsilon", "v_prediction", "sample", "original_sample"]),
    ),
    (
        &[DDIM, PNDM, EULER, DPM],
        "timestep_spacing",
        Rule::OneOf(ALL_SPACINGS),
    ),
    (
        &[DDIM_INV],
        "timestep_spacing",
        Rule::OneOf(&["leading", "trailing"]),
    ),
    (
        &[DDIM, DPM, LCM],
        "thresholding",
        Rule::True("dynamic thresholding is not implemented (SD latents do not use it)"),
    ),
    (
        &[EULER, DPM],
        "use_exponential_sigmas",
        Rule::True(SIGMA_SPACING),
    ),
    (&[EULER, DPM], "use_beta_sigmas", Rule::True(SIGMA_SPACING)),
    (
        &[EULER, DPM],
        "final_sigmas_type",
        Rule::OneOf(&["zero", "sigma_min"]),
    ),
    (&[EULER], "interpolation_type", Rule::OneOf(&["linear"])),
    (
        &[EULER],
        "timestep_type",
        Rule::OneOf(&["discrete", "continuous"]),
    ),
    // diffusers reads deis as dpmsolver++ and logrho / bh1 / bh2 as midpoint.
    (
        &[DPM],
        "algorithm_type",
        Rule::OneOf(&["dpmsolver++", "deis"]),
    ),
    (
        &[DPM],
        "solver_type",
        Rule::OneOf(&["midpoint", "logrho", "bh1", "bh2"]),
    ),
    (
        &[DPM],
        "use_lu_lambdas",
        Rule::True("Lu's lambda spacing is not implemented"),
    ),
    (
        &[DPM],
        "use_flow_sigmas",
        Rule::True("flow-matching sigmas are not implemented"),
    ),
    (
        &[DPM],
        "variance_type",
        Rule::Present(
            "learned variances (channel slicing of the model output) are not implemented",
        ),
    ),
];

/// The rule of `class` for `key`, if any.
fn rule(class: &str, key: &str) -> Option<Rule> {
    REJECTIONS
        .iter()
        .find(|(classes, k, _)| *k == key && classes.contains(&class))
        .map(|&(_, _, rule)| rule)
}

/// Why `rule` rejects `value`, or `None` when it accepts it (values of the wrong type are
/// left to the typed reader).
fn rejection(class: &str, rule: Rule, value: &Value) -> Option<String> {
    match (rule, value) {
        (Rule::True(reason), Value::Bool(true)) => Some(reason.to_string()),
        (Rule::Present(reason), v) if !v.is_null() => Some(reason.to_string()),
        (Rule::OneOf(allowed), Value::String(s)) if !allowed.contains(&s.as_str()) => {
            Some(format!("{class} supports: {}", allowed.join(", ")))
        }
        _ => None,
    }
}

/// A JSON value as short text for messages.
fn json_text(value: &Value) -> String {
    let s = value.to_string();
    if s.len() > 80 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An [`SchedulerError::InvalidConfigValue`] for `key` of `class`.
pub(crate) fn invalid(class: &str, key: &str, value: &Value, expected: &str) -> SchedulerError {
    SchedulerError::InvalidConfigValue {
        class: class.to_string(),
        key: key.to_string(),
        value: json_text(value),
        expected: expected.to_string(),
    }
}

/// An [`SchedulerError::UnsupportedConfig`] for `key` of `class`.
pub(crate) fn unsupported(class: &str, key: &str, value: &Value, reason: &str) -> SchedulerError {
    SchedulerError::UnsupportedConfig {
        class: class.to_string(),
        key: key.to_string(),
        value: json_text(value),
        reason: reason.to_string(),
    }
}

/// The keys of a config dict that configure the class: diffusers' bookkeeping keys (those
/// starting with `_`: `_class_name`, `_diffusers_version`, `_use_default_values`, ...) are
/// dropped, and so are the keys listed in `_use_default_values` (present in configs diffusers
/// built in memory), so that those take the target class's defaults, as in diffusers'
/// `extract_init_dict`. This is the one place that knows about bookkeeping keys.
fn user_keys(class: &str, config: &Value) -> Result<Map<String, Value>> {
    let Value::Object(map) = config else {
        return Err(SchedulerError::ConfigNotObject {
            class: class.to_string(),
            found: describe(config).to_string(),
        });
    };
    let used_defaults: Vec<&str> = map
        .get("_use_default_values")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok(map
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && !used_defaults.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// Reads the config struct `T` of `class` from a diffusers config dict (diffusers'
/// `from_config`): bookkeeping keys dropped ([`user_keys`]), values in [`REJECTIONS`]
/// rejected, then `T` deserialized with serde, absent keys taking `T`'s defaults (diffusers'
/// for the class) and keys `T` does not take ignored, as diffusers ignores them. A value of
/// the wrong type is a [`SchedulerError::InvalidConfigValue`] naming its key. Returns the
/// user keys too, for rules that read other keys.
pub(crate) fn parse<T: DeserializeOwned>(
    class: &'static str,
    config: &Value,
) -> Result<(T, Map<String, Value>)> {
    let mut keys = user_keys(class, config)?;
    // diffusers does not read `beta_schedule` when `trained_betas` is given: a name this
    // class does not know is then dropped (read as linear).
    if keys.get("trained_betas").is_some_and(|v| !v.is_null())
        && let (Some(rule), Some(v)) = (rule(class, "beta_schedule"), keys.get("beta_schedule"))
        && rejection(class, rule, v).is_some()
    {
        keys.remove("beta_schedule");
    }
    for (key, value) in &keys {
        if let Some(reason) = rule(class, key).and_then(|r| rejection(class, r, value)) {
            return Err(unsupported(class, key, value, &reason));
        }
    }
    match serde_json::from_value::<T>(Value::Object(keys.clone())) {
        Ok(parsed) => Ok((parsed, keys)),
        Err(whole) => Err(type_error::<T>(class, &keys, &whole)),
    }
}

/// Names the key at fault in a failed deserialization: the first key that fails alone.
fn type_error<T: DeserializeOwned>(
    class: &str,
    keys: &Map<String, Value>,
    whole: &serde_json::Error,
) -> SchedulerError {
    let expected = |e: &serde_json::Error| {
        let msg = e.to_string();
        msg.rsplit_once(", expected ")
            .map_or(msg.clone(), |(_, x)| x.to_string())
    };
    for (key, value) in keys {
        let alone = Value::Object([(key.clone(), value.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<T>(alone) {
            return invalid(class, key, value, &expected(&e));
        }
    }
    invalid(
        class,
        "(config)",
        &Value::Object(keys.clone()),
        &expected(whole),
    )
}

/// serde readers with Python's leniency, as diffusers' configs need.
pub(crate) mod lenient {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::Value;

    /// A float: a JSON number or Python's `NaN` / `Infinity` / `-Infinity` (see
    /// [`crate::json`]).
    pub(crate) fn float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = Value::deserialize(d)?;
        crate::json::lenient_f64(&v).ok_or_else(|| D::Error::custom("a number"))
    }

    /// A float or null.
    pub(crate) fn opt_float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => crate::json::lenient_f64(&v)
                .map(Some)
                .ok_or_else(|| D::Error::custom("a number or null")),
        }
    }

    /// A non-negative integer; a float with no fraction is accepted.
    pub(crate) fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let v = Value::deserialize(d)?;
        if let Some(u) = v.as_u64() {
            return usize::try_from(u).map_err(|_| D::Error::custom("a small integer"));
        }
        match v.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => Ok(f as usize),
            _ => Err(D::Error::custom("a non-negative integer")),
        }
    }

    /// A boolean; null counts as false (Python truthiness, as diffusers).
    pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(b),
            _ => Err(D::Error::custom("a boolean")),
        }
    }

    /// A list of finite floats or null.
    pub(crate) fn opt_floats<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<f64>>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .iter()
                .map(|x| crate::json::lenient_f64(x).filter(|f| f.is_finite()))
                .collect::<Option<Vec<f64>>>()
                .map(Some)
                .ok_or_else(|| D::Error::custom("a list of numbers")),
            _ => Err(D::Error::custom("a list of numbers or null")),
        }
    }
}

/// The training noise schedule: the keys every class shares (read flattened into each
/// class's config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BetaConfig {
    /// `num_train_timesteps` (default 1000).
    #[serde(deserialize_with = "lenient::count")]
    pub num_train_timesteps: usize,
    /// `beta_start` (default 0.0001).
    #[serde(deserialize_with = "lenient::float")]
    pub beta_start: f64,
    /// `beta_end` (default 0.02).
    #[serde(deserialize_with = "lenient::float")]
    pub beta_end: f64,
    /// `beta_schedule` (default `linear`). When `trained_betas` is given it is not used for the
    /// betas (as in diffusers), and an unknown name is then accepted and read as `linear`.
    pub beta_schedule: BetaSchedule,
    /// `trained_betas`: explicit betas, one per training timestep (default none).
    #[serde(deserialize_with = "lenient::opt_floats")]
    pub trained_betas: Option<Vec<f64>>,
    /// `rescale_betas_zero_snr` (default false): rescale to zero terminal SNR.
    #[serde(deserialize_with = "lenient::flag")]
    pub rescale_betas_zero_snr: bool,
}

impl Default for BetaConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            rescale_betas_zero_snr: false,
        }
    }
}

impl BetaConfig {
    /// Checks the values serde cannot: between 2 and
    /// [`sonic_core::config::limits::MAX_TRAIN_TIMESTEPS`] training timesteps (the tables are
    /// that long), finite non-negative betas, one trained beta per training timestep.
    pub(crate) fn validate(&self, class: &str) -> Result<()> {
        let n = self.num_train_timesteps;
        let max = sonic_core::config::limits::MAX_TRAIN_TIMESTEPS;
        if !(2..=max).contains(&n) {
            return Err(invalid(
                class,
                "num_train_timesteps",
                &Value::from(n),
                &format!("an integer from 2 to {max} (this implementation's sanity limit)"),
            ));
        }
        for (key, v) in [("beta_start", self.beta_start), ("beta_end", self.beta_end)] {
            if !v.is_finite() || v < 0.0 {
                let text = serde_json::Number::from_f64(v)
                    .map_or_else(|| Value::String(v.to_string()), Value::Number);
                return Err(invalid(class, key, &text, "a finite non-negative number"));
            }
        }
        if let Some(tb) = &self.trained_betas
            && tb.len() != n
        {
            return Err(invalid(
                class,
                "trained_betas",
                &Value::from(format!("a list of {} numbers", tb.len())),
                &format!("one beta per training timestep ({n})"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_names_round_trip() {
        for k in SchedulerKind::ALL {
            assert_eq!(SchedulerKind::from_name(k.class_name()).unwrap(), k);
        }
        assert_eq!(
            SchedulerKind::from_name("DPM++2M").unwrap(),
            SchedulerKind::DpmSolverMultistep
        );
        assert_eq!(
            SchedulerKind::from_name("plms").unwrap(),
            SchedulerKind::Pndm
        );
        let e = SchedulerKind::from_name("LMSDiscreteScheduler").unwrap_err();
        assert!(matches!(e, SchedulerError::UnknownClass { .. }));
        assert!(e.to_string().contains("LMSDiscreteScheduler"), "{e}");
        assert!(e.to_string().contains("DDIMScheduler"), "{e}");
    }

    #[test]
    fn types_are_checked_with_the_key_named() {
        use crate::ddim::DdimConfig;
        use crate::dpm::DpmSolverConfig;
        let bad = [
            (json!({"beta_end": "x"}), "beta_end", "\"x\""),
            (json!({"steps_offset": -1}), "steps_offset", "-1"),
            (
                json!({"num_train_timesteps": 1.5}),
                "num_train_timesteps",
                "1.5",
            ),
            (
                json!({"trained_betas": [0.1, "y"]}),
                "trained_betas",
                "[0.1,\"y\"]",
            ),
            (json!({"timestep_spacing": 3}), "timestep_spacing", "3"),
            (json!({"prediction_type": null}), "prediction_type", "null"),
            (json!({"clip_sample": "yes"}), "clip_sample", "\"yes\""),
        ];
        for (cfg, key, value) in bad {
            let e = DdimConfig::from_json(&cfg).unwrap_err();
            assert!(
                matches!(e, SchedulerError::InvalidConfigValue { key: ref k, value: ref v, .. }
                    if k == key && v == value),
                "{key}: {e}"
            );
        }
        // Numbers as floats, null booleans (Python truthiness) and Python's -Infinity.
        let c = DdimConfig::from_json(&json!({"num_train_timesteps": 1000.0, "clip_sample": null}))
            .unwrap();
        assert_eq!(c.betas.num_train_timesteps, 1000);
        assert!(!c.clip_sample);
        let text = r#"{"lambda_min_clipped": -Infinity, "solver_order": 1}"#;
        let c = DpmSolverConfig::from_json(&crate::json::parse_python_json(text, "t").unwrap())
            .unwrap();
        assert_eq!(c.lambda_min_clipped, f64::NEG_INFINITY);
        assert_eq!(c.solver_order, 1);
        let e = DdimConfig::from_json(&json!([1, 2])).unwrap_err();
        assert!(matches!(e, SchedulerError::ConfigNotObject { .. }));
        let e = DdimConfig::from_json(&json!({"num_train_timesteps": 1})).unwrap_err();
        assert!(e.to_string().contains("num_train_timesteps"), "{e}");
    }

    #[test]
    fn bookkeeping_keys_are_dropped_and_unknown_keys_ignored() {
        use crate::euler::EulerConfig;
        let cfg = json!({
            "_class_name": "DDIMScheduler",
            "_diffusers_version": "0.30.0",
            "timestep_spacing": "leading",
            "_use_default_values": ["timestep_spacing"],
            "some_future_key": {"nested": [1, 2]},
            "clip_sample": false,
        });
        let c = EulerConfig::from_json(&cfg).unwrap();
        assert_eq!(c.timestep_spacing, TimestepSpacing::Linspace);
        let keys = user_keys("EulerDiscreteScheduler", &cfg).unwrap();
        let mut names: Vec<&str> = keys.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["clip_sample", "some_future_key"]);
    }

    #[test]
    fn every_rejection_names_key_and_value() {
        for &(classes, key, rule) in REJECTIONS {
            let value = match rule {
                Rule::True(_) => json!(true),
                Rule::Present(_) => json!("learned"),
                Rule::OneOf(_) => json!("not-a-supported-value"),
            };
            for &class in classes {
                let cfg = json!({ key: value.clone(), "skip_prk_steps": true });
                let e = if class == "DDPMScheduler" {
                    crate::ddpm::DdpmConfig::from_json(&cfg)
                        .map(|_| ())
                        .unwrap_err()
                } else {
                    crate::scheduler_from_config(class, &cfg)
                        .map(|_| ())
                        .unwrap_err()
                };
                match &e {
                    SchedulerError::UnsupportedConfig {
                        class: c,
                        key: k,
                        value: v,
                        ..
                    } => assert_eq!(
                        (c.as_str(), k.as_str(), v),
                        (class, key, &json_text(&value))
                    ),
                    other => panic!("{class} {key}: unexpected {other}"),
                }
                // The same keys with false / null / a supported value are accepted.
                let ok = match rule {
                    Rule::True(_) => json!(false),
                    Rule::Present(_) => Value::Null,
                    Rule::OneOf(allowed) => json!(allowed[0]),
                };
                let cfg = json!({ key: ok, "skip_prk_steps": true });
                if class == "DDPMScheduler" {
                    crate::ddpm::DdpmConfig::from_json(&cfg).unwrap();
                } else {
                    crate::scheduler_from_config(class, &cfg).unwrap();
                }
            }
        }
    }
}
