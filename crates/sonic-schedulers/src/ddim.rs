//! `DDIMScheduler` (deterministic, eta = 0) and `DDIMInverseScheduler`, one type with a
//! direction.

use crate::common::{alpha_at, check_step, check_steps, predict_x0_eps, to_f64};
use crate::config::{
    BetaConfig, PredictionType, SchedulerKind, TimestepSpacing, invalid, lenient, parse,
};
use crate::error::Result;
use crate::tables::{np_arange, np_linspace, np_round};
use crate::{NoiseSchedule, Scheduler};
use burn::tensor::Tensor;
use serde::Deserialize;
use serde_json::Value;

/// Which way a [`DdimScheduler`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdimDirection {
    /// diffusers' `DDIMScheduler`: from noise towards clean latents (timesteps descend).
    Sample,
    /// diffusers' `DDIMInverseScheduler`: from clean latents towards noise (timesteps ascend;
    /// step `i` moves the sample from `t_i - num_train_timesteps / n` up to `t_i`).
    Invert,
}

impl DdimDirection {
    /// The diffusers class that runs this way.
    pub fn kind(self) -> SchedulerKind {
        match self {
            DdimDirection::Sample => SchedulerKind::Ddim,
            DdimDirection::Invert => SchedulerKind::DdimInverse,
        }
    }
}

/// Where a [`DdimScheduler`] step's other end lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DdimStepRule {
    /// `t ∓ num_train_timesteps / n` (integer division), as diffusers' `DDIMScheduler` and
    /// `DDIMInverseScheduler`; the inverse's timesteps are its own (leading or trailing).
    #[default]
    Ratio,
    /// The neighbouring timestep of the sampling schedule: inverting runs the sampler's own
    /// timesteps (any spacing) backwards and step `i` starts from the level of timestep
    /// `i - 1` (the edge ᾱ before the first), as pnp-diffusers' `ddim_inversion`; sampling
    /// steps to the next timestep of the list (the edge ᾱ after the last).
    Schedule,
}

/// The config of [`DdimScheduler`] (the keys and defaults of diffusers' `DDIMScheduler`, which
/// `DDIMInverseScheduler` shares; [`DdimConfig::read`] reads either class).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DdimConfig {
    /// The training noise schedule.
    #[serde(flatten)]
    pub betas: BetaConfig,
    /// `clip_sample` (default true): clamp the predicted x0 to `±clip_sample_range`.
    #[serde(deserialize_with = "lenient::flag")]
    pub clip_sample: bool,
    /// `clip_sample_range` (default 1.0).
    #[serde(deserialize_with = "lenient::float")]
    pub clip_sample_range: f64,
    /// `set_alpha_to_one` (default true): ᾱ outside the table (before the first training
    /// step) is 1, else ᾱ₀. For the inverse, the deprecated `set_alpha_to_zero` overrides it,
    /// as in diffusers.
    #[serde(deserialize_with = "lenient::flag")]
    pub set_alpha_to_one: bool,
    /// `steps_offset` (default 0), added to `leading` timesteps.
    #[serde(deserialize_with = "lenient::count")]
    pub steps_offset: usize,
    /// `prediction_type` (default epsilon; epsilon, sample, v_prediction).
    pub prediction_type: PredictionType,
    /// `timestep_spacing` (default leading; the inverse takes leading or trailing only).
    pub timestep_spacing: TimestepSpacing,
}

impl Default for DdimConfig {
    /// diffusers' defaults (the same for both classes).
    fn default() -> Self {
        Self {
            betas: BetaConfig::default(),
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            steps_offset: 0,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Leading,
        }
    }
}

impl DdimConfig {
    /// Reads a diffusers config dict; absent keys take `DDIMScheduler`'s defaults.
    /// `thresholding = true` is rejected (dynamic thresholding is not implemented).
    pub fn from_json(config: &Value) -> Result<Self> {
        Self::read(config, DdimDirection::Sample)
    }

    /// Reads a diffusers config dict for the class that runs in `direction` (its keys and
    /// defaults).
    pub fn read(config: &Value, direction: DdimDirection) -> Result<Self> {
        let class = direction.kind().class_name();
        let (mut cfg, keys): (Self, _) = parse(class, config)?;
        if direction == DdimDirection::Invert
            && let Some(v) = keys.get("set_alpha_to_zero").filter(|v| !v.is_null())
        {
            cfg.set_alpha_to_one = v
                .as_bool()
                .ok_or_else(|| invalid(class, "set_alpha_to_zero", v, "a boolean"))?;
        }
        cfg.betas.validate(class)?;
        Ok(cfg)
    }
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

/// `DDIMInverseScheduler`'s ascending integer timesteps (linspace is rejected when its config
/// is read).
fn inverse_timesteps(
    spacing: TimestepSpacing,
    n: usize,
    num_train: usize,
    offset: usize,
) -> Vec<i64> {
    match spacing {
        TimestepSpacing::Trailing => {
            let ratio = num_train as f64 / n as f64;
            np_arange(num_train as f64, 0.0, -ratio)
                .into_iter()
                .rev()
                .map(|t| np_round(t) as i64 - 1)
                .collect()
        }
        _ => {
            let ratio = (num_train / n) as i64;
            (0..n as i64).map(|i| i * ratio + offset as i64).collect()
        }
    }
}

/// DDIM with eta = 0, in either direction: diffusers' `DDIMScheduler` (deterministic
/// sampling) and `DDIMInverseScheduler` (the same update run backwards, from clean latents
/// towards noise), one type with a [`DdimDirection`].
///
/// The other end of a step is always `t ∓ num_train_timesteps / n` (integer division),
/// whatever the spacing, as in diffusers.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    config: DdimConfig,
    direction: DdimDirection,
    schedule: NoiseSchedule,
    /// ᾱ outside the table (diffusers' `final_alpha_cumprod` when sampling,
    /// `initial_alpha_cumprod` when inverting).
    edge_alpha_cumprod: f32,
    rule: DdimStepRule,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
}

impl DdimScheduler {
    /// A sampling scheduler from its typed config.
    pub fn new(config: DdimConfig) -> Self {
        Self::with_direction(config, DdimDirection::Sample)
    }

    /// An inverse scheduler (`DDIMInverseScheduler`) from its typed config.
    pub fn inverse(config: DdimConfig) -> Self {
        Self::with_direction(config, DdimDirection::Invert)
    }

    /// A scheduler running in `direction`.
    pub fn with_direction(config: DdimConfig, direction: DdimDirection) -> Self {
        let schedule = NoiseSchedule::new(&config.betas, config.prediction_type, false);
        let edge_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod()[0] as f32
        };
        Self {
            schedule,
            edge_alpha_cumprod,
            config,
            direction,
            rule: DdimStepRule::Ratio,
            num_inference_steps: 0,
            timesteps: Vec::new(),
        }
    }

    /// A sampling scheduler from a diffusers config dict (`DDIMScheduler`'s keys).
    pub fn from_json(config: &Value) -> Result<Self> {
        Ok(Self::new(DdimConfig::from_json(config)?))
    }

    /// An inverse scheduler from a diffusers config dict (`DDIMInverseScheduler`'s keys).
    pub fn inverse_from_json(config: &Value) -> Result<Self> {
        Ok(Self::inverse(DdimConfig::read(
            config,
            DdimDirection::Invert,
        )?))
    }

    /// The typed config.
    pub fn config(&self) -> &DdimConfig {
        &self.config
    }

    /// Which way it runs.
    pub fn direction(&self) -> DdimDirection {
        self.direction
    }

    /// The same scheduler with another [`DdimStepRule`] (takes effect at `set_timesteps`).
    pub fn with_step_rule(mut self, rule: DdimStepRule) -> Self {
        self.rule = rule;
        self
    }

    /// Where a step's other end lies.
    pub fn step_rule(&self) -> DdimStepRule {
        self.rule
    }
}

impl Scheduler for DdimScheduler {
    fn kind(&self) -> SchedulerKind {
        self.direction.kind()
    }

    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let num_train = self.config.betas.num_train_timesteps;
        let class = self.kind().class_name();
        check_steps(class, num_inference_steps, num_train)?;
        let timesteps = match (self.direction, self.rule) {
            (DdimDirection::Invert, DdimStepRule::Ratio) => inverse_timesteps,
            _ => ddim_timesteps,
        };
        let mut ts = timesteps(
            self.config.timestep_spacing,
            num_inference_steps,
            num_train,
            self.config.steps_offset,
        );
        if (self.direction, self.rule) == (DdimDirection::Invert, DdimStepRule::Schedule) {
            ts.reverse();
        }
        self.timesteps = to_f64(&ts);
        self.num_inference_steps = num_inference_steps;
        tracing::debug!(class, steps = num_inference_steps, "set_timesteps");
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
        let num_train = self.config.betas.num_train_timesteps as i64;
        let t = self.timesteps[step_index] as i64;
        let ratio = num_train / self.num_inference_steps as i64;
        // The step moves the sample from timestep `from` to timestep `to`.
        // A negative timestep stands for the edge ᾱ.
        let neighbour = |i: Option<usize>| {
            i.and_then(|i| self.timesteps.get(i))
                .map_or(-1, |&t| t as i64)
        };
        let (from, to) = match (self.direction, self.rule) {
            (DdimDirection::Sample, DdimStepRule::Ratio) => (t, t - ratio),
            (DdimDirection::Invert, DdimStepRule::Ratio) => ((t - ratio).min(num_train - 1), t),
            (DdimDirection::Sample, DdimStepRule::Schedule) => (t, neighbour(Some(step_index + 1))),
            (DdimDirection::Invert, DdimStepRule::Schedule) => {
                (neighbour(step_index.checked_sub(1)), t)
            }
        };
        let alpha_from = alpha_at(
            self.schedule.alphas_cumprod(),
            from,
            self.edge_alpha_cumprod,
        )?;
        let alpha_to = alpha_at(self.schedule.alphas_cumprod(), to, self.edge_alpha_cumprod)?;
        let (mut x0, eps) = predict_x0_eps(
            self.config.prediction_type,
            sample,
            model_output,
            alpha_from,
        );
        if self.config.clip_sample {
            let r = self.config.clip_sample_range as f32;
            x0 = x0.clamp(-r, r);
        }
        // eta = 0: no noise term.
        let direction = eps.mul_scalar((1.0f32 - alpha_to).sqrt());
        Ok(x0.mul_scalar(alpha_to.sqrt()).add(direction))
    }

    fn noise_schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SchedulerError;
    use burn::tensor::TensorData;
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
        let inverse = |v| DdimConfig::read(&v, DdimDirection::Invert);
        let e = inverse(json!({"timestep_spacing": "linspace"})).unwrap_err();
        assert!(
            matches!(e, SchedulerError::UnsupportedConfig { ref key, .. } if key == "timestep_spacing"),
            "{e}"
        );
        assert!(e.to_string().contains("leading, trailing"), "{e}");
        let c = inverse(json!({"set_alpha_to_one": true, "set_alpha_to_zero": false})).unwrap();
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

    /// The pnp-diffusers rule: the sampler's own timesteps backwards (any spacing) and each
    /// step from the previous timestep's level; it agrees with diffusers' inverse where the
    /// spacing is uniform and differs where it is not.
    #[test]
    fn the_schedule_rule_inverts_along_the_sampling_timesteps() {
        let device = burn::tensor::Device::flex();
        let config = json!({"timestep_spacing": "trailing", "clip_sample": false});
        let value = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap()[0];
        let one = |v: f32| Tensor::<4>::from_data(TensorData::new(vec![v], [1, 1, 1, 1]), &device);
        let mut sampler = DdimScheduler::from_json(&config).unwrap();
        let mut pnp = DdimScheduler::inverse(DdimConfig::from_json(&config).unwrap())
            .with_step_rule(DdimStepRule::Schedule);
        let mut ratio = DdimScheduler::inverse_from_json(&config).unwrap();
        // 1000 / 30 is not whole: trailing timesteps are 33 or 34 apart.
        for s in [&mut sampler, &mut pnp, &mut ratio] {
            s.set_timesteps(30).unwrap();
        }
        let mut reversed = sampler.timesteps().to_vec();
        reversed.reverse();
        assert_eq!(pnp.timesteps(), &reversed[..]);
        let ac = pnp.alphas_cumprod().to_vec();
        let expect = |from: f32, to: f32| {
            let x0 = (1.0f32 - (1.0 - from).sqrt() * 0.5) / from.sqrt();
            to.sqrt() * x0 + (1.0 - to).sqrt() * 0.5
        };
        for i in 0..30 {
            let t = pnp.timesteps()[i] as usize;
            let from = if i == 0 {
                1.0
            } else {
                ac[pnp.timesteps()[i - 1] as usize] as f32
            };
            let got = value(pnp.step(one(0.5), i, one(1.0)).unwrap());
            let want = expect(from, ac[t] as f32);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs(),
                "step {i}: {got} vs {want}"
            );
        }
        // diffusers' inverse steps from `t - 33` instead: not the same levels.
        let differs = (1..30).any(|i| {
            value(pnp.step(one(0.5), i, one(1.0)).unwrap())
                != value(ratio.step(one(0.5), i, one(1.0)).unwrap())
        });
        assert!(differs);
        // With leading spacing (SD 1.x) the two rules are the same schedule and the same steps.
        let leading = json!({"steps_offset": 1, "clip_sample": false});
        let mut pnp = DdimScheduler::inverse(DdimConfig::from_json(&leading).unwrap())
            .with_step_rule(DdimStepRule::Schedule);
        let mut ratio = DdimScheduler::inverse_from_json(&leading).unwrap();
        pnp.set_timesteps(50).unwrap();
        ratio.set_timesteps(50).unwrap();
        assert_eq!(pnp.timesteps(), ratio.timesteps());
        for i in 0..50 {
            assert_eq!(
                value(pnp.step(one(0.5), i, one(1.0)).unwrap()),
                value(ratio.step(one(0.5), i, one(1.0)).unwrap())
            );
        }
    }
}
