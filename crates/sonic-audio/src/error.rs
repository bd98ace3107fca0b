//! The error type of `sonic-audio`.

use std::path::PathBuf;

/// Everything that can go wrong while decoding, preparing or encoding audio.
///
/// Every variant about a file names it; in-memory inputs are named by the caller
/// (e.g. `<memory>`).
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Files, configs and weights (names the file / key).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// The file could not be opened or read (missing, a directory, no permission).
    #[error("cannot read audio file {path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file has no bytes at all.
    #[error("audio file {path} is empty")]
    EmptyFile {
        /// The file at fault.
        path: PathBuf,
    },
    /// The container or codec is not one this crate decodes (WAV, FLAC, MP3, OGG/Vorbis).
    #[error("unsupported audio format in {path}: {reason}")]
    UnsupportedFormat {
        /// The file at fault.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The file is recognised but corrupt or truncated.
    #[error("cannot decode {format} audio in {path}: {message}")]
    Decode {
        /// The file at fault.
        path: PathBuf,
        /// The container (`WAV`, `FLAC`, ...).
        format: String,
        /// What the decoder said.
        message: String,
    },
    /// The file decodes to zero samples.
    #[error("audio file {path} holds no samples")]
    NoSamples {
        /// The file at fault.
        path: PathBuf,
    },
    /// A sample is NaN or infinite (float WAVs can hold them).
    #[error(
        "audio file {path} holds a non-finite sample ({value}) at frame {frame}, channel {channel}"
    )]
    NonFinite {
        /// The file at fault.
        path: PathBuf,
        /// The frame index.
        frame: usize,
        /// The channel index.
        channel: usize,
        /// The value found.
        value: f64,
    },
    /// The file declares a sample rate or channel layout that cannot be used.
    #[error("audio file {path} has an unusable layout: {reason}")]
    BadLayout {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An in-memory input that cannot be used (empty samples, a zero sample rate, a wrong
    /// tensor shape, ...).
    #[error("invalid input {what}: {reason}")]
    BadInput {
        /// Which input.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint is inconsistent with the CLAP audio encoder (names the file).
    #[error("invalid CLAP checkpoint {path}: {message}")]
    Checkpoint {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl AudioError {
    pub(crate) fn bad_input(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = AudioError> = std::result::Result<T, E>;
