//! # sonic-diffusion
//!
//! SonicDiffusion (audio-conditioned image generation and editing on a frozen Stable
//! Diffusion, arXiv 2405.00878) in Rust on the Burn framework. This crate re-exports the
//! workspace's crates:
//!
//! | module | crate | holds |
//! |---|---|---|
//! | [`core`] | `sonic-core` | weight loading, configs, devices, fixtures |
//! | [`kernels`] | `sonic-kernels` | CPU kernels for the flex backend (fused attention, GroupNorm) |
//! | [`schedulers`] | `sonic-schedulers` | DDIM, DDIM-inverse, PNDM, Euler, DPM-Solver++ 2M, DDPM |
//! | [`clip`] | `sonic-clip` | CLIP tokenizer, text encoder, image / text towers with projection |
//! | [`layers`] | `sonic-layers` | resnet / up / down sampling blocks |
//! | [`attn`] | `sonic-attn` | diffusers-style attention |
//! | [`vae`] | `sonic-vae` | AutoencoderKL |
//! | [`unet`] | `sonic-unet` | UNet2DConditionModel with adapter and feature hooks |
//! | [`audio`] | `sonic-audio` | audio decoding, log-mel features, the CLAP audio encoder |
//! | [`projector`] | `sonic-projector` | the audio projector (CLAP embedding to audio tokens) |
//! | [`pipeline`] | `sonic-pipeline` | model loading, generation, editing, hub downloads, output |
//! | [`eval`] | `sonic-eval` | the evaluation metrics: CLIP score, IIS, AIS, AIC, FID, LPIPS |
//! | [`caption`] | `sonic-caption` | the BLIP image captioner and its decoding |
//! | [`train`] | `sonic-train` | datasets, caches, captions, the stage-1 / stage-2 trainers |
//! | [`hub`] | `sonic-hub` | verified, resumable Hugging Face hub downloads |
//! | [`tune`] | `sonic-tune` | hyperparameter search (spaces, samplers, pruners, studies) |
//! | [`parity`] | `sonic-parity` | parity runners for the PyTorch reference fixtures |
//! | [`bench`](mod@bench) | `sonic-bench` | the toy-world learnability benchmark |
//!
//! [`burn`] and [`image`] are re-exported too, so a downstream crate needs no other
//! dependency: its tensors are `burn::tensor::Tensor`, its pictures `image::RgbImage`.
//!
//! ```no_run
//! use sonic_diffusion::pipeline::hub::Checkpoint;
//! use sonic_diffusion::pipeline::sonic::{AudioSource, SonicPipeline};
//! use sonic_diffusion::pipeline::{AudioToImage, output};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // SD v1.4, CLAP and the landscape checkpoint, downloaded into the Hugging Face cache on first use.
//! let pipe = SonicPipeline::builder().preset(Checkpoint::Landscape).build()?;
//! let sound = pipe.embed(&[AudioSource::File("rain.wav".into())])?;
//! let req = AudioToImage { seed: 7, ..AudioToImage::default() };
//! let out = pipe.generate(sound, &req, &mut |_| {})?;
//! let pictures: Vec<sonic_diffusion::image::RgbImage> = output::to_images(&out.images)?;
//! output::save_images(&out.images, "rain.jpg".as_ref(), &[])?;
//! # let _ = pictures; Ok(()) }
//! ```
//!
//! The examples (`cargo run --example NAME`): `text_to_image`, `audio_to_image`, `mixing`,
//! `editing`, and `downstream` (generate, mix, edit and train through these re-exports only).

pub use burn;
pub use image;
pub use sonic_attn as attn;
pub use sonic_audio as audio;
pub use sonic_bench as bench;
pub use sonic_caption as caption;
pub use sonic_clip as clip;
pub use sonic_core as core;
pub use sonic_eval as eval;
pub use sonic_hub as hub;
pub use sonic_kernels as kernels;
pub use sonic_layers as layers;
pub use sonic_parity as parity;
pub use sonic_pipeline as pipeline;
pub use sonic_projector as projector;
pub use sonic_schedulers as schedulers;
pub use sonic_serve as serve;
pub use sonic_train as train;
pub use sonic_tune as tune;
pub use sonic_unet as unet;
pub use sonic_vae as vae;
pub use sonic_video as video;
