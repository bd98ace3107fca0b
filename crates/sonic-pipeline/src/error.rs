//! The error type of `sonic-pipeline`.

use crate::memory::human_bytes;
use std::path::PathBuf;

/// Errors of the pipelines.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Files, configs and weights (names the file / key).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// The tokenizer or text encoder failed.
    #[error(transparent)]
    Clip(#[from] sonic_clip::ClipError),
    /// The VAE failed.
    #[error(transparent)]
    Vae(#[from] sonic_vae::VaeError),
    /// The UNet failed.
    #[error(transparent)]
    UNet(#[from] sonic_unet::UNetError),
    /// The scheduler failed or could not be built.
    #[error(transparent)]
    Scheduler(#[from] sonic_schedulers::SchedulerError),
    /// Audio decoding or the CLAP encoder failed (names the file).
    #[error(transparent)]
    Audio(#[from] sonic_audio::AudioError),
    /// The audio projector failed.
    #[error(transparent)]
    Projector(#[from] sonic_projector::ProjectorError),
    /// A download from the hub failed, or the cache lacks a file in offline mode.
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
    /// The run was cancelled through its [`crate::sampling::CancelToken`].
    #[error("cancelled")]
    Cancelled,
    /// A generation parameter is out of range.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value, as text.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// `model_index.json` names a component class this implementation does not have.
    #[error("{path}: component `{component}` has class {class}, expected {expected}")]
    UnsupportedComponent {
        /// The model_index.json file.
        path: PathBuf,
        /// The component (`unet`, `vae`, ...).
        component: String,
        /// The class found.
        class: String,
        /// The class supported.
        expected: String,
    },
    /// Writing an output file failed (nothing is left half written).
    #[error("cannot write {path}: {message}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A run's memory estimate exceeds the budget (see [`crate::memory`]).
    #[error(
        "{what} needs about {} ({} of weights + {} of activations), over the memory budget of \
         {} ({budget_from}); use a smaller size, batch or frame count, or raise --max-memory",
        human_bytes(weights.saturating_add(*activations)),
        human_bytes(*weights),
        human_bytes(*activations),
        human_bytes(*budget)
    )]
    OverMemoryBudget {
        /// The run.
        what: String,
        /// The weights part of the estimate, in bytes.
        weights: u64,
        /// The activations part of the estimate, in bytes.
        activations: u64,
        /// The budget, in bytes.
        budget: u64,
        /// Where the budget came from (`--max-memory`, available memory).
        budget_from: &'static str,
    },
    /// The model produced NaN or infinite values.
    #[error("non-finite values in {0}; try float32 or fewer steps")]
    NonFinite(String),
    /// An input image could not be read or decoded (names the file).
    #[error("cannot read image {path}: {message}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An input image exceeds the documented memory budget (see `image_input`).
    #[error(
        "image {path} is {width}x{height} = {pixels} pixels, over the budget of {limit} pixels"
    )]
    ImageTooLarge {
        /// The image file.
        path: PathBuf,
        /// Its width.
        width: u64,
        /// Its height.
        height: u64,
        /// width x height.
        pixels: u64,
        /// The budget that was exceeded.
        limit: u64,
    },
}
