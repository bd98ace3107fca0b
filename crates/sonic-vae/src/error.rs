//! The error type of `sonic-vae`.

/// Errors of the VAE.
#[derive(Debug, thiserror::Error)]
pub enum VaeError {
    /// Files, configs and weights (names the file / key), and inputs of the wrong shape
    /// ([`sonic_core::CoreError::BadShape`]).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
}
