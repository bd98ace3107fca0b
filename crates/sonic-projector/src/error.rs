//! The error type of `sonic-projector`.

/// Errors of the audio projector.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Files, configs and weights (names the file, and the key / shapes where one is at
    /// fault: a weights file that does not fit is a [`sonic_core::CoreError::WeightsMismatch`]
    /// listing the first mismatches in the file's naming), and inputs of the wrong shape
    /// ([`sonic_core::CoreError::BadShape`]).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = ProjectorError> = std::result::Result<T, E>;
