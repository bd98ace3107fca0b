//! SonicDiffusion pipelines: loading a diffusers-layout Stable Diffusion folder and generating
//! images, with progress reported through a callback.
//!
//! ```no_run
//! use sonic_pipeline::{StableDiffusion, TextToImage, text_to_image};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let sd = StableDiffusion::from_dir(std::path::Path::new("stable-diffusion-v1-4"), &device)?;
//! let mut req = TextToImage::new("a lighthouse in a thunderstorm");
//! req.steps = 25;
//! req.seed = 42;
//! let out = text_to_image(&sd, &req, &mut |p| eprintln!("step {}/{}", p.step, p.total))?;
//! sonic_pipeline::output::save_pngs(&out.images, "out.png".as_ref(), &[])?;
//! # Ok(()) }
//! ```

pub mod audio_to_image;
pub mod edit;
pub mod error;
pub mod hub;
pub mod image_input;
pub mod memory;
pub mod output;
pub mod sampling;
pub mod sonic;
pub mod stable_diffusion;
pub mod text_to_image;

pub use audio_to_image::{AudioToImage, audio_to_image};
pub use error::PipelineError;
pub use stable_diffusion::StableDiffusion;
pub use text_to_image::{Generation, Progress, TextToImage, text_to_image};
