//! Training configs (`config/stage1.json`, `config/stage2.json`): serde structs that reject
//! unknown keys; every error names the file and the key (and the value when it is out of
//! range). Relative model paths are resolved against the config file's folder.
//!
//! Why one file of over 600 lines: the code is about 550 lines; the rest are its unit tests.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The optimizer: AdamW (with `weight_decay = 0` it is Adam, the official choice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate (official: 1e-4).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Adam β₁.
    #[serde(default = "d_beta1")]
    pub beta1: f32,
    /// Adam β₂.
    #[serde(default = "d_beta2")]
    pub beta2: f32,
    /// Adam ε (PyTorch's default 1e-8).
    #[serde(default = "d_eps")]
    pub eps: f32,
    /// Decoupled weight decay (0: plain Adam).
    #[serde(default)]
    pub weight_decay: f32,
}

fn d_lr() -> f64 {
    1e-4
}
fn d_beta1() -> f32 {
    0.9
}
fn d_beta2() -> f32 {
    0.999
}
fn d_eps() -> f32 {
    1e-8
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            lr: d_lr(),
            beta1: d_beta1(),
            beta2: d_beta2(),
            eps: d_eps(),
            weight_decay: 0.0,
        }
    }
}

/// The shape of the learning-rate schedule after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrKind {
    /// Constant at `lr`.
    #[default]
    Constant,
    /// Cosine decay from `lr` to `min_lr` over the remaining steps.
    Cosine,
}

/// The learning-rate schedule: a linear warm-up `lr · (s + 1) / warmup_steps` for optimizer
/// steps `s < warmup_steps`, then constant or cosine
/// (`min_lr + (lr - min_lr) · (1 + cos(π · (s - warmup) / (total - warmup))) / 2`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LrScheduleConfig {
    /// `constant` or `cosine`.
    #[serde(default)]
    pub kind: LrKind,
    /// Warm-up steps (optimizer steps).
    #[serde(default)]
    pub warmup_steps: u64,
    /// The final learning rate of the cosine schedule.
    #[serde(default)]
    pub min_lr: f64,
}

impl LrScheduleConfig {
    /// The learning rate of optimizer step `step` (0-based) out of `total` for peak `lr`.
    pub fn lr_at(&self, lr: f64, step: u64, total: u64) -> f64 {
        if step < self.warmup_steps {
            return lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            LrKind::Constant => lr,
            LrKind::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = ((step - self.warmup_steps) as f64 / span).min(1.0);
                self.min_lr + (lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

/// What is common to both stages: length, batching, optimisation, checkpoints, validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Seed of every random choice (data order, positives / negatives, noise, timesteps,
    /// drops, initialisation of new weights).
    #[serde(default)]
    pub seed: u64,
    /// Samples per micro-batch (official: 6).
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation; the loss is averaged).
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    /// Epochs over the training split (official stage 1: 151).
    #[serde(default = "d_epochs")]
    pub epochs: u64,
    /// Stop after this many optimizer steps (overrides `epochs` when set).
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    #[serde(default)]
    pub lr_schedule: LrScheduleConfig,
    /// Clip gradients to this global L2 norm (none: no clipping).
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Fraction of the manifest held out for validation.
    #[serde(default = "d_val_fraction")]
    pub val_fraction: f64,
    /// Validation loss every this many optimizer steps (0: never).
    #[serde(default = "d_every")]
    pub val_every: u64,
    /// A checkpoint every this many optimizer steps (0: only at the end).
    #[serde(default = "d_every")]
    pub checkpoint_every: u64,
    /// How many checkpoints to keep (the newest; at least 1).
    #[serde(default = "d_keep")]
    pub keep_checkpoints: usize,
}

fn d_batch() -> usize {
    6
}
fn d_one() -> usize {
    1
}
fn d_epochs() -> u64 {
    151
}
fn d_val_fraction() -> f64 {
    0.05
}
fn d_every() -> u64 {
    500
}
fn d_keep() -> usize {
    2
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            batch_size: d_batch(),
            grad_accum: 1,
            epochs: d_epochs(),
            max_steps: None,
            optimizer: OptimizerConfig::default(),
            lr_schedule: LrScheduleConfig::default(),
            clip_grad_norm: None,
            val_fraction: d_val_fraction(),
            val_every: d_every(),
            checkpoint_every: d_every(),
            keep_checkpoints: d_keep(),
        }
    }
}

/// The models a stage reads (paths relative to the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelPaths {
    /// The diffusers-layout Stable Diffusion folder (text encoder, VAE, UNet, scheduler).
    #[serde(default)]
    pub sd: Option<PathBuf>,
    /// The CLAP checkpoint.
    #[serde(default)]
    pub clap: Option<PathBuf>,
    /// Initial projector weights (stage 1: optional, random init without; stage 2: required).
    #[serde(default)]
    pub projector: Option<PathBuf>,
    /// The projector config (JSON, bare or with a `projector` section); needed to build a
    /// new projector, optional with `projector` weights.
    #[serde(default)]
    pub projector_config: Option<PathBuf>,
    /// Initial adapter weights (stage 2; new adapters with gates at `gate_init` without).
    #[serde(default)]
    pub adapters: Option<PathBuf>,
}

impl ModelPaths {
    fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.sd,
            &mut self.clap,
            &mut self.projector,
            &mut self.projector_config,
            &mut self.adapters,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// The loss weights and parameters of stage 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Loss {
    /// Weight of the InfoNCE term.
    #[serde(default = "d_w")]
    pub info_nce_weight: f64,
    /// Weight of the token MSE term.
    #[serde(default = "d_w")]
    pub token_mse_weight: f64,
    /// InfoNCE temperature (**ours**: 0.07, CLIP's initial value).
    #[serde(default = "d_temp")]
    pub temperature: f64,
    /// Negatives per batch (official: 128), drawn from classes absent from the batch's anchors
    /// where possible; any negative of an anchor's own class is masked out for that anchor.
    #[serde(default = "d_negatives")]
    pub negatives: usize,
    /// Probability that a sample's caption term is dropped (official "text drop": 0.5).
    #[serde(default = "d_half")]
    pub text_drop: f64,
    /// Centre of the reverse-sigmoid token weights (token index where the weight is 0.5).
    #[serde(default = "d_centre")]
    pub token_weight_centre: f64,
    /// Width of the reverse sigmoid (in tokens).
    #[serde(default = "d_width")]
    pub token_weight_width: f64,
}

fn d_w() -> f64 {
    1.0
}
fn d_temp() -> f64 {
    0.07
}
fn d_negatives() -> usize {
    128
}
fn d_half() -> f64 {
    0.5
}
fn d_centre() -> f64 {
    20.0
}
fn d_width() -> f64 {
    5.0
}

impl Default for Stage1Loss {
    fn default() -> Self {
        Self {
            info_nce_weight: 1.0,
            token_mse_weight: 1.0,
            temperature: d_temp(),
            negatives: d_negatives(),
            text_drop: 0.5,
            token_weight_centre: d_centre(),
            token_weight_width: d_width(),
        }
    }
}

/// `config/stage1.json`: the projector on cached CLAP embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Config {
    /// Length, batching, optimisation, checkpoints.
    #[serde(default)]
    pub training: TrainingConfig,
    /// The loss.
    #[serde(default)]
    pub loss: Stage1Loss,
    /// The models.
    #[serde(default)]
    pub model: ModelPaths,
    /// The projector's block wiring for new training: `chained` (**ours**, default) or
    /// `faithful` (the release's quirk).
    #[serde(default = "d_mode")]
    pub block_mode: String,
}

fn d_mode() -> String {
    "chained".into()
}

impl Default for Stage1Config {
    fn default() -> Self {
        Self {
            training: TrainingConfig::default(),
            loss: Stage1Loss::default(),
            model: ModelPaths::default(),
            block_mode: d_mode(),
        }
    }
}

/// `config/stage2.json`: the adapters (and optionally the projector) with the DDPM loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage2Config {
    /// Length, batching, optimisation, checkpoints.
    #[serde(default)]
    pub training: TrainingConfig,
    /// The models.
    #[serde(default)]
    pub model: ModelPaths,
    /// Probability that a caption is replaced by "" (official: 0.5).
    #[serde(default = "d_half")]
    pub text_drop: f64,
    /// Probability that the audio is replaced by the projector's null tokens (**ours**: 0.1).
    #[serde(default = "d_audio_drop")]
    pub audio_drop: f64,
    /// Also fine-tune the projector.
    #[serde(default)]
    pub train_projector: bool,
    /// The initial gate of new adapters (**ours**, Flamingo: 0).
    #[serde(default)]
    pub gate_init: f32,
    /// The audio strength `f` during training.
    #[serde(default = "d_w32")]
    pub audio_strength: f32,
    /// Use the horizontally flipped image with probability 0.5 (official; needs the flipped
    /// latents, which the CLI caches too).
    #[serde(default = "d_true")]
    pub hflip: bool,
    /// Image side after resize + centre crop, before the VAE (official: 512).
    #[serde(default = "d_resolution")]
    pub resolution: usize,
    /// Sample images every this many optimizer steps (0: never); needs the model paths.
    #[serde(default)]
    pub sample_every: u64,
    /// Denoising steps of the sample images.
    #[serde(default = "d_sample_steps")]
    pub sample_steps: usize,
}

fn d_true() -> bool {
    true
}
fn d_audio_drop() -> f64 {
    0.1
}
fn d_w32() -> f32 {
    1.0
}
fn d_resolution() -> usize {
    512
}
fn d_sample_steps() -> usize {
    25
}

impl Default for Stage2Config {
    fn default() -> Self {
        Self {
            training: TrainingConfig::default(),
            model: ModelPaths::default(),
            text_drop: 0.5,
            audio_drop: d_audio_drop(),
            train_projector: false,
            gate_init: 0.0,
            audio_strength: 1.0,
            hflip: true,
            resolution: d_resolution(),
            sample_every: 0,
            sample_steps: d_sample_steps(),
        }
    }
}

fn config_err(path: &Path, key: &str, message: impl Into<String>) -> TrainError {
    TrainError::Config {
        path: path.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

/// Parses JSON text into `T`, naming the key at fault on error (serde's path to the key).
fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let mut key = String::new();
    let r: std::result::Result<T, _> = serde_path_to_error::deserialize(de).map_err(|e| {
        key = e.path().to_string();
        e.into_inner()
    });
    r.map_err(|e| config_err(path, if key.is_empty() { "." } else { &key }, e.to_string()))
}

/// A finite number above 0 (false for NaN).
fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

fn probability(path: &Path, key: &str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(config_err(
            path,
            key,
            format!("{v} is not a probability in [0, 1]"),
        ))
    }
}

impl TrainingConfig {
    /// Checks value ranges.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.batch_size == 0 {
            return Err(config_err(
                path,
                "training.batch_size",
                "0 must be at least 1",
            ));
        }
        if self.grad_accum == 0 {
            return Err(config_err(
                path,
                "training.grad_accum",
                "0 must be at least 1",
            ));
        }
        if !positive(self.optimizer.lr) {
            return Err(config_err(
                path,
                "training.optimizer.lr",
                format!("{} must be positive", self.optimizer.lr),
            ));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(config_err(
                path,
                "training.val_fraction",
                format!("{} must be in [0, 1)", self.val_fraction),
            ));
        }
        if let Some(c) = self.clip_grad_norm
            && !positive(c)
        {
            return Err(config_err(
                path,
                "training.clip_grad_norm",
                format!("{c} must be positive"),
            ));
        }
        if self.keep_checkpoints == 0 {
            return Err(config_err(
                path,
                "training.keep_checkpoints",
                "0 must be at least 1",
            ));
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return Err(config_err(path, "training.epochs", "0 (and no max_steps)"));
        }
        Ok(())
    }
}

impl Stage1Config {
    /// Reads and validates a stage-1 config; relative model paths are resolved.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut c: Self = parse(&text, path)?;
        c.validate(path)?;
        c.model.resolve(path.parent().unwrap_or(Path::new(".")));
        Ok(c)
    }

    /// Checks value ranges (`path` names the origin in errors).
    pub fn validate(&self, path: &Path) -> Result<()> {
        self.training.validate(path)?;
        probability(path, "loss.text_drop", self.loss.text_drop)?;
        if !positive(self.loss.temperature) {
            return Err(config_err(
                path,
                "loss.temperature",
                format!("{} must be positive", self.loss.temperature),
            ));
        }
        if self.loss.negatives == 0 {
            return Err(config_err(path, "loss.negatives", "0 must be at least 1"));
        }
        if !positive(self.loss.token_weight_width) {
            return Err(config_err(
                path,
                "loss.token_weight_width",
                format!("{} must be positive", self.loss.token_weight_width),
            ));
        }
        if !matches!(self.block_mode.as_str(), "chained" | "faithful") {
            return Err(config_err(
                path,
                "block_mode",
                format!("`{}` (expected chained or faithful)", self.block_mode),
            ));
        }
        Ok(())
    }
}

impl Stage2Config {
    /// Reads and validates a stage-2 config; relative model paths are resolved.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut c: Self = parse(&text, path)?;
        c.validate(path)?;
        c.model.resolve(path.parent().unwrap_or(Path::new(".")));
        Ok(c)
    }

    /// Checks value ranges (`path` names the origin in errors).
    pub fn validate(&self, path: &Path) -> Result<()> {
        self.training.validate(path)?;
        probability(path, "text_drop", self.text_drop)?;
        probability(path, "audio_drop", self.audio_drop)?;
        if self.resolution == 0 || !self.resolution.is_multiple_of(8) {
            return Err(config_err(
                path,
                "resolution",
                format!("{} must be a positive multiple of 8", self.resolution),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let p = Path::new("s1.json");
        let e = parse::<Stage1Config>(r#"{"training": {"batch_sise": 4}}"#, p).unwrap_err();
        assert!(
            matches!(&e, TrainError::Config { key, message, .. }
                if key == "training.batch_sise" && message.contains("unknown field")),
            "{e}"
        );
        let e = parse::<Stage1Config>(r#"{"loss": {"negatives": "many"}}"#, p).unwrap_err();
        assert!(
            matches!(&e, TrainError::Config { key, .. } if key == "loss.negatives"),
            "{e}"
        );
        let c: Stage2Config = parse(r#"{"audio_drop": 1.5}"#, p).unwrap();
        let e = c.validate(p).unwrap_err();
        assert!(
            e.to_string().contains("audio_drop") && e.to_string().contains("1.5"),
            "{e}"
        );
    }

    #[test]
    fn lr_schedules() {
        let s = LrScheduleConfig {
            kind: LrKind::Cosine,
            warmup_steps: 2,
            min_lr: 0.0,
        };
        assert!((s.lr_at(1.0, 0, 12) - 0.5).abs() < 1e-12);
        assert!((s.lr_at(1.0, 1, 12) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(1.0, 2, 12) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(1.0, 7, 12) - 0.5).abs() < 1e-12);
        assert!(s.lr_at(1.0, 12, 12).abs() < 1e-12);
        let c = LrScheduleConfig::default();
        assert_eq!(c.lr_at(3e-4, 100, 10), 3e-4);
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// `config/stage{1,2}.json` parse and hold the official settings (docs/TRAINING.md).
    #[test]
    fn shipped_configs_are_the_official_settings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let s1 = Stage1Config::from_file(&root.join("stage1.json")).unwrap();
        assert_eq!(s1.training.batch_size, 6);
        assert_eq!(s1.training.epochs, 151);
        assert_eq!(s1.training.optimizer.lr, 1e-4);
        assert_eq!(s1.training.optimizer.weight_decay, 0.0);
        assert_eq!(s1.loss.negatives, 128);
        assert_eq!(s1.loss.text_drop, 0.5);
        let d1 = Stage1Config {
            model: s1.model.clone(),
            ..Stage1Config::default()
        };
        assert_eq!(s1, d1, "stage1.json differs from the defaults");
        let s2 = Stage2Config::from_file(&root.join("stage2.json")).unwrap();
        assert_eq!(s2.training.batch_size, 6);
        assert_eq!(s2.training.optimizer.lr, 1e-4);
        assert_eq!(s2.text_drop, 0.5);
        assert_eq!(s2.audio_drop, 0.1);
        assert_eq!(s2.resolution, 512);
        let d2 = Stage2Config {
            model: s2.model.clone(),
            ..Stage2Config::default()
        };
        assert_eq!(s2, d2, "stage2.json differs from the defaults");
    }
}
