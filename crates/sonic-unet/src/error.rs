//! The error type of `sonic-unet`.

/// Errors of the UNet.
#[derive(Debug, thiserror::Error)]
pub enum UNetError {
    /// Files, configs and weights (names the file / key), and inputs of the wrong shape
    /// ([`sonic_core::CoreError::BadShape`]).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
}
