//! Stable Diffusion's noise-prediction network (diffusers' `UNet2DConditionModel`) for any
//! SD 1.x / 2.x config, with two extension points used by SonicDiffusion:
//!
//! - gated cross-attention **adapters** in the transformer blocks ([`adapter`],
//!   [`UNet2DConditionModel::add_adapters`]), attending over their own context (audio tokens)
//!   with keys / values computed once per sampling run (the text cross-attentions' too:
//!   [`UNet2DConditionModel::prepare_text`]);
//! - **hooks** ([`hooks::UNetHook`]) that observe or replace named intermediate features:
//!   block outputs, resnet residual branches, self-attention queries and keys (Plug-and-Play).
//!
//! ```no_run
//! use sonic_unet::UNet2DConditionModel;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let unet = UNet2DConditionModel::from_dir(std::path::Path::new("sd/unet"), &device)?;
//! let latents = burn::tensor::Tensor::<4>::zeros([2, 4, 64, 64], &device);
//! let text = burn::tensor::Tensor::<3>::zeros([2, 77, 768], &device);
//! let eps = unet.forward(latents, &[981.0], text)?; // [2, 4, 64, 64]
//! # Ok(()) }
//! ```

pub mod adapter;
pub mod config;
pub mod embeddings;
pub mod error;
pub mod export;
pub mod hooks;
pub mod inputs;
pub mod transformer_2d;
pub mod unet_2d_blocks;
pub mod unet_2d_condition;

pub use adapter::{AdapterInput, AdapterKv, AdapterStrength};
pub use config::UNetConfig;
pub use error::UNetError;
pub use inputs::{TextKv, UNetInputs};
pub use unet_2d_condition::{AdapterPlacement, UNet2DConditionModel};
