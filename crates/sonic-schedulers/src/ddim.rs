//! `DDIMScheduler` (deterministic, eta = 0) and `DDIMInverseScheduler`.

use crate::Scheduler;
use crate::common::{alpha_at, check_index, check_same_shape, predict_x0_eps, to_f64};
use crate::config::{
    BetaConfig, ConfigReader, PredictionType, SchedulerKind, TimestepSpacing, read_prediction_type,
    read_spacing, reject_true,
};
use crate::error::{Result, SchedulerError};
use crate::tables::{alphas_cumprod_f32, np_arange, np_linspace, np_round};
use burn::tensor::Tensor;
use serde_json::Value;

/// The config of [`DdimScheduler`] (diffusers' `DDIMScheduler` keys and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DdimConfig {
    /// The training noise schedule.
    pub betas: BetaConfig,
    /// `clip_sample` (default true): clamp the predicted x0 to `±clip_sample_range`.
    pub clip_sample: bool,
    /// `clip_sample_range` (default 1.0).
    pub clip_sample_range: f64,
    /// `set_alpha_to_one` (default true): ᾱ before the first training step is 1, else ᾱ₀.
    pub set_alpha_to_one: bool,
    /// `steps_offset` (default 0), added to `leading` timesteps.
    pub steps_offset: usize,
    /// `prediction_type` (default epsilon; epsilon, sample, v_prediction).
    pub prediction_type: PredictionType,
    /// `timestep_spacing` (default leading).
    pub timestep_spacing: TimestepSpacing,
}

impl DdimConfig {
    /// Reads a diffusers config dict; absent keys take `DDIMScheduler`'s defaults.
    /// `thresholding = true` is rejected (dynamic thresholding is not implemented).
    pub fn from_json(config: &Value) -> Result<Self> {
        let r = ConfigReader::new(SchedulerKind::Ddim.class_name(), config)?;
        reject_true(
            &r,
            "thresholding",
            "dynamic thresholding is not implemented (SD latents do not use it)",
        )?;
        Ok(Self {
            betas: BetaConfig::read(&r, false, true)?,
            clip_sample: r.bool("clip_sample", true)?,
            clip_sample_range: r.f64("clip_sample_range", 1.0)?,
            set_alpha_to_one: r.bool("set_alpha_to_one", true)?,
            steps_offset: r.usize("steps_offset", 0)?,
            prediction_type: read_prediction_type(&r, &["epsilon", "sample", "v_prediction"])?,
            timestep_spacing: read_spacing(
                &r,
                "leading",
                &[
                    TimestepSpacing::Leading,
                    TimestepSpacing::Trailing,
                    TimestepSpacing::Linspace,
                ],
            )?,
        })
    }
}

/// The config of [`DdimInverseScheduler`] (diffusers' `DDIMInverseScheduler` keys and
/// defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DdimInverseConfig {
    /// The training noise schedule.
    pub betas: BetaConfig,
    /// `clip_sample` (default true).
    pub clip_sample: bool,
    /// `clip_sample_range` (default 1.0).
    pub clip_sample_range: f64,
    /// `set_alpha_to_one` (default true; the deprecated `set_alpha_to_zero` overrides it, as in
    /// diffusers): ᾱ before the first training step is 1, else ᾱ₀.
    pub set_alpha_to_one: bool,
    /// `steps_offset` (default 0).
    pub steps_offset: usize,
    /// `prediction_type` (default epsilon; epsilon, sample, v_prediction).
    pub prediction_type: PredictionType,
    /// `timestep_spacing` (default leading; leading or trailing).
    pub timestep_spacing: TimestepSpacing,
}

impl DdimInverseConfig {
    /// Reads a diffusers config dict; absent keys take `DDIMInverseScheduler`'s defaults.
    pub fn from_json(config: &Value) -> Result<Self> {
        let r = ConfigReader::new(SchedulerKind::DdimInverse.class_name(), config)?;
        let mut set_alpha_to_one = r.bool("set_alpha_to_one", true)?;
        if r.raw("set_alpha_to_zero").is_some() {
            set_alpha_to_one = r.bool("set_alpha_to_zero", false)?;
        }
        Ok(Self {
            betas: BetaConfig::read(&r, false, true)?,
            clip_sample: r.bool("clip_sample", true)?,
            clip_sample_range: r.f64("clip_sample_range", 1.0)?,
            set_alpha_to_one,
            steps_offset: r.usize("steps_offset", 0)?,
            prediction_type: read_prediction_type(&r, &["epsilon", "sample", "v_prediction"])?,
            timestep_spacing: read_spacing(
                &r,
                "leading",
                &[TimestepSpacing::Leading, TimestepSpacing::Trailing],
            )?,
        })
    }
}

fn check_steps(class: &str, n: usize, num_train: usize) -> Result<()> {
    if n == 0 || n > num_train {
        return Err(SchedulerError::InvalidStepCount {
            class: class.to_string(),
            steps: n,
            max: num_train,
        });
    }
    Ok(())
}

/// DDIM's descending integer timesteps (diffusers' `DDIMScheduler.set_timesteps`).
fn ddim_timesteps(spacing: TimestepSpacing, n: usize, num_train: usize, offset: usize) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
            .into_iter()
            .rev()
            .map(|t| np_round(t) as i64)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = (num_train / n) as i64;
            (0..n as i64)
                .rev()
                .map(|i| i * ratio + offset as i64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            np_arange(num_train as f64, 0.0, -ratio)
                .into_iter()
                .map(|t| np_round(t) as i64 - 1)
                .collect()
        }
    }
}

/// diffusers' `DDIMScheduler` with eta = 0: deterministic DDIM sampling.
///
/// The previous timestep is always `t - num_train_timesteps / n` (integer division), whatever
/// the spacing, as in diffusers.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    config: DdimConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f32,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
}

impl DdimScheduler {
    /// Builds the scheduler from its typed config.
    pub fn new(config: DdimConfig) -> Self {
        let ac = alphas_cumprod_f32(&config.betas);
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { ac[0] };
        Self {
            alphas_cumprod: ac.iter().map(|&a| a as f64).collect(),
            final_alpha_cumprod,
            config,
            num_inference_steps: 0,
            timesteps: Vec::new(),
        }
    }

    /// Builds the scheduler from a diffusers config dict.
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(DdimConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &DdimConfig {
        &self.config
    }
}

impl Scheduler for DdimScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Ddim
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let num_train = self.config.betas.num_train_timesteps;
        check_steps(self.kind().class_name(), num_inference_steps, num_train)?;
        let ts = ddim_timesteps(
            self.config.timestep_spacing,
            num_inference_steps,
            num_train,
            self.config.steps_offset,
        );
        self.timesteps = to_f64(&ts);
        self.num_inference_steps = num_inference_steps;
        tracing::debug!(
            class = "DDIMScheduler",
            steps = num_inference_steps,
            "set_timesteps"
        );
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Result<Tensor<4>> {
        check_index(
            self.kind().class_name(),
            "scale_model_input",
            step_index,
            self.timesteps.len(),
        )?;
        Ok(sample)
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
    ) -> Result<Tensor<4>> {
        let class = self.kind().class_name();
        check_index(class, "step", step_index, self.timesteps.len())?;
        check_same_shape("model_output vs sample", &sample, &model_output)?;
        let t = self.timesteps[step_index] as i64;
        let ratio = (self.config.betas.num_train_timesteps / self.num_inference_steps) as i64;
        let prev_t = t - ratio;
        let alpha_t = alpha_at(&self.alphas_cumprod, t, self.final_alpha_cumprod)?;
        let alpha_prev = alpha_at(&self.alphas_cumprod, prev_t, self.final_alpha_cumprod)?;
        let (mut x0, eps) =
            predict_x0_eps(self.config.prediction_type, sample, model_output, alpha_t);
        if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            x0 = x0.clamp(-r, r);
        }
        // eta = 0: std_dev_t = 0.
        let direction = eps.mul_scalar((1.0f32 - alpha_prev - 0.0).sqrt());
        Ok(x0.mul_scalar(alpha_prev.sqrt()).add(direction))
    }

    fn order(&self) -> usize {
        1
    }

    fn reset(&mut self) {}

    fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    fn prediction_type(&self) -> PredictionType {
        self.config.prediction_type
    }

    fn num_train_timesteps(&self) -> usize {
        self.config.betas.num_train_timesteps
    }
}

/// diffusers' `DDIMInverseScheduler`: runs DDIM backwards, from clean latents towards noise.
///
/// Its timesteps ascend; step `i` moves the sample from `t_i - num_train_timesteps / n` up to
/// `t_i`.
#[derive(Debug, Clone)]
pub struct DdimInverseScheduler {
    config: DdimInverseConfig,
    alphas_cumprod: Vec<f64>,
    initial_alpha_cumprod: f32,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
}

impl DdimInverseScheduler {
    /// Builds the scheduler from its typed config.
    pub fn new(config: DdimInverseConfig) -> Self {
        let ac = alphas_cumprod_f32(&config.betas);
        let initial_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { ac[0] };
        Self {
            alphas_cumprod: ac.iter().map(|&a| a as f64).collect(),
            initial_alpha_cumprod,
            config,
            num_inference_steps: 0,
            timesteps: Vec::new(),
        }
    }

    /// Builds the scheduler from a diffusers config dict.
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(DdimInverseConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &DdimInverseConfig {
        &self.config
    }
}

impl Scheduler for DdimInverseScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::DdimInverse
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let num_train = self.config.betas.num_train_timesteps;
        check_steps(self.kind().class_name(), num_inference_steps, num_train)?;
        let n = num_inference_steps;
        let ts: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Trailing => {
                let ratio = num_train as f64 / n as f64;
                np_arange(num_train as f64, 0.0, -ratio)
                    .into_iter()
                    .rev()
                    .map(|t| np_round(t) as i64 - 1)
                    .collect()
            }
            // Leading (linspace is rejected when the config is read).
            _ => {
                let ratio = (num_train / n) as i64;
                (0..n as i64)
                    .map(|i| i * ratio + self.config.steps_offset as i64)
                    .collect()
            }
        };
        self.timesteps = to_f64(&ts);
        self.num_inference_steps = n;
        tracing::debug!(class = "DDIMInverseScheduler", steps = n, "set_timesteps");
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Result<Tensor<4>> {
        check_index(
            self.kind().class_name(),
            "scale_model_input",
            step_index,
            self.timesteps.len(),
        )?;
        Ok(sample)
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
    ) -> Result<Tensor<4>> {
        let class = self.kind().class_name();
        check_index(class, "step", step_index, self.timesteps.len())?;
        check_same_shape("model_output vs sample", &sample, &model_output)?;
        let num_train = self.config.betas.num_train_timesteps as i64;
        let prev_t = self.timesteps[step_index] as i64;
        let ratio = num_train / self.num_inference_steps as i64;
        let t = (prev_t - ratio).min(num_train - 1);
        let alpha_t = alpha_at(&self.alphas_cumprod, t, self.initial_alpha_cumprod)?;
        let alpha_prev = alpha_at(&self.alphas_cumprod, prev_t, self.initial_alpha_cumprod)?;
        let (mut x0, eps) =
            predict_x0_eps(self.config.prediction_type, sample, model_output, alpha_t);
        if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            x0 = x0.clamp(-r, r);
        }
        let direction = eps.mul_scalar((1.0f32 - alpha_prev).sqrt());
        Ok(x0.mul_scalar(alpha_prev.sqrt()).add(direction))
    }

    fn order(&self) -> usize {
        1
    }

    fn reset(&mut self) {}

    fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    fn prediction_type(&self) -> PredictionType {
        self.config.prediction_type
    }

    fn num_train_timesteps(&self) -> usize {
        self.config.betas.num_train_timesteps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ddim_timesteps_follow_each_spacing() {
        assert_eq!(
            ddim_timesteps(TimestepSpacing::Leading, 10, 1000, 1),
            vec![901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
        );
        assert_eq!(
            ddim_timesteps(TimestepSpacing::Trailing, 10, 1000, 1),
            vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
        );
        assert_eq!(
            ddim_timesteps(TimestepSpacing::Linspace, 4, 1000, 0),
            vec![999, 666, 333, 0]
        );
    }

    #[test]
    fn inverse_rejects_linspace_and_reads_set_alpha_to_zero() {
        let e = DdimInverseConfig::from_json(&json!({"timestep_spacing": "linspace"})).unwrap_err();
        assert!(
            matches!(e, SchedulerError::UnsupportedConfig { ref key, .. } if key == "timestep_spacing"),
            "{e}"
        );
        assert!(e.to_string().contains("leading, trailing"), "{e}");
        let c = DdimInverseConfig::from_json(
            &json!({"set_alpha_to_one": true, "set_alpha_to_zero": false}),
        )
        .unwrap();
        assert!(!c.set_alpha_to_one);
    }

    #[test]
    fn too_many_steps_is_an_error() {
        let mut s = DdimScheduler::from_json(&json!({})).unwrap();
        let e = s.set_timesteps(1001).unwrap_err();
        assert!(matches!(
            e,
            SchedulerError::InvalidStepCount {
                steps: 1001,
                max: 1000,
                ..
            }
        ));
        let e = s.set_timesteps(0).unwrap_err();
        assert!(matches!(
            e,
            SchedulerError::InvalidStepCount { steps: 0, .. }
        ));
    }
}
