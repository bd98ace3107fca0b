//! The error type of `sonic-projector`.

use std::fmt;
use std::path::PathBuf;

/// One way in which a weights file does not fit the projector, in the file's own naming
/// (PyTorch keys and shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightMismatch {
    /// The key as the file spells it (for a missing tensor: as the file should spell it).
    pub key: String,
    /// The shape the projector expects (`None`: the file holds a tensor the projector does
    /// not use).
    pub expected: Option<Vec<usize>>,
    /// The shape in the file (`None`: the tensor is missing).
    pub found: Option<Vec<usize>>,
}

impl fmt::Display for WeightMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.expected, &self.found) {
            (Some(e), Some(g)) => write!(f, "`{}`: expected {e:?}, file has {g:?}", self.key),
            (Some(e), None) => write!(f, "`{}`: missing (expected {e:?})", self.key),
            (None, Some(g)) => write!(f, "`{}`: unexpected (shape {g:?})", self.key),
            (None, None) => write!(f, "`{}`", self.key),
        }
    }
}

/// How many mismatches a [`ProjectorError::WeightsMismatch`] lists at most.
pub const MAX_LISTED_MISMATCHES: usize = 8;

fn list(mismatches: &[WeightMismatch]) -> String {
    mismatches
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of the audio projector.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Files, configs and weights (names the file, and the key / shapes where one is at
    /// fault).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// A weights file whose keys or shapes do not fit the projector: the first mismatches
    /// (shape mismatches, then missing tensors, then unexpected ones), in the file's naming.
    #[error(
        "weights in {path} do not fit the projector: {total} mismatch(es), first: {}",
        list(.first)
    )]
    WeightsMismatch {
        /// The weights file.
        path: PathBuf,
        /// How many mismatches there are in all.
        total: usize,
        /// The first [`MAX_LISTED_MISMATCHES`] of them.
        first: Vec<WeightMismatch>,
    },
    /// An input tensor of the wrong shape.
    #[error("{what}: expected {expected}, got shape {found:?}")]
    BadInput {
        /// Which input.
        what: &'static str,
        /// What was expected.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ProjectorError> = std::result::Result<T, E>;
