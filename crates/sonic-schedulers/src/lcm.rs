//! `LCMScheduler`: multistep Latent Consistency Model sampling (Luo et al. 2023), for LCM
//! distilled models and LCM-LoRA.
//!
//! Each step turns the model output into a consistency estimate of the clean sample
//! (`denoised = c_out x0 + c_skip x_t`, the boundary conditions of a consistency model) and,
//! before every step but the last, re-noises it to the next timestep with fresh Gaussian
//! noise. The noise is drawn on the host from the scheduler's seed
//! ([`sonic_core::noise::seeded_normal`], stream `step + 1`), so a seed gives the same picture
//! on every device; [`LcmScheduler::step_with_noise`] takes the noise from the caller instead.

use crate::common::{alpha_at, check_step, check_steps, predict_x0_eps, to_f64};
use crate::config::{BetaConfig, BetaSchedule, PredictionType, SchedulerKind, lenient, parse};
use crate::error::{Result, SchedulerError};
use crate::{NoiseSchedule, Scheduler};
use burn::tensor::Tensor;
use serde::Deserialize;
use serde_json::Value;

/// The config of [`LcmScheduler`] (diffusers' `LCMScheduler` keys and defaults). Keys that
/// do not change LCM's math (`timestep_spacing`, `steps_offset`) are accepted and ignored,
/// as diffusers ignores them; `thresholding = true` is rejected.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LcmConfig {
    /// The training noise schedule (LCM's defaults: SD's scaled-linear 0.00085 .. 0.012).
    #[serde(flatten)]
    pub betas: BetaConfig,
    /// `original_inference_steps` (default 50): the length of the distillation schedule the
    /// inference timesteps are taken from.
    #[serde(deserialize_with = "lenient::count")]
    pub original_inference_steps: usize,
    /// `clip_sample` (default false): clamp the predicted x0 to `±clip_sample_range`.
    #[serde(deserialize_with = "lenient::flag")]
    pub clip_sample: bool,
    /// `clip_sample_range` (default 1.0).
    #[serde(deserialize_with = "lenient::float")]
    pub clip_sample_range: f64,
    /// `set_alpha_to_one` (default true): ᾱ before the first training step is 1, else ᾱ₀.
    #[serde(deserialize_with = "lenient::flag")]
    pub set_alpha_to_one: bool,
    /// `prediction_type` (default epsilon; epsilon, sample, v_prediction).
    pub prediction_type: PredictionType,
    /// `timestep_scaling` (default 10.0): the factor of the timestep in the boundary
    /// conditions.
    #[serde(deserialize_with = "lenient::float")]
    pub timestep_scaling: f64,
}

impl Default for LcmConfig {
    /// diffusers' defaults for `LCMScheduler`.
    fn default() -> Self {
        Self {
            betas: lcm_betas(),
            original_inference_steps: 50,
            clip_sample: false,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            prediction_type: PredictionType::Epsilon,
            timestep_scaling: 10.0,
        }
    }
}

/// `LCMScheduler`'s default betas (which differ from the other classes').
fn lcm_betas() -> BetaConfig {
    BetaConfig {
        beta_start: 0.00085,
        beta_end: 0.012,
        beta_schedule: BetaSchedule::ScaledLinear,
        ..BetaConfig::default()
    }
}

impl LcmConfig {
    /// Reads a diffusers config dict; absent keys take `LCMScheduler`'s defaults.
    pub fn from_json(config: &Value) -> Result<Self> {
        let class = SchedulerKind::Lcm.class_name();
        let (mut cfg, keys): (Self, _) = parse(class, config)?;
        // The flattened betas take BetaConfig's defaults for absent keys; LCM's differ.
        let lcm = lcm_betas();
        if !keys.contains_key("beta_start") {
            cfg.betas.beta_start = lcm.beta_start;
        }
        if !keys.contains_key("beta_end") {
            cfg.betas.beta_end = lcm.beta_end;
        }
        if !keys.contains_key("beta_schedule") {
            cfg.betas.beta_schedule = lcm.beta_schedule;
        }
        cfg.betas.validate(class)?;
        if cfg.original_inference_steps == 0
            || cfg.original_inference_steps > cfg.betas.num_train_timesteps
        {
            return Err(crate::config::invalid(
                class,
                "original_inference_steps",
                &Value::from(cfg.original_inference_steps),
                &format!(
                    "between 1 and num_train_timesteps = {}",
                    cfg.betas.num_train_timesteps
                ),
            ));
        }
        if !cfg.timestep_scaling.is_finite() {
            return Err(crate::config::invalid(
                class,
                "timestep_scaling",
                &Value::from(cfg.timestep_scaling),
                "a finite number",
            ));
        }
        Ok(cfg)
    }
}

/// LCM's inference timesteps: `n` indices evenly spread (floored) over the distillation
/// schedule `k - 1, 2k - 1, ..., original * k - 1` (`k = num_train / original`), descending.
fn lcm_timesteps(n: usize, original: usize, num_train: usize) -> Result<Vec<i64>> {
    let class = SchedulerKind::Lcm.class_name();
    check_steps(class, n, num_train)?;
    if n > original {
        return Err(SchedulerError::InvalidStepCount {
            class: class.to_string(),
            steps: n,
            max: original,
            limit: "original_inference_steps".into(),
        });
    }
    let k = (num_train / original) as i64;
    let origin: Vec<i64> = (1..=original as i64).rev().map(|i| i * k - 1).collect();
    let len = origin.len() as f64;
    // numpy's linspace(0, len, n, endpoint=False): start + i * step, step = len / n.
    let step = len / n as f64;
    Ok((0..n)
        .map(|i| origin[((i as f64) * step).floor() as usize])
        .collect())
}

/// What one LCM step gives.
#[derive(Debug, Clone)]
pub struct LcmStepOutput {
    /// The sample at the next timestep (diffusers' `prev_sample`): `denoised` re-noised, or
    /// `denoised` itself after the last step.
    pub prev_sample: Tensor<4>,
    /// The consistency estimate of the clean sample (after the boundary conditions).
    pub denoised: Tensor<4>,
}

/// diffusers' `LCMScheduler`: few-step sampling for LCM distilled models and LCM-LoRA.
#[derive(Debug, Clone)]
pub struct LcmScheduler {
    config: LcmConfig,
    schedule: NoiseSchedule,
    final_alpha_cumprod: f32,
    timesteps: Vec<f64>,
    seed: u64,
}

impl LcmScheduler {
    /// A scheduler from its typed config, drawing step noise from seed 0 until
    /// [`Scheduler::set_noise_seed`] sets another.
    pub fn new(config: LcmConfig) -> Self {
        let schedule = NoiseSchedule::new(&config.betas, config.prediction_type, false);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod()[0] as f32
        };
        Self {
            config,
            schedule,
            final_alpha_cumprod,
            timesteps: Vec::new(),
            seed: 0,
        }
    }

    /// A scheduler from a diffusers config dict (`LCMScheduler`'s keys).
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(LcmConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &LcmConfig {
        &self.config
    }

    /// The boundary-condition scalings `(c_skip, c_out)` at timestep `t` (float32, as
    /// diffusers computes them from the integer timestep tensor).
    pub fn boundary_scalings(&self, t: i64) -> (f32, f32) {
        let sigma_data_sq = 0.25f32;
        let scaled = t as f32 * self.config.timestep_scaling as f32;
        let denom = scaled * scaled + sigma_data_sq;
        (sigma_data_sq / denom, scaled / denom.sqrt())
    }

    /// Whether step `step_index` re-noises its estimate (every step but the last).
    pub fn step_adds_noise(&self, step_index: usize) -> bool {
        step_index + 1 < self.timesteps.len()
    }

    /// One step with the caller's `noise` (needed unless it is the last step; ignored on the
    /// last step), returning the next sample and the clean estimate.
    pub fn step_with_noise(
        &self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
        noise: Option<Tensor<4>>,
    ) -> Result<LcmStepOutput> {
        let class = self.kind().class_name();
        check_step(class, step_index, &self.timesteps, &sample, &model_output)?;
        let t = self.timesteps[step_index] as i64;
        let prev_t = self.timesteps.get(step_index + 1).map_or(t, |&p| p as i64);
        let ac = self.schedule.alphas_cumprod();
        let alpha_t = alpha_at(ac, t, self.final_alpha_cumprod)?;
        let alpha_prev = alpha_at(ac, prev_t, self.final_alpha_cumprod)?;
        let (c_skip, c_out) = self.boundary_scalings(t);
        let (mut x0, _) = predict_x0_eps(
            self.config.prediction_type,
            sample.clone(),
            model_output,
            alpha_t,
        );
        if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            x0 = x0.clamp(-r, r);
        }
        let denoised = x0.mul_scalar(c_out).add(sample.mul_scalar(c_skip));
        if !self.step_adds_noise(step_index) {
            return Ok(LcmStepOutput {
                prev_sample: denoised.clone(),
                denoised,
            });
        }
        let noise = noise.ok_or_else(|| SchedulerError::NoiseRequired {
            class: class.to_string(),
            index: step_index,
        })?;
        crate::common::check_same_shape("noise vs sample", &denoised, &noise)?;
        let prev_sample = denoised
            .clone()
            .mul_scalar(alpha_prev.sqrt())
            .add(noise.mul_scalar((1.0f32 - alpha_prev).sqrt()));
        Ok(LcmStepOutput {
            prev_sample,
            denoised,
        })
    }
}

impl Scheduler for LcmScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Lcm
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let ts = lcm_timesteps(
            num_inference_steps,
            self.config.original_inference_steps,
            self.config.betas.num_train_timesteps,
        )?;
        self.timesteps = to_f64(&ts);
        tracing::debug!(
            class = "LCMScheduler",
            steps = num_inference_steps,
            "set_timesteps"
        );
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
    ) -> Result<Tensor<4>> {
        let noise = self.step_adds_noise(step_index).then(|| {
            sonic_core::noise::seeded_normal(
                sample.dims(),
                self.seed,
                step_index as u64 + 1,
                &sample.device(),
            )
        });
        Ok(self
            .step_with_noise(model_output, step_index, sample, noise)?
            .prev_sample)
    }

    fn set_noise_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    fn noise_schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timesteps_follow_diffusers() {
        assert_eq!(lcm_timesteps(4, 50, 1000).unwrap(), [999, 759, 499, 259]);
        assert_eq!(
            lcm_timesteps(8, 50, 1000).unwrap(),
            [999, 879, 759, 639, 499, 379, 259, 139]
        );
        assert_eq!(lcm_timesteps(1, 50, 1000).unwrap(), [999]);
        assert_eq!(lcm_timesteps(50, 50, 1000).unwrap().last(), Some(&19));
        let e = lcm_timesteps(51, 50, 1000).unwrap_err();
        assert!(e.to_string().contains("original_inference_steps"), "{e}");
        assert!(lcm_timesteps(0, 50, 1000).is_err());
    }

    #[test]
    fn defaults_are_lcm_s_and_bad_values_are_named() {
        let c = LcmConfig::from_json(&json!({})).unwrap();
        assert_eq!(c, LcmConfig::default());
        let c = LcmConfig::from_json(&json!({"beta_start": 0.001})).unwrap();
        assert_eq!(c.betas.beta_end, 0.012);
        assert_eq!(c.betas.beta_schedule, BetaSchedule::ScaledLinear);
        let e = LcmConfig::from_json(&json!({"thresholding": true})).unwrap_err();
        assert!(e.to_string().contains("thresholding"), "{e}");
        let e = LcmConfig::from_json(&json!({"original_inference_steps": 0})).unwrap_err();
        assert!(e.to_string().contains("original_inference_steps"), "{e}");
    }

    #[test]
    fn last_step_needs_no_noise_and_others_do() {
        let device = burn::tensor::Device::default();
        let mut s = LcmScheduler::from_json(&json!({})).unwrap();
        s.set_timesteps(2).unwrap();
        let x = Tensor::<4>::ones([1, 1, 2, 2], &device);
        let e = s
            .step_with_noise(x.clone(), 0, x.clone(), None)
            .unwrap_err();
        assert!(
            matches!(e, SchedulerError::NoiseRequired { index: 0, .. }),
            "{e}"
        );
        let out = s.step_with_noise(x.clone(), 1, x.clone(), None).unwrap();
        out.prev_sample
            .into_data()
            .assert_eq(&out.denoised.into_data(), true);
        // The seeded path: the same seed gives the same step, another seed another.
        let a = s.step(x.clone(), 0, x.clone()).unwrap().into_data();
        let b = s.step(x.clone(), 0, x.clone()).unwrap().into_data();
        s.set_noise_seed(5);
        let c = s.step(x.clone(), 0, x.clone()).unwrap().into_data();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
