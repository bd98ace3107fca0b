//! `PNDMScheduler` in PLMS mode (`skip_prk_steps = true`), Stable Diffusion 1.x's default.

use crate::common::{alpha_at, check_step, check_steps, to_f64};
use crate::config::{
    BetaConfig, PredictionType, SchedulerKind, TimestepSpacing, lenient, parse, unsupported,
};
use crate::error::{Result, SchedulerError};
use crate::tables::{np_arange, np_linspace, np_round};
use crate::{NoiseSchedule, Scheduler};
use burn::tensor::Tensor;
use serde::Deserialize;
use serde_json::Value;

/// The config of [`PndmScheduler`] (diffusers' `PNDMScheduler` keys and defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct PndmConfig {
    /// The training noise schedule (PNDM takes no `rescale_betas_zero_snr`).
    #[serde(flatten)]
    pub betas: BetaConfig,
    /// `skip_prk_steps`: must be true here (the Runge-Kutta warm-up is not implemented).
    /// diffusers' default is false, so a config without the key is rejected; Stable
    /// Diffusion's PNDM configs set it to true.
    #[serde(deserialize_with = "lenient::flag")]
    pub skip_prk_steps: bool,
    /// `set_alpha_to_one` (default false).
    #[serde(deserialize_with = "lenient::flag")]
    pub set_alpha_to_one: bool,
    /// `prediction_type` (default epsilon; epsilon or v_prediction).
    pub prediction_type: PredictionType,
    /// `timestep_spacing` (default leading).
    pub timestep_spacing: TimestepSpacing,
    /// `steps_offset` (default 0).
    #[serde(deserialize_with = "lenient::count")]
    pub steps_offset: usize,
}

impl Default for PndmConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            betas: BetaConfig::default(),
            skip_prk_steps: false,
            set_alpha_to_one: false,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
        }
    }
}

impl PndmConfig {
    /// Reads a diffusers config dict; absent keys take `PNDMScheduler`'s defaults.
    pub fn from_json(config: &Value) -> Result<Self> {
        let class = SchedulerKind::Pndm.class_name();
        let (mut cfg, _): (Self, _) = parse(class, config)?;
        if !cfg.skip_prk_steps {
            return Err(unsupported(
                class,
                "skip_prk_steps",
                &Value::Bool(false),
                "the PRK (Runge-Kutta) warm-up steps are not implemented; only PLMS \
                 (skip_prk_steps = true, as Stable Diffusion's configs set) is supported \
                 (an absent key means false, diffusers' default)",
            ));
        }
        // PNDMScheduler takes no `rescale_betas_zero_snr`: another class's value is ignored.
        cfg.betas.rescale_betas_zero_snr = false;
        cfg.betas.validate(class)?;
        Ok(cfg)
    }
}

/// diffusers' `PNDMScheduler` with `skip_prk_steps = true`: pseudo linear multistep (PLMS).
///
/// Its schedule has `n + 1` entries with the second timestep repeated: step 0 is an Euler-like
/// step, step 1 revisits the same timestep to average the first two model outputs, and later
/// steps use up to four past outputs. The history (`ets`) lives in the scheduler; stepping
/// index 0 starts a fresh loop, and later steps must come in order.
#[derive(Debug, Clone)]
pub struct PndmScheduler {
    config: PndmConfig,
    schedule: NoiseSchedule,
    final_alpha_cumprod: f32,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
    ets: Vec<Tensor<4>>,
    counter: usize,
    cur_sample: Option<Tensor<4>>,
    last_index: Option<usize>,
}

impl PndmScheduler {
    /// Builds the scheduler from its typed config.
    pub fn new(config: PndmConfig) -> Self {
        let schedule = NoiseSchedule::new(&config.betas, config.prediction_type, false);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod()[0] as f32
        };
        Self {
            schedule,
            final_alpha_cumprod,
            config,
            num_inference_steps: 0,
            timesteps: Vec::new(),
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
            last_index: None,
        }
    }

    /// Builds the scheduler from a diffusers config dict.
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(PndmConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &PndmConfig {
        &self.config
    }

    /// diffusers' `_get_prev_sample` (formula (9) of the PNDM paper), float32 scalars.
    fn prev_sample(
        &self,
        sample: Tensor<4>,
        t: i64,
        prev_t: i64,
        model_output: Tensor<4>,
    ) -> Result<Tensor<4>> {
        let alpha_t = alpha_at(self.schedule.alphas_cumprod(), t, self.final_alpha_cumprod)?;
        let alpha_prev = alpha_at(
            self.schedule.alphas_cumprod(),
            prev_t,
            self.final_alpha_cumprod,
        )?;
        let beta_t = 1.0f32 - alpha_t;
        let beta_prev = 1.0f32 - alpha_prev;
        let model_output = match self.config.prediction_type {
            PredictionType::VPrediction => model_output
                .mul_scalar(alpha_t.sqrt())
                .add(sample.clone().mul_scalar(beta_t.sqrt())),
            _ => model_output,
        };
        let sample_coeff = (alpha_prev / alpha_t).sqrt();
        let denom = alpha_t * beta_prev.sqrt() + (alpha_t * beta_t * alpha_prev).sqrt();
        Ok(sample.mul_scalar(sample_coeff).sub(
            model_output
                .mul_scalar(alpha_prev - alpha_t)
                .div_scalar(denom),
        ))
    }
}

impl Scheduler for PndmScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Pndm
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let num_train = self.config.betas.num_train_timesteps;
        let n = num_inference_steps;
        check_steps(self.kind().class_name(), n, num_train)?;
        // Ascending base timesteps.
        let base: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
                .into_iter()
                .map(|t| np_round(t) as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (num_train / n) as i64;
                (0..n as i64)
                    .map(|i| i * ratio + self.config.steps_offset as i64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = num_train as f64 / n as f64;
                np_arange(num_train as f64, 0.0, -ratio)
                    .into_iter()
                    .rev()
                    .map(|t| np_round(t) as i64 - 1)
                    .collect()
            }
        };
        // PLMS: base[:-1] ++ base[-2:-1] ++ base[-1:], reversed.
        let mut plms: Vec<i64> = Vec::with_capacity(base.len() + 1);
        if let Some((&last, head)) = base.split_last() {
            plms.extend_from_slice(head);
            if let Some(&second_last) = head.last() {
                plms.push(second_last);
            }
            plms.push(last);
        }
        plms.reverse();
        self.timesteps = to_f64(&plms);
        self.num_inference_steps = n;
        self.reset();
        tracing::debug!(class = "PNDMScheduler", steps = n, "set_timesteps");
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
        let class = self.kind().class_name();
        check_step(class, step_index, &self.timesteps, &sample, &model_output)?;
        if step_index == 0 {
            self.reset();
        } else if let Some(last) = self.last_index
            && step_index != last + 1
        {
            return Err(SchedulerError::StepOutOfOrder {
                class: class.to_string(),
                expected: last + 1,
                got: step_index,
            });
        }
        let ratio = (self.config.betas.num_train_timesteps / self.num_inference_steps) as i64;
        let mut t = self.timesteps[step_index] as i64;
        let mut prev_t = t - ratio;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                self.ets.drain(..self.ets.len() - 3);
            }
            self.ets.push(model_output.clone());
        } else {
            prev_t = t;
            t += ratio;
        }
        let mut sample = sample;
        let n_ets = self.ets.len();
        let combined = if n_ets == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.clone());
            model_output
        } else if n_ets == 1 && self.counter == 1 {
            if let Some(cur) = self.cur_sample.take() {
                sample = cur;
            }
            model_output.add(self.ets[0].clone()).div_scalar(2.0f32)
        } else if n_ets == 2 {
            self.ets[1]
                .clone()
                .mul_scalar(3.0f32)
                .sub(self.ets[0].clone())
                .div_scalar(2.0f32)
        } else if n_ets == 3 {
            self.ets[2]
                .clone()
                .mul_scalar(23.0f32)
                .sub(self.ets[1].clone().mul_scalar(16.0f32))
                .add(self.ets[0].clone().mul_scalar(5.0f32))
                .div_scalar(12.0f32)
        } else {
            self.ets[n_ets - 1]
                .clone()
                .mul_scalar(55.0f32)
                .sub(self.ets[n_ets - 2].clone().mul_scalar(59.0f32))
                .add(self.ets[n_ets - 3].clone().mul_scalar(37.0f32))
                .sub(self.ets[n_ets - 4].clone().mul_scalar(9.0f32))
                .mul_scalar((1.0f64 / 24.0) as f32)
        };
        let prev = self.prev_sample(sample, t, prev_t, combined)?;
        self.counter += 1;
        self.last_index = Some(step_index);
        Ok(prev)
    }

    fn reset(&mut self) {
        self.ets.clear();
        self.counter = 0;
        self.cur_sample = None;
        self.last_index = None;
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
    fn plms_schedule_repeats_the_second_timestep() {
        let mut s =
            PndmScheduler::from_json(&json!({"skip_prk_steps": true, "steps_offset": 1})).unwrap();
        s.set_timesteps(5).unwrap();
        assert_eq!(s.timesteps(), &[801.0, 601.0, 601.0, 401.0, 201.0, 1.0]);
    }

    #[test]
    fn prk_mode_is_rejected_naming_the_key() {
        let e = PndmScheduler::from_json(&json!({})).unwrap_err();
        assert!(
            matches!(e, SchedulerError::UnsupportedConfig { ref key, ref value, .. }
                if key == "skip_prk_steps" && value == "false"),
            "{e}"
        );
        assert!(e.to_string().contains("PNDMScheduler"), "{e}");
    }

    #[test]
    fn pndm_rejects_sample_prediction() {
        let e =
            PndmScheduler::from_json(&json!({"skip_prk_steps": true, "prediction_type": "sample"}))
                .unwrap_err();
        assert!(
            matches!(e, SchedulerError::UnsupportedConfig { ref key, .. } if key == "prediction_type"),
            "{e}"
        );
    }
}
