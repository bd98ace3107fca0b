//! The error type of `sonic-eval`.

/// Errors of the evaluation models and metrics.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Files, configs and weights (names the file / key), and inputs of the wrong shape.
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// The CLIP towers and tokenizer.
    #[error(transparent)]
    Clip(#[from] sonic_clip::ClipError),
    /// Audio decoding and resampling (names the file).
    #[error(transparent)]
    Audio(#[from] sonic_audio::AudioError),
    /// Decoding an image (names the file).
    #[error(transparent)]
    Pipeline(#[from] sonic_pipeline::PipelineError),
    /// An input a metric cannot use (names what and why): too few samples, mismatched
    /// dimensions, non-finite values.
    #[error("invalid input for {what}: {message}")]
    Input {
        /// The metric or model and the argument.
        what: String,
        /// What is wrong.
        message: String,
    },
}

impl EvalError {
    /// An [`EvalError::Input`].
    pub fn input(what: impl Into<String>, message: impl Into<String>) -> Self {
        EvalError::Input {
            what: what.into(),
            message: message.into(),
        }
    }
}
