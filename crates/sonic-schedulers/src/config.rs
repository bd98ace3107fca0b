//! Typed scheduler configs, read from diffusers' config dicts.
//!
//! Every scheduler class has its own config struct holding exactly the keys that diffusers'
//! class takes, with diffusers' defaults for absent keys. Keys the class does not take are
//! ignored (diffusers' `from_config` semantics), so any class can be built from another class's
//! config (a DDIM `scheduler_config.json` can build an Euler scheduler). Values that would change
//! the math in a way this crate does not implement are rejected with
//! [`SchedulerError::UnsupportedConfig`], naming the key and the value; values of the wrong type
//! with [`SchedulerError::InvalidConfigValue`].

use crate::error::{Result, SchedulerError};
use crate::json::lenient_f64;
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
}

impl SchedulerKind {
    /// Every implemented class.
    pub const ALL: [SchedulerKind; 5] = [
        SchedulerKind::Ddim,
        SchedulerKind::DdimInverse,
        SchedulerKind::Pndm,
        SchedulerKind::EulerDiscrete,
        SchedulerKind::DpmSolverMultistep,
    ];

    /// diffusers' class name, e.g. `"DDIMScheduler"`.
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::DdimInverse => "DDIMInverseScheduler",
            SchedulerKind::Pndm => "PNDMScheduler",
            SchedulerKind::EulerDiscrete => "EulerDiscreteScheduler",
            SchedulerKind::DpmSolverMultistep => "DPMSolverMultistepScheduler",
        }
    }

    /// Parses a diffusers class name (`"DDIMScheduler"`, ...) or a short alias
    /// (case-insensitive): `ddim`, `ddim-inverse`, `pndm` / `plms`, `euler`,
    /// `dpm++2m` / `dpmpp2m` / `dpm-solver++` / `dpmsolver++`.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    /// `"linear"`: `linspace(beta_start, beta_end)` in float32.
    Linear,
    /// `"scaled_linear"`: `linspace(sqrt(beta_start), sqrt(beta_end))²` in float32 (SD).
    ScaledLinear,
    /// `"squaredcos_cap_v2"`: the Glide cosine schedule (float64, then float32).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    /// `"epsilon"`: the noise.
    Epsilon,
    /// `"v_prediction"`: the velocity `sqrt(ᾱ) ε - sqrt(1 - ᾱ) x0`.
    VPrediction,
    /// `"sample"` (also `"original_sample"` for Euler): the clean sample x0.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalSigmasType {
    /// `"zero"`: the last step lands on the clean sample.
    Zero,
    /// `"sigma_min"`: the last step lands on the smallest training sigma.
    SigmaMin,
}

/// Reads keys of one config object, producing errors that name the class and the key.
pub(crate) struct ConfigReader<'a> {
    class: &'static str,
    map: &'a Map<String, Value>,
    /// Keys listed in `_use_default_values`: read as absent (diffusers' `extract_init_dict`).
    used_defaults: Vec<&'a str>,
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

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

impl<'a> ConfigReader<'a> {
    /// Wraps a config value; it must be a JSON object. Keys named in its `_use_default_values`
    /// (present in configs diffusers built in memory) are read as absent, so that they take
    /// the target class's defaults, as in diffusers' `from_config`.
    pub(crate) fn new(class: &'static str, config: &'a Value) -> Result<Self> {
        match config {
            Value::Object(map) => {
                let used_defaults = map
                    .get("_use_default_values")
                    .and_then(Value::as_array)
                    .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                Ok(Self {
                    class,
                    map,
                    used_defaults,
                })
            }
            other => Err(SchedulerError::ConfigNotObject {
                class: class.to_string(),
                found: describe(other),
            }),
        }
    }

    /// An [`SchedulerError::InvalidConfigValue`] for `key`.
    pub(crate) fn invalid(&self, key: &str, value: &Value, expected: &str) -> SchedulerError {
        SchedulerError::InvalidConfigValue {
            class: self.class.to_string(),
            key: key.to_string(),
            value: json_text(value),
            expected: expected.to_string(),
        }
    }

    /// An [`SchedulerError::UnsupportedConfig`] for `key`.
    pub(crate) fn unsupported(&self, key: &str, value: &Value, reason: &str) -> SchedulerError {
        SchedulerError::UnsupportedConfig {
            class: self.class.to_string(),
            key: key.to_string(),
            value: json_text(value),
            reason: reason.to_string(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        if self.used_defaults.contains(&key) {
            return None;
        }
        self.map.get(key)
    }

    /// A non-negative integer (a float with no fraction is accepted); absent: `default`.
    pub(crate) fn usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                if let Some(u) = v.as_u64() {
                    return usize::try_from(u).map_err(|_| self.invalid(key, v, "a small integer"));
                }
                match v.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => Ok(f as usize),
                    _ => Err(self.invalid(key, v, "a non-negative integer")),
                }
            }
        }
    }

    /// A float (also `"Infinity"` etc., see [`crate::json`]); absent: `default`.
    pub(crate) fn f64(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => lenient_f64(v).ok_or_else(|| self.invalid(key, v, "a number")),
        }
    }

    /// A float or null; absent: `None`.
    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => lenient_f64(v)
                .map(Some)
                .ok_or_else(|| self.invalid(key, v, "a number or null")),
        }
    }

    /// A boolean; absent: `default`; null counts as false (Python truthiness, as diffusers).
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.invalid(key, v, "a boolean")),
        }
    }

    /// A string; absent: `default`.
    pub(crate) fn string(&self, key: &str, default: &str) -> Result<(String, Value)> {
        match self.get(key) {
            None => Ok((default.to_string(), Value::String(default.to_string()))),
            Some(Value::String(s)) => Ok((s.clone(), Value::String(s.clone()))),
            Some(v) => Err(self.invalid(key, v, "a string")),
        }
    }

    /// The raw value of a key, if present and not null.
    pub(crate) fn raw(&self, key: &str) -> Option<&'a Value> {
        match self.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// A list of floats or null; absent: `None`.
    pub(crate) fn opt_f64_list(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|x| lenient_f64(x).filter(|f| f.is_finite()))
                .collect::<Option<Vec<f64>>>()
                .map(Some)
                .ok_or_else(|| {
                    self.invalid(key, &Value::Array(items.clone()), "a list of numbers")
                }),
            Some(v) => Err(self.invalid(key, v, "a list of numbers or null")),
        }
    }

    /// The class being read, for messages.
    pub(crate) fn class(&self) -> &'static str {
        self.class
    }
}

/// The training noise schedule: the keys every class shares.
#[derive(Debug, Clone, PartialEq)]
pub struct BetaConfig {
    /// `num_train_timesteps` (default 1000).
    pub num_train_timesteps: usize,
    /// `beta_start` (default 0.0001).
    pub beta_start: f64,
    /// `beta_end` (default 0.02).
    pub beta_end: f64,
    /// `beta_schedule` (default `linear`). When `trained_betas` is given it is not used for the
    /// betas (as in diffusers), and an unknown name is then accepted and read as `linear`.
    pub beta_schedule: BetaSchedule,
    /// `trained_betas`: explicit betas, one per training timestep (default none).
    pub trained_betas: Option<Vec<f64>>,
    /// `rescale_betas_zero_snr` (default false): rescale to zero terminal SNR.
    pub rescale_betas_zero_snr: bool,
}

impl BetaConfig {
    /// Reads the shared keys. `allow_sigmoid` admits `beta_schedule = "sigmoid"` (DDPM only);
    /// `takes_rescale` tells whether the class takes `rescale_betas_zero_snr`.
    pub(crate) fn read(
        r: &ConfigReader<'_>,
        allow_sigmoid: bool,
        takes_rescale: bool,
    ) -> Result<Self> {
        let num_train_timesteps = r.usize("num_train_timesteps", 1000)?;
        if num_train_timesteps < 2 {
            return Err(r.invalid(
                "num_train_timesteps",
                &Value::from(num_train_timesteps),
                "an integer of at least 2",
            ));
        }
        let beta_start = r.f64("beta_start", 0.0001)?;
        let beta_end = r.f64("beta_end", 0.02)?;
        for (key, v) in [("beta_start", beta_start), ("beta_end", beta_end)] {
            if !v.is_finite() || v < 0.0 {
                let raw = r.raw(key).cloned().unwrap_or(Value::Null);
                return Err(r.invalid(key, &raw, "a finite non-negative number"));
            }
        }
        let trained_betas = r.opt_f64_list("trained_betas")?;
        if let Some(tb) = &trained_betas
            && tb.len() != num_train_timesteps
        {
            return Err(r.invalid(
                "trained_betas",
                &Value::from(format!("a list of {} numbers", tb.len())),
                &format!("one beta per training timestep ({num_train_timesteps})"),
            ));
        }
        let (name, raw) = r.string("beta_schedule", "linear")?;
        let beta_schedule = match name.as_str() {
            "linear" => BetaSchedule::Linear,
            "scaled_linear" => BetaSchedule::ScaledLinear,
            "squaredcos_cap_v2" => BetaSchedule::SquaredCosCapV2,
            "sigmoid" if allow_sigmoid => BetaSchedule::Sigmoid,
            _ if trained_betas.is_some() => BetaSchedule::Linear,
            _ => {
                let known = if allow_sigmoid {
                    "linear, scaled_linear, squaredcos_cap_v2, sigmoid"
                } else {
                    "linear, scaled_linear, squaredcos_cap_v2"
                };
                return Err(r.unsupported(
                    "beta_schedule",
                    &raw,
                    &format!("unknown beta schedule; supported: {known}"),
                ));
            }
        };
        let rescale_betas_zero_snr = if takes_rescale {
            r.bool("rescale_betas_zero_snr", false)?
        } else {
            false
        };
        Ok(Self {
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule,
            trained_betas,
            rescale_betas_zero_snr,
        })
    }
}

impl Default for BetaConfig {
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

/// Reads `prediction_type` among `allowed` (strings as written in configs).
pub(crate) fn read_prediction_type(
    r: &ConfigReader<'_>,
    allowed: &[&str],
) -> Result<PredictionType> {
    let (name, raw) = r.string("prediction_type", "epsilon")?;
    let parsed = match name.as_str() {
        "epsilon" => Some(PredictionType::Epsilon),
        "v_prediction" => Some(PredictionType::VPrediction),
        "sample" | "original_sample" => Some(PredictionType::Sample),
        _ => None,
    };
    match parsed {
        Some(p) if allowed.contains(&name.as_str()) => Ok(p),
        _ => Err(r.unsupported(
            "prediction_type",
            &raw,
            &format!("{} supports: {}", r.class(), allowed.join(", ")),
        )),
    }
}

/// Reads `timestep_spacing` among `allowed`, with the class's `default`.
pub(crate) fn read_spacing(
    r: &ConfigReader<'_>,
    default: &str,
    allowed: &[TimestepSpacing],
) -> Result<TimestepSpacing> {
    let (name, raw) = r.string("timestep_spacing", default)?;
    let parsed = match name.as_str() {
        "leading" => Some(TimestepSpacing::Leading),
        "trailing" => Some(TimestepSpacing::Trailing),
        "linspace" => Some(TimestepSpacing::Linspace),
        _ => None,
    };
    match parsed {
        Some(s) if allowed.contains(&s) => Ok(s),
        _ => Err(r.unsupported(
            "timestep_spacing",
            &raw,
            &format!(
                "{} supports: {}",
                r.class(),
                allowed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Rejects `key = true` (a feature this crate does not implement).
pub(crate) fn reject_true(r: &ConfigReader<'_>, key: &str, reason: &str) -> Result<()> {
    if r.bool(key, false)? {
        return Err(r.unsupported(key, &Value::Bool(true), reason));
    }
    Ok(())
}

/// Reads `final_sigmas_type` (default `zero`).
pub(crate) fn read_final_sigmas(r: &ConfigReader<'_>) -> Result<FinalSigmasType> {
    let (name, raw) = r.string("final_sigmas_type", "zero")?;
    match name.as_str() {
        "zero" => Ok(FinalSigmasType::Zero),
        "sigma_min" => Ok(FinalSigmasType::SigmaMin),
        _ => Err(r.unsupported("final_sigmas_type", &raw, "supported: zero, sigma_min")),
    }
}

/// Reads the sigma-spacing switches shared by Euler and DPM-Solver: returns `use_karras_sigmas`
/// and rejects exponential / beta sigmas.
pub(crate) fn read_sigma_switches(r: &ConfigReader<'_>) -> Result<bool> {
    let karras = r.bool("use_karras_sigmas", false)?;
    reject_true(
        r,
        "use_exponential_sigmas",
        "exponential sigmas are not implemented (use_karras_sigmas is)",
    )?;
    reject_true(
        r,
        "use_beta_sigmas",
        "beta sigmas are not implemented (use_karras_sigmas is)",
    )?;
    Ok(karras)
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
    fn reader_types_are_checked_with_the_key_named() {
        let cfg = json!({"a": "x", "n": 1000.0, "neg": -1, "b": null, "l": [0.1, "y"]});
        let r = ConfigReader::new("DDIMScheduler", &cfg).unwrap();
        let e = r.f64("a", 0.0).unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
        assert_eq!(r.usize("n", 0).unwrap(), 1000);
        assert!(r.usize("neg", 0).is_err());
        assert!(!r.bool("b", true).unwrap());
        assert!(r.bool("absent", true).unwrap());
        let e = r.opt_f64_list("l").unwrap_err();
        assert!(matches!(e, SchedulerError::InvalidConfigValue { ref key, .. } if key == "l"));
        let cfg =
            json!({"timestep_spacing": "leading", "_use_default_values": ["timestep_spacing"]});
        let r = ConfigReader::new("EulerDiscreteScheduler", &cfg).unwrap();
        assert_eq!(
            r.string("timestep_spacing", "linspace").unwrap().0,
            "linspace"
        );
        let e = ConfigReader::new("DDIMScheduler", &json!([1, 2]))
            .err()
            .unwrap();
        assert!(matches!(e, SchedulerError::ConfigNotObject { .. }));
    }
}
