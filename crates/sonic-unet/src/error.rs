//! The error type of `sonic-unet`.

/// Errors of the UNet.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    /// Files, configs and weights (names the file / key).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
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
