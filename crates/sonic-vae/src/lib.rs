//! Stable Diffusion's autoencoders: the variational autoencoder (diffusers' `AutoencoderKL`:
//! images in `[-1, 1]` to latent distributions (mean, log-variance) and latents back to
//! images) and the tiny autoencoder of the same latent space (diffusers' `AutoencoderTiny`,
//! TAESD weights: [`AutoencoderTiny`]), which decodes in a fraction of the time.
//!
//! ```no_run
//! use sonic_vae::AutoencoderKL;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let vae = AutoencoderKL::from_dir(std::path::Path::new("sd/vae"), &device)?;
//! let image = burn::tensor::Tensor::<4>::zeros([1, 3, 512, 512], &device);
//! let dist = vae.encode(image)?;
//! let latents = dist.mean.clone().mul_scalar(vae.scaling_factor());
//! let decoded = vae.decode(latents.div_scalar(vae.scaling_factor()))?; // [1, 3, 512, 512]
//! # Ok(()) }
//! ```

pub mod autoencoder_kl;
pub mod autoencoder_tiny;
pub mod config;
pub mod error;

pub use autoencoder_kl::{AutoencoderKL, DiagonalGaussian};
pub use autoencoder_tiny::{AutoencoderTiny, TinyVaeConfig};
pub use config::VaeConfig;
pub use error::VaeError;
