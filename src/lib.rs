//! # sonic-diffusion
//!
//! SonicDiffusion (audio-conditioned image generation and editing on a frozen Stable
//! Diffusion, arXiv 2405.00878) in Rust on the Burn framework. This crate re-exports the
//! workspace's crates:
//!
//! | module | crate | holds |
//! |---|---|---|
//! | [`core`] | `sonic-core` | weight loading, configs, devices, fixtures |
//! | [`schedulers`] | `sonic-schedulers` | DDIM, DDIM-inverse, PNDM, Euler, DPM-Solver++ 2M, DDPM |
//! | [`clip`] | `sonic-clip` | CLIP tokenizer and text encoder |
//! | [`layers`] | `sonic-layers` | resnet / up / down sampling blocks |
//! | [`attn`] | `sonic-attn` | diffusers-style attention |
//! | [`vae`] | `sonic-vae` | AutoencoderKL |
//! | [`unet`] | `sonic-unet` | UNet2DConditionModel with adapter and feature hooks |
//! | [`pipeline`] | `sonic-pipeline` | model loading and generation |
//!
//! ```no_run
//! use sonic_diffusion::pipeline::{StableDiffusion, TextToImage, text_to_image};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_diffusion::core::device::parse_device("flex")?;
//! let sd = StableDiffusion::from_dir("stable-diffusion-v1-4".as_ref(), &device)?;
//! let out = text_to_image(&sd, &TextToImage::new("a foggy harbour at dawn"), &mut |_| {})?;
//! sonic_diffusion::pipeline::output::save_pngs(&out.images, "harbour.png".as_ref(), &[])?;
//! # Ok(()) }
//! ```

pub use sonic_attn as attn;
pub use sonic_clip as clip;
pub use sonic_core as core;
pub use sonic_kernels as kernels;
pub use sonic_layers as layers;
pub use sonic_pipeline as pipeline;
pub use sonic_schedulers as schedulers;
pub use sonic_unet as unet;
pub use sonic_vae as vae;
