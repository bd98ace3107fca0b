//! Helpers shared by the scheduler implementations.

use crate::config::PredictionType;
use crate::error::{Result, SchedulerError};
use burn::tensor::Tensor;

/// Checks that `index` is a valid step of a schedule with `len` timesteps, and that timesteps
/// were set at all.
pub(crate) fn check_index(class: &str, operation: &str, index: usize, len: usize) -> Result<()> {
    if len == 0 {
        return Err(SchedulerError::TimestepsNotSet {
            class: class.to_string(),
            operation: operation.to_string(),
        });
    }
    if index >= len {
        return Err(SchedulerError::StepIndexOutOfRange {
            class: class.to_string(),
            index,
            len,
        });
    }
    Ok(())
}

/// Checks that `n` inference steps fit in `num_train` training timesteps (and are not 0).
pub(crate) fn check_steps(class: &str, n: usize, num_train: usize) -> Result<()> {
    if n == 0 || n > num_train {
        return Err(SchedulerError::InvalidStepCount {
            class: class.to_string(),
            steps: n,
            max: num_train,
            limit: "num_train_timesteps".into(),
        });
    }
    Ok(())
}

/// The checks every `step` starts with: a valid step index of the `timesteps` set, and a
/// model output of the sample's shape.
pub(crate) fn check_step(
    class: &str,
    index: usize,
    timesteps: &[f64],
    sample: &Tensor<4>,
    model_output: &Tensor<4>,
) -> Result<()> {
    check_index(class, "step", index, timesteps.len())?;
    check_same_shape("model_output vs sample", sample, model_output)
}

/// Checks that two tensors have the same shape.
pub(crate) fn check_same_shape(what: &str, a: &Tensor<4>, b: &Tensor<4>) -> Result<()> {
    let (da, db) = (a.dims(), b.dims());
    if da != db {
        return Err(SchedulerError::ShapeMismatch {
            what: what.to_string(),
            expected: da.to_vec(),
            found: db.to_vec(),
        });
    }
    Ok(())
}

/// `alphas_cumprod[t]` as float32, or `fallback` for negative `t` (diffusers'
/// `final_alpha_cumprod` / `initial_alpha_cumprod`); an error for `t` past the table.
pub(crate) fn alpha_at(alphas_cumprod: &[f64], t: i64, fallback: f32) -> Result<f32> {
    if t < 0 {
        return Ok(fallback);
    }
    alphas_cumprod
        .get(t as usize)
        .map(|&a| a as f32)
        .ok_or(SchedulerError::TimestepOutOfRange {
            timestep: t as usize,
            num_train_timesteps: alphas_cumprod.len(),
        })
}

/// The DDIM-family prediction of (x0, ε) from a model output at cumulative alpha `alpha_t`
/// (float32 scalars, the op order of diffusers' `DDIMScheduler.step`).
pub(crate) fn predict_x0_eps(
    prediction: PredictionType,
    sample: Tensor<4>,
    model_output: Tensor<4>,
    alpha_t: f32,
) -> (Tensor<4>, Tensor<4>) {
    let beta_t = 1.0f32 - alpha_t;
    let (sa, sb) = (alpha_t.sqrt(), beta_t.sqrt());
    match prediction {
        PredictionType::Epsilon => {
            let x0 = sample
                .sub(model_output.clone().mul_scalar(sb))
                .div_scalar(sa);
            (x0, model_output)
        }
        PredictionType::Sample => {
            let eps = sample
                .sub(model_output.clone().mul_scalar(sa))
                .div_scalar(sb);
            (model_output, eps)
        }
        PredictionType::VPrediction => {
            let x0 = sample
                .clone()
                .mul_scalar(sa)
                .sub(model_output.clone().mul_scalar(sb));
            let eps = model_output.mul_scalar(sa).add(sample.mul_scalar(sb));
            (x0, eps)
        }
    }
}

/// The float32 timestep values of an integer schedule, as `f64`.
pub(crate) fn to_f64(timesteps: &[i64]) -> Vec<f64> {
    timesteps.iter().map(|&t| t as f64).collect()
}
