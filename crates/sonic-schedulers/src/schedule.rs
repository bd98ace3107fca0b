//! The training noise schedule every scheduler samples with.

use crate::config::{BetaConfig, PredictionType};
use crate::tables::alphas_cumprod_f32;

/// The training noise schedule of a scheduler: ᾱ for every training timestep and what the
/// model predicts. The [`Scheduler`](crate::Scheduler) trait's accessors (`alphas_cumprod`,
/// `prediction_type`, `num_train_timesteps`) read it, so each scheduler states it once.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f64>,
    prediction_type: PredictionType,
    num_train_timesteps: usize,
}

impl NoiseSchedule {
    /// ᾱ of `betas` (float32, as diffusers computes it). `zero_terminal_snr`: when the betas
    /// are rescaled to zero terminal SNR, the last ᾱ is set to 2^-24 instead of 0, as the
    /// sigma-space schedulers (Euler, DPM-Solver++) of diffusers do.
    pub fn new(
        betas: &BetaConfig,
        prediction_type: PredictionType,
        zero_terminal_snr: bool,
    ) -> Self {
        let mut ac = alphas_cumprod_f32(betas);
        if zero_terminal_snr
            && betas.rescale_betas_zero_snr
            && let Some(last) = ac.last_mut()
        {
            *last = 2f32.powi(-24);
        }
        Self {
            alphas_cumprod: ac.iter().map(|&a| a as f64).collect(),
            prediction_type,
            num_train_timesteps: betas.num_train_timesteps,
        }
    }

    /// ᾱ_t for every training timestep (float32 values).
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// ᾱ_t as the float32 values they are.
    pub fn alphas_cumprod_f32(&self) -> Vec<f32> {
        self.alphas_cumprod.iter().map(|&a| a as f32).collect()
    }

    /// What the model predicts.
    pub fn prediction_type(&self) -> PredictionType {
        self.prediction_type
    }

    /// The number of training timesteps.
    pub fn num_train_timesteps(&self) -> usize {
        self.num_train_timesteps
    }
}
