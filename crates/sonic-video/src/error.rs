//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong making a video.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// A parameter is out of range.
    #[error("invalid {name} `{value}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// An encoder failed.
    #[error("{what} encoding failed: {message}")]
    Encode {
        /// Which encoder.
        what: &'static str,
        /// Its message.
        message: String,
    },
    /// Writing an output failed.
    #[error("cannot write {path}: {message}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The audio could not be read or embedded.
    #[error(transparent)]
    Audio(#[from] sonic_audio::AudioError),
    /// Generation or editing failed.
    #[error(transparent)]
    Pipeline(#[from] sonic_pipeline::PipelineError),
    /// A frame model failed.
    #[error("frame model: {0}")]
    Model(String),
    /// The run was cancelled by the progress callback.
    #[error("cancelled")]
    Cancelled,
}
