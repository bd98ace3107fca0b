//! diffusers' noise schedulers on Burn, equal to diffusers to float32 rounding.
//!
//! - [`Scheduler`]: one object-safe trait for the sampling loop, implemented by
//!   [`DdimScheduler`] (DDIM and its inverse, by [`DdimDirection`]), [`PndmScheduler`] (PLMS),
//!   [`EulerDiscreteScheduler`], [`DpmSolverMultistepScheduler`] (DPM-Solver++ 2M) and
//!   [`LcmScheduler`] (Latent Consistency Model sampling, stochastic: its noise comes from a
//!   seed, [`Scheduler::set_noise_seed`]);
//! - [`scheduler_from_config`]: builds any of them from a diffusers config dict (a
//!   `scheduler_config.json`) with diffusers' `from_config` semantics, so a DDIM config can
//!   build an Euler scheduler; [`scheduler_by_name`] adds user-facing names such as
//!   `euler-karras`;
//! - [`DdpmSchedule`]: the training helpers `add_noise` / `get_velocity`;
//!
//! Schedule tables (betas, ᾱ, sigmas, timesteps) are host vectors computed as diffusers
//! computes them (float32 where diffusers uses float32 torch ops); the latent math uses Burn
//! tensor ops, so it runs on any device. Steps are addressed by index into
//! [`Scheduler::timesteps`], which avoids float comparisons of timesteps and handles PNDM's
//! repeated timestep.
//!
//! Config values that would change the math in an unimplemented way are errors
//! ([`SchedulerError::UnsupportedConfig`]) naming the key and value; nothing is silently
//! ignored.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use sonic_schedulers::{Scheduler, scheduler_from_config};
//! # fn main() -> Result<(), sonic_schedulers::SchedulerError> {
//! let config = serde_json::json!({
//!     "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
//!     "steps_offset": 1, "set_alpha_to_one": false, "clip_sample": false
//! });
//! // An SD 1.x DDIM config, used to build an Euler scheduler.
//! let mut scheduler = scheduler_from_config("EulerDiscreteScheduler", &config)?;
//! scheduler.set_timesteps(4)?;
//! let device = Device::default();
//! let mut x = Tensor::<4>::ones([1, 4, 8, 8], &device).mul_scalar(scheduler.init_noise_sigma());
//! for i in 0..scheduler.timesteps().len() {
//!     let input = scheduler.scale_model_input(x.clone(), i)?;
//!     let eps = input.zeros_like(); // the UNet's output at timestep scheduler.timesteps()[i]
//!     x = scheduler.step(eps, i, x)?;
//! }
//! assert_eq!(x.dims(), [1, 4, 8, 8]);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod choice;
mod common;
pub mod config;
pub mod ddim;
pub mod ddpm;
pub mod dpm;
pub mod error;
pub mod euler;
pub mod json;
pub mod lcm;
pub mod pndm;
pub mod schedule;
mod tables;

pub use choice::SchedulerChoice;
pub use config::{
    BetaConfig, BetaSchedule, FinalSigmasType, PredictionType, SchedulerKind, TimestepSpacing,
};
pub use ddim::{DdimConfig, DdimDirection, DdimScheduler, DdimStepRule};
pub use ddpm::{DdpmConfig, DdpmSchedule};
pub use dpm::{DpmSolverConfig, DpmSolverMultistepScheduler};
pub use error::SchedulerError;
pub use euler::{EulerConfig, EulerDiscreteScheduler};
pub use json::{parse_python_json, read_python_json};
pub use lcm::{LcmConfig, LcmScheduler, LcmStepOutput};
pub use pndm::{PndmConfig, PndmScheduler};
pub use schedule::NoiseSchedule;

use burn::tensor::Tensor;
use error::Result;
use serde_json::Value;

/// A diffusion sampling scheduler: the timestep schedule and the update rule of the
/// sampling loop.
///
/// The loop is: [`set_timesteps`](Scheduler::set_timesteps)`(n)`; `x = noise *
/// init_noise_sigma()`; for each index `i` of [`timesteps`](Scheduler::timesteps):
/// `model_output = unet(scale_model_input(x, i), timesteps()[i])`, then
/// `x = step(model_output, i, x)`.
///
/// Multistep schedulers (PNDM, DPM-Solver++) keep their history inside; stepping index 0
/// starts a fresh loop, [`reset`](Scheduler::reset) and `set_timesteps` clear it, and other
/// steps must follow each other in order.
pub trait Scheduler: Send {
    /// Which class this is.
    fn kind(&self) -> SchedulerKind;

    /// Sets the number of inference steps and computes the timestep schedule (clearing any
    /// multistep history). Errors when `num_inference_steps` is 0 or more than the training
    /// timesteps.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;

    /// The timesteps to give the model, one per step, after `set_timesteps` (empty before).
    /// Fractional with Euler Karras sigmas; PNDM's second timestep appears twice.
    fn timesteps(&self) -> &[f64];

    /// The standard deviation of the initial noise (1 except for Euler).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// Scales the model input at step `step_index` (Euler divides by `sqrt(sigma² + 1)`; the
    /// others return it unchanged, after checking the index).
    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Result<Tensor<4>> {
        common::check_index(
            self.kind().class_name(),
            "scale_model_input",
            step_index,
            self.timesteps().len(),
        )?;
        Ok(sample)
    }

    /// One sampling step at `step_index`: from the model output and the current sample, the
    /// sample at the next timestep (diffusers' `prev_sample`).
    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
    ) -> Result<Tensor<4>>;

    /// The estimate of the clean sample x0 from the model output at step `step_index` and
    /// the sample the model saw (before `scale_model_input`), for previews: `(x - sqrt(1 - ᾱ)
    /// ε) / sqrt(ᾱ)` (or the v / sample forms) at the step's timestep. `None` where the sample
    /// is not variance-preserving (Euler's sigma-scaled samples) or the timestep is fractional
    /// or out of range.
    fn predict_original_sample(
        &self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
    ) -> Option<Tensor<4>> {
        let t = *self.timesteps().get(step_index)?;
        if self.init_noise_sigma() != 1.0 || t.fract() != 0.0 || t < 0.0 {
            return None;
        }
        let alpha = *self.alphas_cumprod().get(t as usize)? as f32;
        Some(common::predict_x0_eps(self.prediction_type(), sample, model_output, alpha).0)
    }

    /// diffusers' class attribute `order` (1 for every class here; it counts model
    /// evaluations per step for progress bars, not the solver order).
    fn order(&self) -> usize {
        1
    }

    /// Clears the multistep history (a no-op for single-step schedulers).
    fn reset(&mut self) {}

    /// Sets the seed of the noise a stochastic scheduler draws in its steps (LCM re-noises
    /// before every step but the last; step `i` draws stream `i + 1` of
    /// [`sonic_core::noise::seeded_normal`], stream 0 being the initial latents). A no-op for
    /// the deterministic ones.
    fn set_noise_seed(&mut self, _seed: u64) {}

    /// The training noise schedule.
    fn noise_schedule(&self) -> &NoiseSchedule;

    /// ᾱ_t for every training timestep (float32 values, as diffusers computes them).
    fn alphas_cumprod(&self) -> &[f64] {
        self.noise_schedule().alphas_cumprod()
    }

    /// What the model predicts.
    fn prediction_type(&self) -> PredictionType {
        self.noise_schedule().prediction_type()
    }

    /// The number of training timesteps.
    fn num_train_timesteps(&self) -> usize {
        self.noise_schedule().num_train_timesteps()
    }
}

/// Builds scheduler `kind` from a diffusers config dict (diffusers' `from_config`: keys the
/// class does not take are ignored, absent keys take the class's defaults).
pub fn build_scheduler(kind: SchedulerKind, config: &Value) -> Result<Box<dyn Scheduler>> {
    Ok(match kind {
        SchedulerKind::Ddim => Box::new(DdimScheduler::from_json(config)?),
        SchedulerKind::DdimInverse => Box::new(DdimScheduler::inverse_from_json(config)?),
        SchedulerKind::Pndm => Box::new(PndmScheduler::from_json(config)?),
        SchedulerKind::EulerDiscrete => Box::new(EulerDiscreteScheduler::from_json(config)?),
        SchedulerKind::DpmSolverMultistep => {
            Box::new(DpmSolverMultistepScheduler::from_json(config)?)
        }
        SchedulerKind::Lcm => Box::new(LcmScheduler::from_json(config)?),
    })
}

/// Builds the scheduler class named `class` (a diffusers class name such as
/// `"DDIMScheduler"`, or an alias accepted by [`SchedulerKind::from_name`]) from a diffusers
/// config dict, which may be another class's config (diffusers' `from_config` semantics).
pub fn scheduler_from_config(class: &str, config: &Value) -> Result<Box<dyn Scheduler>> {
    build_scheduler(SchedulerKind::from_name(class)?, config)
}

/// Builds the scheduler a model's `scheduler_config.json` names in its `_class_name`.
pub fn scheduler_from_model_config(config: &Value) -> Result<Box<dyn Scheduler>> {
    let class = config
        .get("_class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| SchedulerError::InvalidConfigValue {
            class: "scheduler_config.json".into(),
            key: "_class_name".into(),
            value: config
                .get("_class_name")
                .map_or("absent".into(), |v| v.to_string()),
            expected: "a scheduler class name string".into(),
        })?;
    scheduler_from_config(class, config)
}

/// The user-facing scheduler names of [`scheduler_by_name`].
pub const SCHEDULER_NAMES: [&str; 9] = [
    "ddim",
    "ddim-inverse",
    "pndm",
    "euler",
    "euler-karras",
    "dpm++2m",
    "dpm++2m-karras",
    "lcm",
    "model",
];

/// Builds a scheduler chosen by a user-facing name from a model's scheduler config:
/// a class name or alias ([`SchedulerKind::from_name`]), optionally with a `-karras` suffix
/// (Euler and DPM-Solver++: sets `use_karras_sigmas`), or `model` for the config's own
/// `_class_name`. `pndm` / `plms` always set `skip_prk_steps = true` (PLMS, the only mode
/// implemented, and what Stable Diffusion's PNDM configs use).
pub fn scheduler_by_name(name: &str, model_config: &Value) -> Result<Box<dyn Scheduler>> {
    let trimmed = name.trim();
    if trimmed.eq_ignore_ascii_case("model") {
        return scheduler_from_model_config(model_config);
    }
    let lower = trimmed.to_ascii_lowercase();
    let (base, karras) = match lower
        .strip_suffix("-karras")
        .or_else(|| lower.strip_suffix("_karras"))
    {
        Some(b) => (b, true),
        None => (lower.as_str(), false),
    };
    let kind = SchedulerKind::from_name(base).map_err(|_| SchedulerError::UnknownClass {
        name: name.to_string(),
        known: SCHEDULER_NAMES.join(", "),
    })?;
    let mut config = match model_config {
        Value::Object(map) => map.clone(),
        other => {
            return Err(SchedulerError::ConfigNotObject {
                class: kind.class_name().into(),
                found: other.to_string(),
            });
        }
    };
    if karras {
        if !matches!(
            kind,
            SchedulerKind::EulerDiscrete | SchedulerKind::DpmSolverMultistep
        ) {
            return Err(SchedulerError::UnknownClass {
                name: name.to_string(),
                known: SCHEDULER_NAMES.join(", "),
            });
        }
        config.insert("use_karras_sigmas".into(), Value::Bool(true));
    }
    if kind == SchedulerKind::Pndm {
        config.insert("skip_prk_steps".into(), Value::Bool(true));
    }
    build_scheduler(kind, &Value::Object(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sd1_ddim() -> Value {
        json!({
            "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "steps_offset": 1, "thresholding": false,
            "timestep_spacing": "leading", "prediction_type": "epsilon"
        })
    }

    #[test]
    fn any_class_builds_from_a_ddim_config() {
        for kind in SchedulerKind::ALL {
            let cfg = if kind == SchedulerKind::Pndm {
                let mut c = sd1_ddim();
                c["skip_prk_steps"] = json!(true);
                c
            } else {
                sd1_ddim()
            };
            let mut s = build_scheduler(kind, &cfg).unwrap();
            assert_eq!(s.kind(), kind);
            s.set_timesteps(10).unwrap();
            assert!(!s.timesteps().is_empty());
        }
    }

    /// The preview estimate inverts the forward process at the step's timestep, for the
    /// variance-preserving schedulers; Euler's sigma-scaled samples get none.
    #[test]
    fn predicted_original_sample_recovers_x0() {
        let device = burn::tensor::Device::default();
        let x0 = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(
                (0..16).map(|i| i as f32 / 8.0 - 1.0).collect(),
                [1, 1, 4, 4],
            ),
            &device,
        );
        let eps = x0.clone().flip([3]).mul_scalar(0.7);
        for name in ["ddim", "dpm++2m", "lcm", "pndm"] {
            let mut s = scheduler_by_name(name, &sd1_ddim()).unwrap();
            s.set_timesteps(4).unwrap();
            let t = s.timesteps()[1] as usize;
            let a = s.alphas_cumprod()[t] as f32;
            let xt = x0.clone().mul_scalar(a.sqrt()) + eps.clone().mul_scalar((1.0 - a).sqrt());
            let got = s.predict_original_sample(eps.clone(), 1, xt).unwrap();
            let err = (got - x0.clone()).abs().max().into_scalar::<f32>();
            assert!(err < 1e-5, "{name}: {err}");
        }
        let mut e = scheduler_by_name("euler", &sd1_ddim()).unwrap();
        e.set_timesteps(4).unwrap();
        assert!(e.predict_original_sample(eps.clone(), 0, x0).is_none());
    }

    #[test]
    fn names_select_karras_and_plms() {
        let mut s = scheduler_by_name("Euler-Karras", &sd1_ddim()).unwrap();
        assert_eq!(s.kind(), SchedulerKind::EulerDiscrete);
        s.set_timesteps(15).unwrap();
        // Karras timesteps are fractional.
        assert!(s.timesteps().iter().any(|t| t.fract() != 0.0));
        let mut p = scheduler_by_name("pndm", &sd1_ddim()).unwrap();
        p.set_timesteps(10).unwrap();
        assert_eq!(p.timesteps().len(), 11);
        let m = scheduler_by_name("model", &sd1_ddim()).unwrap();
        assert_eq!(m.kind(), SchedulerKind::Ddim);
        let e = scheduler_by_name("ddim-karras", &sd1_ddim()).err().unwrap();
        assert!(matches!(e, SchedulerError::UnknownClass { .. }));
        let e = scheduler_by_name("heun", &sd1_ddim()).err().unwrap();
        assert!(e.to_string().contains("euler-karras"), "{e}");
    }

    #[test]
    fn bad_values_are_typed_errors_naming_key_and_value() {
        let cases = [
            (
                "DDIMScheduler",
                json!({"beta_schedule": "cubic"}),
                "beta_schedule",
                "\"cubic\"",
            ),
            (
                "DDIMScheduler",
                json!({"timestep_spacing": "random"}),
                "timestep_spacing",
                "\"random\"",
            ),
            (
                "DDIMScheduler",
                json!({"prediction_type": "noise"}),
                "prediction_type",
                "\"noise\"",
            ),
            (
                "DDIMScheduler",
                json!({"thresholding": true}),
                "thresholding",
                "true",
            ),
            (
                "EulerDiscreteScheduler",
                json!({"use_beta_sigmas": true}),
                "use_beta_sigmas",
                "true",
            ),
            (
                "PNDMScheduler",
                json!({"skip_prk_steps": false}),
                "skip_prk_steps",
                "false",
            ),
        ];
        for (class, cfg, key, value) in cases {
            let e = scheduler_from_config(class, &cfg).err().unwrap();
            let msg = e.to_string();
            match &e {
                SchedulerError::UnsupportedConfig {
                    key: k,
                    value: v,
                    class: c,
                    ..
                } => {
                    assert_eq!(
                        (k.as_str(), v.as_str(), c.as_str()),
                        (key, value, class),
                        "{msg}"
                    );
                }
                other => panic!("unexpected error {other}"),
            }
            assert!(msg.contains(key) && msg.contains(value), "{msg}");
        }
        let e = scheduler_from_config("DDIMScheduler", &json!({"beta_start": "small"}))
            .err()
            .unwrap();
        assert!(
            matches!(e, SchedulerError::InvalidConfigValue { ref key, .. } if key == "beta_start"),
            "{e}"
        );
        let e = scheduler_from_config("DDIMScheduler", &json!({"clip_sample": 1}))
            .err()
            .unwrap();
        assert!(e.to_string().contains("`clip_sample` = 1"), "{e}");
        let e = scheduler_from_config("KDPM2", &json!({})).err().unwrap();
        assert!(matches!(e, SchedulerError::UnknownClass { .. }));
        let e = scheduler_from_model_config(&json!({"beta_start": 0.1}))
            .err()
            .unwrap();
        assert!(e.to_string().contains("_class_name"), "{e}");
    }

    #[test]
    fn stepping_before_set_timesteps_is_an_error() {
        let device = burn::tensor::Device::default();
        let x = Tensor::<4>::zeros([1, 1, 2, 2], &device);
        for kind in SchedulerKind::ALL {
            let cfg = json!({"skip_prk_steps": true});
            let mut s = build_scheduler(kind, &cfg).unwrap();
            let e = s.step(x.clone(), 0, x.clone()).err().unwrap();
            assert!(
                matches!(e, SchedulerError::TimestepsNotSet { .. }),
                "{kind}: {e}"
            );
            s.set_timesteps(3).unwrap();
            let len = s.timesteps().len();
            let e = s.scale_model_input(x.clone(), len).err().unwrap();
            assert!(
                matches!(e, SchedulerError::StepIndexOutOfRange { .. }),
                "{kind}: {e}"
            );
        }
    }

    /// diffusers' own configs (as `scheduler.config` and `scheduler_config.json` hold them,
    /// copied from the fixtures) read into each class's typed config with every value kept.
    #[test]
    fn diffusers_configs_parse_with_their_values() {
        let text = include_str!("../tests/data/diffusers_scheduler_configs.json");
        let entries = json::parse_python_json(text, "diffusers_scheduler_configs.json").unwrap();
        let entries = entries.as_array().unwrap();
        assert_eq!(entries.len(), 14);
        for entry in entries {
            let (class, cfg) = (entry["class"].as_str().unwrap(), &entry["config"]);
            let source = entry["source"].as_str().unwrap();
            let f = |k: &str| json::lenient_f64(&cfg[k]).unwrap();
            let s = |k: &str| cfg[k].as_str().unwrap();
            let b = |k: &str| cfg[k].as_bool().unwrap();
            let n = |k: &str| cfg[k].as_u64().unwrap() as usize;
            let check_betas = |betas: &BetaConfig| {
                assert_eq!(
                    betas.num_train_timesteps,
                    n("num_train_timesteps"),
                    "{source}"
                );
                assert_eq!(betas.beta_start, f("beta_start"), "{source}");
                assert_eq!(betas.beta_end, f("beta_end"), "{source}");
                assert_eq!(betas.beta_schedule.as_str(), s("beta_schedule"), "{source}");
                assert_eq!(betas.trained_betas, None, "{source}");
            };
            match SchedulerKind::from_name(class).unwrap() {
                kind @ (SchedulerKind::Ddim | SchedulerKind::DdimInverse) => {
                    let dir = if kind == SchedulerKind::Ddim {
                        DdimDirection::Sample
                    } else {
                        DdimDirection::Invert
                    };
                    let c = DdimConfig::read(cfg, dir).unwrap();
                    check_betas(&c.betas);
                    assert_eq!(c.betas.rescale_betas_zero_snr, b("rescale_betas_zero_snr"));
                    assert_eq!(c.clip_sample, b("clip_sample"), "{source}");
                    assert_eq!(c.clip_sample_range, f("clip_sample_range"), "{source}");
                    assert_eq!(c.set_alpha_to_one, b("set_alpha_to_one"), "{source}");
                    assert_eq!(c.steps_offset, n("steps_offset"), "{source}");
                    assert_eq!(c.prediction_type.as_str(), s("prediction_type"), "{source}");
                    assert_eq!(
                        c.timestep_spacing.as_str(),
                        s("timestep_spacing"),
                        "{source}"
                    );
                }
                SchedulerKind::Pndm => {
                    let c = PndmConfig::from_json(cfg).unwrap();
                    check_betas(&c.betas);
                    assert!(c.skip_prk_steps && b("skip_prk_steps"), "{source}");
                    assert_eq!(c.set_alpha_to_one, b("set_alpha_to_one"), "{source}");
                    assert_eq!(c.steps_offset, n("steps_offset"), "{source}");
                    assert_eq!(c.prediction_type.as_str(), s("prediction_type"), "{source}");
                    assert_eq!(
                        c.timestep_spacing.as_str(),
                        s("timestep_spacing"),
                        "{source}"
                    );
                }
                SchedulerKind::EulerDiscrete => {
                    let c = EulerConfig::from_json(cfg).unwrap();
                    check_betas(&c.betas);
                    assert_eq!(c.use_karras_sigmas, b("use_karras_sigmas"), "{source}");
                    assert_eq!(c.steps_offset, n("steps_offset"), "{source}");
                    assert_eq!(c.prediction_type.as_str(), s("prediction_type"), "{source}");
                    assert_eq!(
                        c.timestep_spacing.as_str(),
                        s("timestep_spacing"),
                        "{source}"
                    );
                    assert_eq!(c.sigma_min, cfg["sigma_min"].as_f64(), "{source}");
                    assert_eq!(c.sigma_max, cfg["sigma_max"].as_f64(), "{source}");
                }
                SchedulerKind::DpmSolverMultistep => {
                    let c = DpmSolverConfig::from_json(cfg).unwrap();
                    check_betas(&c.betas);
                    assert_eq!(c.solver_order, n("solver_order"), "{source}");
                    assert_eq!(c.use_karras_sigmas, b("use_karras_sigmas"), "{source}");
                    assert_eq!(c.lower_order_final, b("lower_order_final"), "{source}");
                    assert_eq!(c.euler_at_final, b("euler_at_final"), "{source}");
                    assert_eq!(c.lambda_min_clipped, f("lambda_min_clipped"), "{source}");
                    assert_eq!(c.steps_offset, n("steps_offset"), "{source}");
                    assert_eq!(c.prediction_type.as_str(), s("prediction_type"), "{source}");
                    assert_eq!(
                        c.timestep_spacing.as_str(),
                        s("timestep_spacing"),
                        "{source}"
                    );
                }
                SchedulerKind::Lcm => {
                    let c = LcmConfig::from_json(cfg).unwrap();
                    check_betas(&c.betas);
                    assert_eq!(c.prediction_type.as_str(), s("prediction_type"), "{source}");
                }
            }
            scheduler_from_config(class, cfg).unwrap();
        }
    }

    /// Absent keys take diffusers' defaults for each class.
    #[test]
    fn absent_keys_take_diffusers_defaults() {
        let empty = json!({});
        let ddim = DdimConfig::from_json(&empty).unwrap();
        assert_eq!(ddim, DdimConfig::default());
        assert_eq!(
            DdimConfig::read(&empty, DdimDirection::Invert).unwrap(),
            ddim
        );
        assert!(ddim.clip_sample && ddim.set_alpha_to_one && ddim.clip_sample_range == 1.0);
        assert_eq!(ddim.timestep_spacing, TimestepSpacing::Leading);
        let betas = &ddim.betas;
        assert_eq!(
            (betas.num_train_timesteps, betas.beta_start, betas.beta_end),
            (1000, 0.0001, 0.02)
        );
        assert_eq!(betas.beta_schedule, BetaSchedule::Linear);
        let pndm = PndmConfig::from_json(&json!({"skip_prk_steps": true})).unwrap();
        assert!(!pndm.set_alpha_to_one);
        assert_eq!(pndm.timestep_spacing, TimestepSpacing::Leading);
        let euler = EulerConfig::from_json(&empty).unwrap();
        assert_eq!(euler, EulerConfig::default());
        assert_eq!(euler.timestep_spacing, TimestepSpacing::Linspace);
        assert_eq!(euler.final_sigmas_type, FinalSigmasType::Zero);
        let dpm = DpmSolverConfig::from_json(&empty).unwrap();
        assert_eq!(dpm, DpmSolverConfig::default());
        assert_eq!((dpm.solver_order, dpm.lower_order_final), (2, true));
        assert_eq!(dpm.lambda_min_clipped, f64::NEG_INFINITY);
        assert_eq!(
            DdpmConfig::from_json(&empty).unwrap(),
            DdpmConfig::default()
        );
        // One key given, the rest defaulted.
        let c = EulerConfig::from_json(&json!({"steps_offset": 1})).unwrap();
        assert_eq!(
            c,
            EulerConfig {
                steps_offset: 1,
                ..EulerConfig::default()
            }
        );
    }
}
