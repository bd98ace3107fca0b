//! The error type of `sonic-train`.

use std::path::PathBuf;

/// Everything that can go wrong while preparing data or training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A manifest line is malformed or names a file that does not exist.
    #[error("{path}:{line}: field `{field}`: {message}")]
    Manifest {
        /// The manifest (or `labels.csv`) file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The field at fault (`audio`, `image`, `caption`, `label`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A training config key is missing, unknown or has an invalid value.
    #[error("invalid config {path}: key `{key}`: {message}")]
    Config {
        /// The config file (or `<in-memory>`).
        path: PathBuf,
        /// The key at fault (dotted for nested keys).
        key: String,
        /// What is wrong (with the value).
        message: String,
    },
    /// A batch or tensor handed to a trainer or loss has the wrong shape or content.
    #[error("bad input `{what}`: expected {expected}, found {found}")]
    BadInput {
        /// Which input.
        what: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The loss (or the gradient norm) became NaN or infinite: training stops, the last
    /// checkpoint written (if any) is the last good one.
    #[error("non-finite {what} ({value}) at step {step}; last good checkpoint: {last_checkpoint}")]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The optimizer step at which it happened (1-based: the step being computed).
        step: u64,
        /// The value (NaN, inf or -inf).
        value: f64,
        /// The last checkpoint folder written before, or `none`.
        last_checkpoint: String,
    },
    /// A checkpoint folder is missing a file or holds inconsistent state.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A cache entry could not be read or written.
    #[error("cache {path}: {message}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// File-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The training was cancelled by the progress callback.
    #[error("training cancelled at step {step}")]
    Cancelled {
        /// The last completed step.
        step: u64,
    },
    /// Errors from the plumbing crate.
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// Errors from the UNet.
    #[error(transparent)]
    UNet(#[from] sonic_unet::UNetError),
    /// Errors from the projector.
    #[error(transparent)]
    Projector(#[from] sonic_projector::ProjectorError),
    /// Errors from the schedulers.
    #[error(transparent)]
    Scheduler(#[from] sonic_schedulers::SchedulerError),
    /// Errors from the audio encoder.
    #[error(transparent)]
    Audio(#[from] sonic_audio::AudioError),
    /// Errors from CLIP.
    #[error(transparent)]
    Clip(#[from] sonic_clip::ClipError),
    /// Errors from the VAE.
    #[error(transparent)]
    Vae(#[from] sonic_vae::VaeError),
    /// Errors from the pipeline (model loading, sampling).
    #[error(transparent)]
    Pipeline(#[from] sonic_pipeline::PipelineError),
    /// The image captioner.
    #[error(transparent)]
    Caption(#[from] sonic_caption::CaptionError),
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    /// An I/O error naming `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`TrainError::BadInput`].
    pub fn bad_input(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl std::fmt::Debug,
    ) -> Self {
        TrainError::BadInput {
            what: what.into(),
            expected: expected.into(),
            found: format!("{found:?}"),
        }
    }
}
