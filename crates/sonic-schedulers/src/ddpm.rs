//! DDPM training helpers: the forward process (`add_noise`) and the v-prediction target
//! (`get_velocity`) of diffusers' `DDPMScheduler`, with one timestep per batch element.

use crate::config::{BetaConfig, PredictionType, parse};
use crate::error::{Result, SchedulerError};
use crate::schedule::NoiseSchedule;
use burn::tensor::{Tensor, TensorCreationOptions, TensorData};
use serde::Deserialize;
use serde_json::Value;

/// The config of [`DdpmSchedule`]: the keys of diffusers' `DDPMScheduler` that the training
/// helpers use. Sampling-only keys (`variance_type`, `clip_sample`, `thresholding`,
/// `timestep_spacing`, ...) do not affect `add_noise` / `get_velocity` and are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DdpmConfig {
    /// The training noise schedule (`linear`, `scaled_linear`, `squaredcos_cap_v2`,
    /// `sigmoid`, or `trained_betas`; `rescale_betas_zero_snr` honoured).
    #[serde(flatten)]
    pub betas: BetaConfig,
    /// `prediction_type` (default epsilon): which target [`DdpmSchedule::training_target`]
    /// returns.
    pub prediction_type: PredictionType,
}

impl Default for DdpmConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            betas: BetaConfig::default(),
            prediction_type: PredictionType::Epsilon,
        }
    }
}

impl DdpmConfig {
    /// Reads a diffusers config dict; absent keys take `DDPMScheduler`'s defaults.
    pub fn from_json(config: &Value) -> Result<Self> {
        let class = "DDPMScheduler";
        let (cfg, _): (Self, _) = parse(class, config)?;
        cfg.betas.validate(class)?;
        Ok(cfg)
    }
}

/// The training side of diffusers' `DDPMScheduler`: `alphas_cumprod`, `add_noise`,
/// `get_velocity`.
#[derive(Debug, Clone)]
pub struct DdpmSchedule {
    config: DdpmConfig,
    schedule: NoiseSchedule,
}

impl DdpmSchedule {
    /// Builds the schedule from its typed config.
    pub fn new(config: DdpmConfig) -> Self {
        Self {
            schedule: NoiseSchedule::new(&config.betas, config.prediction_type, false),
            config,
        }
    }

    /// Builds the schedule from a diffusers config dict (a `DDPMScheduler` config, or any
    /// scheduler's: only the beta keys and `prediction_type` are read).
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(DdpmConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &DdpmConfig {
        &self.config
    }

    /// The training noise schedule.
    pub fn noise_schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// ᾱ_t for every training timestep (float32 values, as diffusers computes them).
    pub fn alphas_cumprod(&self) -> &[f64] {
        self.schedule.alphas_cumprod()
    }

    /// The number of training timesteps.
    pub fn num_train_timesteps(&self) -> usize {
        self.schedule.num_train_timesteps()
    }

    /// What the model is trained to predict.
    pub fn prediction_type(&self) -> PredictionType {
        self.schedule.prediction_type()
    }

    /// Per-batch-element `(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))` as `[B, 1, 1, 1]` tensors on the
    /// device and in the dtype of `like`.
    fn coefficients(
        &self,
        like: &Tensor<4>,
        timesteps: &[usize],
    ) -> Result<(Tensor<4>, Tensor<4>)> {
        let dims = like.dims();
        if timesteps.len() != dims[0] {
            return Err(SchedulerError::ShapeMismatch {
                what: "timesteps (one per batch element)".into(),
                expected: vec![dims[0]],
                found: vec![timesteps.len()],
            });
        }
        let mut sqrt_alpha = Vec::with_capacity(timesteps.len());
        let mut sqrt_one_minus = Vec::with_capacity(timesteps.len());
        for &t in timesteps {
            let a = *self.schedule.alphas_cumprod().get(t).ok_or(
                SchedulerError::TimestepOutOfRange {
                    timestep: t,
                    num_train_timesteps: self.schedule.alphas_cumprod().len(),
                },
            )? as f32;
            sqrt_alpha.push(a.sqrt());
            sqrt_one_minus.push((1.0f32 - a).sqrt());
        }
        let shape = [timesteps.len(), 1, 1, 1];
        let options = TensorCreationOptions::new(like.device()).with_dtype(like.dtype());
        let make = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, shape), options.clone());
        Ok((make(sqrt_alpha), make(sqrt_one_minus)))
    }

    /// The forward process: `sqrt(ᾱ_t) · clean + sqrt(1 - ᾱ_t) · noise`, with `timesteps[b]`
    /// for batch element `b`.
    pub fn add_noise(
        &self,
        clean: Tensor<4>,
        noise: Tensor<4>,
        timesteps: &[usize],
    ) -> Result<Tensor<4>> {
        crate::common::check_same_shape("noise vs clean", &clean, &noise)?;
        let (a, s) = self.coefficients(&clean, timesteps)?;
        Ok(a.mul(clean).add(s.mul(noise)))
    }

    /// The v-prediction target: `sqrt(ᾱ_t) · noise - sqrt(1 - ᾱ_t) · sample`.
    pub fn get_velocity(
        &self,
        sample: Tensor<4>,
        noise: Tensor<4>,
        timesteps: &[usize],
    ) -> Result<Tensor<4>> {
        crate::common::check_same_shape("noise vs sample", &sample, &noise)?;
        let (a, s) = self.coefficients(&sample, timesteps)?;
        Ok(a.mul(noise).sub(s.mul(sample)))
    }

    /// The training target for the configured prediction type: the noise (epsilon), the
    /// velocity (v_prediction) or the clean sample (sample).
    pub fn training_target(
        &self,
        clean: Tensor<4>,
        noise: Tensor<4>,
        timesteps: &[usize],
    ) -> Result<Tensor<4>> {
        match self.config.prediction_type {
            PredictionType::Epsilon => {
                crate::common::check_same_shape("noise vs clean", &clean, &noise)?;
                Ok(noise)
            }
            PredictionType::VPrediction => self.get_velocity(clean, noise, timesteps),
            PredictionType::Sample => {
                crate::common::check_same_shape("noise vs clean", &clean, &noise)?;
                Ok(clean)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_noise_checks_timesteps() {
        let s = DdpmSchedule::from_json(&json!({})).unwrap();
        let device = burn::tensor::Device::default();
        let x = Tensor::<4>::ones([2, 1, 2, 2], &device);
        let e = s.add_noise(x.clone(), x.clone(), &[1]).unwrap_err();
        assert!(matches!(e, SchedulerError::ShapeMismatch { .. }), "{e}");
        let e = s.add_noise(x.clone(), x.clone(), &[1, 1000]).unwrap_err();
        assert!(
            matches!(e, SchedulerError::TimestepOutOfRange { timestep: 1000, .. }),
            "{e}"
        );
        // t = 0 keeps almost all of the signal: sqrt(1 - 1e-4) + sqrt(1e-4).
        let y = s.add_noise(x.clone(), x, &[0, 0]).unwrap();
        let v = sonic_core::fixtures::to_host(&y).unwrap();
        let expect = (1.0f32 - 0.0001).sqrt() + 0.0001f32.sqrt();
        assert!(v.iter().all(|&a| (a - expect).abs() < 1e-6), "{v:?}");
    }

    #[test]
    fn sigmoid_schedule_is_allowed_for_ddpm_only() {
        assert!(DdpmSchedule::from_json(&json!({"beta_schedule": "sigmoid"})).is_ok());
        let e =
            crate::ddim::DdimConfig::from_json(&json!({"beta_schedule": "sigmoid"})).unwrap_err();
        assert!(
            matches!(e, SchedulerError::UnsupportedConfig { ref key, .. } if key == "beta_schedule")
        );
    }
}
