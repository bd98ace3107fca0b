//! `EulerDiscreteScheduler` (Karras et al.'s Algorithm 2 without churn).

use crate::common::{check_index, check_step, check_steps};
use crate::config::{
    BetaConfig, FinalSigmasType, PredictionType, SchedulerKind, TimestepSpacing, lenient, parse,
    unsupported,
};
use crate::error::Result;
use crate::tables::{
    karras_sigmas, ln_f32, np_arange, np_interp_index, np_linspace, np_round, sigma_to_t,
    train_sigmas_f32,
};
use crate::{NoiseSchedule, Scheduler};
use burn::tensor::Tensor;
use serde::Deserialize;
use serde_json::Value;

/// The config of [`EulerDiscreteScheduler`] (diffusers' `EulerDiscreteScheduler` keys and
/// defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct EulerConfig {
    /// The training noise schedule.
    #[serde(flatten)]
    pub betas: BetaConfig,
    /// `prediction_type` (default epsilon; epsilon, v_prediction, sample / original_sample).
    pub prediction_type: PredictionType,
    /// `use_karras_sigmas` (default false). `use_exponential_sigmas` and `use_beta_sigmas`
    /// are rejected.
    #[serde(deserialize_with = "lenient::flag")]
    pub use_karras_sigmas: bool,
    /// `sigma_min` (default none: the schedule's own smallest sigma), for Karras sigmas.
    #[serde(deserialize_with = "lenient::opt_float")]
    pub sigma_min: Option<f64>,
    /// `sigma_max` (default none: the schedule's own largest sigma), for Karras sigmas.
    #[serde(deserialize_with = "lenient::opt_float")]
    pub sigma_max: Option<f64>,
    /// `timestep_spacing` (default linspace).
    pub timestep_spacing: TimestepSpacing,
    /// `steps_offset` (default 0).
    #[serde(deserialize_with = "lenient::count")]
    pub steps_offset: usize,
    /// `final_sigmas_type` (default zero).
    pub final_sigmas_type: FinalSigmasType,
}

impl Default for EulerConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            betas: BetaConfig::default(),
            prediction_type: PredictionType::Epsilon,
            use_karras_sigmas: false,
            sigma_min: None,
            sigma_max: None,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            final_sigmas_type: FinalSigmasType::Zero,
        }
    }
}

impl EulerConfig {
    /// Reads a diffusers config dict; absent keys take `EulerDiscreteScheduler`'s defaults.
    /// Only `interpolation_type = "linear"` is supported, and `timestep_type = "continuous"`
    /// is rejected with v-prediction (where it changes the timesteps).
    pub fn from_json(config: &Value) -> Result<Self> {
        let class = SchedulerKind::EulerDiscrete.class_name();
        let (cfg, keys): (Self, _) = parse(class, config)?;
        if let Some(v) = keys.get("timestep_type")
            && v == "continuous"
            && cfg.prediction_type == PredictionType::VPrediction
        {
            return Err(unsupported(
                class,
                "timestep_type",
                v,
                "continuous timesteps (0.25 log sigma) with v_prediction are not implemented",
            ));
        }
        cfg.betas.validate(class)?;
        Ok(cfg)
    }
}

/// diffusers' `EulerDiscreteScheduler` without churn (`s_churn = 0`): the deterministic
/// Euler method on the probability-flow ODE in sigma space.
///
/// Latents start at `init_noise_sigma` times unit noise; the model input is scaled by
/// `1 / sqrt(sigma² + 1)` ([`Scheduler::scale_model_input`]). With Karras sigmas the timesteps
/// handed to the model are fractional.
#[derive(Debug, Clone)]
pub struct EulerDiscreteScheduler {
    config: EulerConfig,
    schedule: NoiseSchedule,
    /// float32 `((1 - ᾱ) / ᾱ) ** 0.5` per training timestep.
    train_sigmas: Vec<f32>,
    /// float32 natural logs of `train_sigmas`.
    log_sigmas: Vec<f32>,
    /// float32 inference sigmas, one more than the timesteps.
    sigmas: Vec<f32>,
    timesteps: Vec<f64>,
}

impl EulerDiscreteScheduler {
    /// Builds the scheduler from its typed config.
    pub fn new(config: EulerConfig) -> Self {
        let schedule = NoiseSchedule::new(&config.betas, config.prediction_type, true);
        let ac = schedule.alphas_cumprod_f32();
        let train_sigmas = train_sigmas_f32(&ac);
        let log_sigmas = ln_f32(&train_sigmas);
        // Before set_timesteps: the full training schedule, descending, then 0.
        let mut sigmas: Vec<f32> = train_sigmas.iter().rev().copied().collect();
        sigmas.push(0.0);
        Self {
            schedule,
            train_sigmas,
            log_sigmas,
            sigmas,
            timesteps: Vec::new(),
            config,
        }
    }

    /// Builds the scheduler from a diffusers config dict.
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(EulerConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &EulerConfig {
        &self.config
    }

    /// The float32 inference sigmas (one more than the timesteps, the last the final sigma).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }
}

impl Scheduler for EulerDiscreteScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::EulerDiscrete
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let num_train = self.config.betas.num_train_timesteps;
        let n = num_inference_steps;
        check_steps(self.kind().class_name(), n, num_train)?;
        // float32 timesteps, descending.
        let timesteps32: Vec<f32> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (num_train - 1) as f64, n)
                .into_iter()
                .rev()
                .map(|t| t as f32)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = num_train / n;
                (0..n)
                    .rev()
                    .map(|i| (i * ratio) as f32 + self.config.steps_offset as f32)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = num_train as f64 / n as f64;
                np_arange(num_train as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| np_round(t) as f32 - 1.0)
                    .collect()
            }
        };
        let table: Vec<f64> = self.train_sigmas.iter().map(|&s| s as f64).collect();
        let mut sigmas: Vec<f64> = timesteps32
            .iter()
            .map(|&t| np_interp_index(t as f64, &table))
            .collect();
        let mut timesteps: Vec<f64> = timesteps32.iter().map(|&t| t as f64).collect();
        if self.config.use_karras_sigmas {
            let sigma_min = self
                .config
                .sigma_min
                .unwrap_or_else(|| sigmas.last().copied().unwrap_or(0.0));
            let sigma_max = self
                .config
                .sigma_max
                .unwrap_or_else(|| sigmas.first().copied().unwrap_or(0.0));
            sigmas = karras_sigmas(sigma_min, sigma_max, n);
            timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &self.log_sigmas) as f32 as f64)
                .collect();
        }
        let sigma_last = match self.config.final_sigmas_type {
            FinalSigmasType::Zero => 0.0f32,
            FinalSigmasType::SigmaMin => {
                let a0 = self.schedule.alphas_cumprod()[0] as f32;
                ((1.0 - a0) / a0).sqrt()
            }
        };
        let mut sigmas32: Vec<f32> = sigmas.iter().map(|&s| s as f32).collect();
        sigmas32.push(sigma_last);
        self.sigmas = sigmas32;
        self.timesteps = timesteps;
        tracing::debug!(class = "EulerDiscreteScheduler", steps = n, "set_timesteps");
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// The largest sigma (linspace / trailing spacing) or `sqrt(max sigma² + 1)` (leading),
    /// in float32 as diffusers computes it.
    fn init_noise_sigma(&self) -> f64 {
        let max = self
            .sigmas
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        match self.config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max as f64,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt() as f64,
        }
    }

    fn scale_model_input(&self, sample: Tensor<4>, step_index: usize) -> Result<Tensor<4>> {
        check_index(
            self.kind().class_name(),
            "scale_model_input",
            step_index,
            self.timesteps.len(),
        )?;
        let sigma = self.sigmas[step_index];
        Ok(sample.div_scalar((sigma * sigma + 1.0).sqrt()))
    }

    fn step(
        &mut self,
        model_output: Tensor<4>,
        step_index: usize,
        sample: Tensor<4>,
    ) -> Result<Tensor<4>> {
        let class = self.kind().class_name();
        check_step(class, step_index, &self.timesteps, &sample, &model_output)?;
        let sigma = self.sigmas[step_index];
        // No churn: gamma = 0, sigma_hat = sigma.
        let sigma_hat = sigma * (0.0f32 + 1.0);
        let x0 = match self.config.prediction_type {
            PredictionType::Sample => model_output,
            PredictionType::Epsilon => sample.clone().sub(model_output.mul_scalar(sigma_hat)),
            PredictionType::VPrediction => {
                let c_out = -sigma / (sigma * sigma + 1.0).sqrt();
                model_output
                    .mul_scalar(c_out)
                    .add(sample.clone().div_scalar(sigma * sigma + 1.0))
            }
        };
        let derivative = sample.clone().sub(x0).div_scalar(sigma_hat);
        let dt = self.sigmas[step_index + 1] - sigma_hat;
        Ok(sample.add(derivative.mul_scalar(dt)))
    }

    fn noise_schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SchedulerError;
    use serde_json::json;

    #[test]
    fn exotic_sigma_spacings_are_rejected() {
        for key in ["use_exponential_sigmas", "use_beta_sigmas"] {
            let e = EulerConfig::from_json(&json!({ key: true })).unwrap_err();
            assert!(
                matches!(e, SchedulerError::UnsupportedConfig { key: ref k, ref value, .. }
                    if k == key && value == "true"),
                "{e}"
            );
        }
        let e = EulerConfig::from_json(&json!({"interpolation_type": "log_linear"})).unwrap_err();
        assert!(
            e.to_string()
                .contains("`interpolation_type` = \"log_linear\""),
            "{e}"
        );
        let e = EulerConfig::from_json(&json!({"final_sigmas_type": "max"})).unwrap_err();
        assert!(e.to_string().contains("final_sigmas_type"), "{e}");
        let e = EulerConfig::from_json(
            &json!({"timestep_type": "continuous", "prediction_type": "v_prediction"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("timestep_type"), "{e}");
    }

    #[test]
    fn sigma_min_final_sigma_is_the_smallest_training_sigma() {
        let mut s =
            EulerDiscreteScheduler::from_json(&json!({"final_sigmas_type": "sigma_min"})).unwrap();
        s.set_timesteps(10).unwrap();
        assert_eq!(s.sigmas().len(), 11);
        assert_eq!(s.sigmas()[10], s.train_sigmas[0]);
        // The first sigma (t = 999 with linspace spacing) is the largest training sigma.
        assert_eq!(s.sigmas()[0], s.train_sigmas[999]);
        assert_eq!(s.init_noise_sigma(), s.train_sigmas[999] as f64);
    }
}
