//! The error type of the hyperparameter search.

use std::path::PathBuf;

/// Everything that can go wrong in a search: its config, the study file, an objective.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A key of the tune config (or of a search-space entry) is missing, of the wrong type or
    /// out of range. `key` is the dotted path inside the file, e.g. `space.lr.low`.
    #[error("invalid tune config {path}: `{key}`: {reason}")]
    Config {
        /// The config file (or a description of where the config came from).
        path: PathBuf,
        /// The dotted key at fault.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or folder of the study could not be read or written.
    #[error("study I/O on {path}: {source}")]
    Io {
        /// The file or folder at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of the study journal cannot be parsed or contradicts the earlier lines.
    #[error("corrupt study journal {path}, line {line}: {reason}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// The study on disk was created with a different search space or direction than the
    /// config that re-opens it.
    #[error("study {path} does not match the config: {reason}")]
    StudyMismatch {
        /// The journal file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Another process holds the study open.
    #[error("study {path} is in use by another process (its journal is locked)")]
    Locked {
        /// The journal file.
        path: PathBuf,
    },
    /// A trial parameter override cannot be applied to the base config.
    #[error("cannot override `{key}` in {path}: {reason}")]
    Override {
        /// The base config the override applies to.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// Why it cannot be applied.
        reason: String,
    },
    /// A trial's reports are out of order or not finite.
    #[error("trial {trial}: {reason}")]
    Report {
        /// The trial number.
        trial: u64,
        /// What is wrong.
        reason: String,
    },
    /// The study has no completed trial, so there is no best one.
    #[error("study {path} has no completed trial")]
    NoCompletedTrial {
        /// The journal file.
        path: PathBuf,
    },
    /// The objective (training run) failed in a way the search cannot recover from.
    #[error("objective failed on trial {trial}: {message}")]
    Objective {
        /// The trial number.
        trial: u64,
        /// The objective's error message.
        message: String,
    },
    /// An error from the sonic-core plumbing (atomic writes, JSON files).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
}

/// `Result` with [`TuneError`].
pub type Result<T> = std::result::Result<T, TuneError>;
