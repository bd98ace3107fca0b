//! `DPMSolverMultistepScheduler` as DPM-Solver++ (2M): `algorithm_type = "dpmsolver++"`,
//! `solver_type = "midpoint"`, solver order 1 or 2.

use crate::common::{check_step, check_steps};
use crate::config::{
    BetaConfig, BetaSchedule, FinalSigmasType, PredictionType, SchedulerKind, TimestepSpacing,
    invalid, lenient, parse, unsupported,
};
use crate::error::{Result, SchedulerError};
use crate::tables::{
    karras_sigmas, ln_f32, np_arange, np_interp_index, np_linspace, np_round, sigma_to_t,
    train_sigmas_f32,
};
use crate::{NoiseSchedule, Scheduler};
use burn::tensor::Tensor;
use serde::Deserialize;
use serde_json::Value;

/// The config of [`DpmSolverMultistepScheduler`] (diffusers' `DPMSolverMultistepScheduler`
/// keys and defaults, restricted to what is implemented).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DpmSolverConfig {
    /// The training noise schedule.
    #[serde(flatten)]
    pub betas: BetaConfig,
    /// `solver_order` (default 2; 1 or 2 supported).
    #[serde(deserialize_with = "lenient::count")]
    pub solver_order: usize,
    /// `prediction_type` (default epsilon; epsilon, sample, v_prediction).
    pub prediction_type: PredictionType,
    /// `lower_order_final` (default true): first/second-order final steps below 15 steps.
    #[serde(deserialize_with = "lenient::flag")]
    pub lower_order_final: bool,
    /// `euler_at_final` (default false): a first-order last step.
    #[serde(deserialize_with = "lenient::flag")]
    pub euler_at_final: bool,
    /// `use_karras_sigmas` (default false).
    #[serde(deserialize_with = "lenient::flag")]
    pub use_karras_sigmas: bool,
    /// `final_sigmas_type` (default zero).
    pub final_sigmas_type: FinalSigmasType,
    /// `lambda_min_clipped` (default -inf): clips the smallest log-SNR of the schedule.
    #[serde(deserialize_with = "lenient::float")]
    pub lambda_min_clipped: f64,
    /// `timestep_spacing` (default linspace).
    pub timestep_spacing: TimestepSpacing,
    /// `steps_offset` (default 0).
    #[serde(deserialize_with = "lenient::count")]
    pub steps_offset: usize,
}

impl Default for DpmSolverConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            betas: BetaConfig::default(),
            solver_order: 2,
            prediction_type: PredictionType::Epsilon,
            lower_order_final: true,
            euler_at_final: false,
            use_karras_sigmas: false,
            final_sigmas_type: FinalSigmasType::Zero,
            lambda_min_clipped: f64::NEG_INFINITY,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
        }
    }
}

impl DpmSolverConfig {
    /// Reads a diffusers config dict; absent keys take `DPMSolverMultistepScheduler`'s
    /// defaults. Rejected: `algorithm_type` other than `dpmsolver++` (or `deis`, which diffusers
    /// maps to it), `solver_type = "heun"`, `solver_order` other than 1 or 2,
    /// `thresholding`, `variance_type` learned / learned_range, exponential / beta / Lu
    /// lambda / flow sigmas, `prediction_type = "flow_prediction"`.
    pub fn from_json(config: &Value) -> Result<Self> {
        let class = SchedulerKind::DpmSolverMultistep.class_name();
        let (cfg, keys): (Self, _) = parse(class, config)?;
        if !(1..=2).contains(&cfg.solver_order) {
            let v = keys.get("solver_order").cloned().unwrap_or(Value::Null);
            return Err(unsupported(
                class,
                "solver_order",
                &v,
                "only orders 1 and 2 (DPM-Solver++ 2M) are implemented",
            ));
        }
        if cfg.lambda_min_clipped.is_nan() {
            return Err(invalid(
                class,
                "lambda_min_clipped",
                &Value::String("NaN".into()),
                "a number or -Infinity",
            ));
        }
        cfg.betas.validate(class)?;
        Ok(cfg)
    }
}

/// `(alpha_t, sigma_t)` of a Karras sigma, float32 (`alpha = 1 / sqrt(sigma² + 1)`).
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0f32 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// The log-SNR `log(alpha) - log(sigma)`, float32.
fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

/// diffusers' `DPMSolverMultistepScheduler` as DPM-Solver++ 2M (multistep, midpoint).
///
/// The model's x0 predictions of the last steps live in the scheduler; stepping index 0 starts
/// a fresh loop, and later steps must come in order. A loop may also begin at a later index
/// (as img2img does): it then starts with a first-order step, as diffusers does.
#[derive(Debug, Clone)]
pub struct DpmSolverMultistepScheduler {
    config: DpmSolverConfig,
    schedule: NoiseSchedule,
    train_sigmas: Vec<f32>,
    log_sigmas: Vec<f32>,
    /// float32 log-SNR per training timestep.
    lambda_t: Vec<f32>,
    sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    /// The last `solver_order` converted model outputs (x0 predictions), oldest first.
    model_outputs: Vec<Tensor<4>>,
    lower_order_nums: usize,
    last_index: Option<usize>,
}

impl DpmSolverMultistepScheduler {
    /// Builds the scheduler from its typed config.
    pub fn new(config: DpmSolverConfig) -> Self {
        let schedule = NoiseSchedule::new(&config.betas, config.prediction_type, true);
        let ac = schedule.alphas_cumprod_f32();
        let train_sigmas = train_sigmas_f32(&ac);
        let log_sigmas = ln_f32(&train_sigmas);
        let lambda_t = ac
            .iter()
            .map(|&a| lambda(a.sqrt(), (1.0 - a).sqrt()))
            .collect();
        Self {
            schedule,
            sigmas: train_sigmas.clone(),
            train_sigmas,
            log_sigmas,
            lambda_t,
            timesteps: Vec::new(),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
            last_index: None,
            config,
        }
    }

    /// Builds the scheduler from a diffusers config dict.
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(DpmSolverConfig::from_json(config)?))
    }

    /// The typed config.
    pub fn config(&self) -> &DpmSolverConfig {
        &self.config
    }

    /// The float32 inference sigmas (one more than the timesteps, the last the final sigma).
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// diffusers' `convert_model_output` for dpmsolver++: the x0 prediction.
    fn convert_model_output(
        &self,
        model_output: Tensor<4>,
        sample: Tensor<4>,
        step_index: usize,
    ) -> Tensor<4> {
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[step_index]);
        match self.config.prediction_type {
            PredictionType::Epsilon => sample
                .sub(model_output.mul_scalar(sigma_t))
                .div_scalar(alpha_t),
            PredictionType::Sample => model_output,
            PredictionType::VPrediction => sample
                .mul_scalar(alpha_t)
                .sub(model_output.mul_scalar(sigma_t)),
        }
    }
}

impl Scheduler for DpmSolverMultistepScheduler {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::DpmSolverMultistep
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let num_train = self.config.betas.num_train_timesteps;
        let n = num_inference_steps;
        check_steps(self.kind().class_name(), n, num_train)?;
        // searchsorted(flip(lambda_t), lambda_min_clipped), side left.
        let clipped_idx = self
            .lambda_t
            .iter()
            .rev()
            .take_while(|&&l| (l as f64) < self.config.lambda_min_clipped)
            .count();
        let last_timestep = num_train - clipped_idx;
        let mut timesteps: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => {
                let v = np_linspace(0.0, last_timestep as f64 - 1.0, n + 1);
                v.into_iter()
                    .rev()
                    .take(n)
                    .map(|t| np_round(t) as i64)
                    .collect()
            }
            TimestepSpacing::Leading => {
                let ratio = (last_timestep / (n + 1)) as i64;
                (1..=n as i64)
                    .rev()
                    .map(|i| i * ratio + self.config.steps_offset as i64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = num_train as f64 / n as f64;
                np_arange(last_timestep as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| np_round(t) as i64 - 1)
                    .collect()
            }
        };
        let table: Vec<f64> = self.train_sigmas.iter().map(|&s| s as f64).collect();
        let sigmas: Vec<f64> = if self.config.use_karras_sigmas {
            // in_sigmas = flip(table): max first.
            let sigma_min = table.first().copied().unwrap_or(0.0);
            let sigma_max = table.last().copied().unwrap_or(0.0);
            let sigmas = karras_sigmas(sigma_min, sigma_max, n);
            let squaredcos = self.config.betas.trained_betas.is_none()
                && self.config.betas.beta_schedule == BetaSchedule::SquaredCosCapV2;
            timesteps = sigmas
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &self.log_sigmas);
                    // Rounded, except for squaredcos_cap_v2 where the int64 cast truncates.
                    if squaredcos {
                        t.trunc() as i64
                    } else {
                        np_round(t) as i64
                    }
                })
                .collect();
            sigmas
        } else {
            timesteps
                .iter()
                .map(|&t| np_interp_index(t as f64, &table))
                .collect()
        };
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
        self.timesteps = timesteps.iter().map(|&t| t as f64).collect();
        self.reset();
        tracing::debug!(
            class = "DPMSolverMultistepScheduler",
            steps = n,
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
        let class = self.kind().class_name();
        let len = self.timesteps.len();
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
        let cfg = &self.config;
        let lower_order_final = step_index == len - 1
            && (cfg.euler_at_final
                || (cfg.lower_order_final && len < 15)
                || cfg.final_sigmas_type == FinalSigmasType::Zero);
        let x0 = self.convert_model_output(model_output, sample.clone(), step_index);
        self.model_outputs.push(x0.clone());
        if self.model_outputs.len() > cfg.solver_order {
            self.model_outputs.remove(0);
        }

        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[step_index + 1]);
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[step_index]);
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let phi = alpha_t * ((-h).exp() - 1.0);

        let first_order = cfg.solver_order == 1 || self.lower_order_nums < 1 || lower_order_final;
        let prev = if first_order || self.model_outputs.len() < 2 || step_index == 0 {
            // x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) x0
            sample
                .mul_scalar(sigma_t / sigma_s0)
                .sub(x0.mul_scalar(phi))
        } else {
            let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[step_index - 1]);
            let lambda_s1 = lambda(alpha_s1, sigma_s1);
            let h_0 = lambda_s0 - lambda_s1;
            let r0 = h_0 / h;
            let m0 = x0;
            let m1 = self.model_outputs[self.model_outputs.len() - 2].clone();
            let d1 = m0.clone().sub(m1).mul_scalar(1.0f32 / r0);
            sample
                .mul_scalar(sigma_t / sigma_s0)
                .sub(m0.mul_scalar(phi))
                .sub(d1.mul_scalar(0.5f32 * phi))
        };
        if self.lower_order_nums < cfg.solver_order {
            self.lower_order_nums += 1;
        }
        self.last_index = Some(step_index);
        Ok(prev)
    }

    fn reset(&mut self) {
        self.model_outputs.clear();
        self.lower_order_nums = 0;
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
    fn unsupported_dpm_variants_name_key_and_value() {
        let cases = [
            (
                json!({"algorithm_type": "sde-dpmsolver++"}),
                "algorithm_type",
                "\"sde-dpmsolver++\"",
            ),
            (json!({"solver_type": "heun"}), "solver_type", "\"heun\""),
            (json!({"solver_order": 3}), "solver_order", "3"),
            (json!({"thresholding": true}), "thresholding", "true"),
            (json!({"use_lu_lambdas": true}), "use_lu_lambdas", "true"),
            (
                json!({"variance_type": "learned_range"}),
                "variance_type",
                "\"learned_range\"",
            ),
            (
                json!({"prediction_type": "flow_prediction"}),
                "prediction_type",
                "\"flow_prediction\"",
            ),
            (
                json!({"final_sigmas_type": "denoise"}),
                "final_sigmas_type",
                "\"denoise\"",
            ),
        ];
        for (cfg, key, value) in cases {
            let e = DpmSolverConfig::from_json(&cfg).unwrap_err();
            match &e {
                SchedulerError::UnsupportedConfig {
                    key: k,
                    value: v,
                    class,
                    ..
                } => {
                    assert_eq!(k, key);
                    assert_eq!(v, value);
                    assert_eq!(class, "DPMSolverMultistepScheduler");
                }
                other => panic!("{key}: unexpected {other}"),
            }
        }
        // deis and bh2 are read as dpmsolver++ / midpoint, as diffusers does.
        assert!(
            DpmSolverConfig::from_json(&json!({"algorithm_type": "deis", "solver_type": "bh2"}))
                .is_ok()
        );
    }

    #[test]
    fn lambda_min_clipped_shortens_the_schedule() {
        let mut s =
            DpmSolverMultistepScheduler::from_json(&json!({"lambda_min_clipped": -3.0})).unwrap();
        s.set_timesteps(10).unwrap();
        let first = s.timesteps()[0] as usize;
        let mut plain = DpmSolverMultistepScheduler::from_json(&json!({})).unwrap();
        plain.set_timesteps(10).unwrap();
        assert_eq!(plain.timesteps()[0], 999.0);
        assert!(first < 900, "{first}");
        // The schedule starts at the last training timestep whose log-SNR is not below the
        // clip.
        assert!(s.lambda_t[first] as f64 >= -3.0, "{}", s.lambda_t[first]);
        assert!(
            (s.lambda_t[first + 1] as f64) < -3.0,
            "{}",
            s.lambda_t[first + 1]
        );
    }

    #[test]
    fn stepping_out_of_order_is_an_error() {
        let device = burn::tensor::Device::default();
        let mut s = DpmSolverMultistepScheduler::from_json(&json!({})).unwrap();
        s.set_timesteps(5).unwrap();
        let x = Tensor::<4>::ones([1, 1, 2, 2], &device);
        let x = s.step(x.clone(), 0, x).unwrap();
        let e = s.step(x.clone(), 2, x).unwrap_err();
        assert!(
            matches!(
                e,
                SchedulerError::StepOutOfOrder {
                    expected: 1,
                    got: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
}
