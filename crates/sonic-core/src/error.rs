//! The error type of `sonic-core`.

use std::fmt;
use std::path::PathBuf;

/// One way in which a weights file does not fit a model, in the file's own naming (PyTorch
/// keys and shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightMismatch {
    /// The key as the file spells it (for a missing tensor: as the file should spell it).
    pub key: String,
    /// The shape the model expects (`None`: the file holds a tensor the model does not use).
    pub expected: Option<Vec<usize>>,
    /// The shape in the file (`None`: the tensor is missing).
    pub found: Option<Vec<usize>>,
}

impl fmt::Display for WeightMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match (&self.expected, &self.found) {
            (Some(e), Some(g)) => write!(f, "`{key}` has shape {g:?}, model expects {e:?}"),
            (Some(e), None) => write!(f, "`{key}` {e:?} is missing"),
            (None, Some(g)) => write!(f, "`{key}` {g:?} is not used by the model"),
            (None, None) => write!(f, "`{key}`"),
        }
    }
}

/// How many mismatches a [`CoreError::WeightsMismatch`] lists at most.
pub const MAX_LISTED_MISMATCHES: usize = 8;

fn list(mismatches: &[WeightMismatch]) -> String {
    mismatches
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything that can go wrong in the plumbing: files, configs, weights, devices.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read (missing, a directory, no permission).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed or does not fit the expected schema.
    #[error("invalid JSON in {path}: {message}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A config value that this implementation does not support (it would change the math).
    #[error("unsupported value in {path}: `{key}` = {value} ({reason})")]
    UnsupportedConfig {
        /// The config file (or a description of where the config came from).
        path: PathBuf,
        /// The config key.
        key: String,
        /// The offending value, as JSON text.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A safetensors file is corrupt or cannot be parsed.
    #[error("invalid weights file {path}: {message}")]
    WeightsFile {
        /// The weights file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tensor the model needs is absent from the weights file.
    #[error("missing tensor `{key}` (expected shape {expected:?}) in {path}")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The key (in the file's naming).
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// The weights file holds a tensor the model does not use.
    #[error("unexpected tensor `{key}` with shape {found:?} in {path}")]
    UnexpectedTensor {
        /// The weights file.
        path: PathBuf,
        /// The key (in the file's naming).
        key: String,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor's shape in the file differs from the model's.
    #[error("shape mismatch for `{key}` in {path}: model expects {expected:?}, file has {found:?}")]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The key (in the file's naming).
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Several tensors do not fit: the first problems are listed (shape mismatches first, then
    /// missing, then unexpected tensors).
    #[error("{total} tensors in {path} do not fit the model; first: {}", list(.first))]
    WeightsMismatch {
        /// The weights file.
        path: PathBuf,
        /// How many problems in all.
        total: usize,
        /// The first problems (at most [`MAX_LISTED_MISMATCHES`]), keys as the file spells
        /// them.
        first: Vec<WeightMismatch>,
    },
    /// A tensor's dtype cannot be used (e.g. an integer tensor where floats are needed).
    #[error("tensor `{key}` in {path} has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The dtype found.
        dtype: String,
    },
    /// A device string could not be parsed, or names a backend not compiled in.
    #[error("unknown or unavailable device `{spec}`: {reason}")]
    Device {
        /// The device string given by the user.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A tensor holds NaN or infinite values where finite ones are required.
    #[error("non-finite values in {what}")]
    NonFinite {
        /// Which tensor.
        what: String,
    },
    /// A weights file holds NaN or infinite values in a tensor the model loads.
    #[error("tensor `{key}` in {path} holds NaN or infinite values ({count} of {numel})")]
    NonFiniteWeight {
        /// The file.
        path: PathBuf,
        /// The tensor (the file's own name, PyTorch naming).
        key: String,
        /// How many of its values are not finite.
        count: usize,
        /// How many values it has.
        numel: usize,
    },
    /// An input tensor of the wrong shape (the same for every model crate).
    #[error("{what}: expected {expected}, got shape {found:?}")]
    BadShape {
        /// Which input.
        what: &'static str,
        /// What was expected.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// Reading a tensor back from the device failed.
    #[error("cannot read tensor back from the device: {0}")]
    Readback(String),
    /// A LoRA file that cannot be applied: an unknown layout, a target the model lacks,
    /// ranks or shapes that do not fit.
    #[error("LoRA {path}: `{key}`: {message}")]
    Lora {
        /// The LoRA file.
        path: PathBuf,
        /// The key at fault, as the file spells it.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
