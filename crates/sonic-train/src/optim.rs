//! The optimizer of both stages (AdamW from burn-optim) and its state on disk.

use crate::config::OptimizerConfig;
use crate::error::{Result, TrainError};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::tensor::Bytes;
use std::path::Path;

/// AdamW with the config's β, ε and decoupled weight decay (gradient clipping is done by the
/// trainers over the global norm, not per tensor).
pub fn adamw(config: &OptimizerConfig) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(config.beta1)
        .with_beta_2(config.beta2)
        .with_epsilon(config.eps)
        .with_weight_decay(config.weight_decay)
        .init()
}

/// Writes the optimizer state (burnpack) atomically.
pub fn save_optimizer(optimizer: &ModuleOptimizer, path: &Path) -> Result<()> {
    let bytes = optimizer.into_bytes().map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot serialise the optimizer state: {e:?}"),
    })?;
    Ok(sonic_core::config::write_atomic(path, &bytes)?)
}

/// Loads an optimizer state written by [`save_optimizer`] into a fresh optimizer.
pub fn load_optimizer(fresh: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    fresh
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read the optimizer state: {e:?}"),
        })
}
