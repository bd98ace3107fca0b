//! CLIP on Burn, equal to transformers: the tokenizer and text encoder Stable Diffusion
//! conditions on (`CLIPTokenizer`, `CLIPTextModel`), and the towers with projection that the
//! evaluation metrics use (`CLIPTextModelWithProjection`, `CLIPVisionModelWithProjection`,
//! `CLIPImageProcessor`).
//!
//! ```no_run
//! use sonic_clip::{ClipTextModel, tokenizer::ClipTokenizer};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let model_dir = std::path::Path::new("stable-diffusion-v1-4");
//! let tokenizer = ClipTokenizer::from_dir(&model_dir.join("tokenizer"))?;
//! let encoder = ClipTextModel::from_dir(&model_dir.join("text_encoder"), &device)?;
//! let ids = tokenizer.encode("a stormy sky over the sea")?;
//! let hidden = encoder.forward(ids.to_tensor(&device))?; // [1, 77, 768]
//! # Ok(()) }
//! ```

pub mod encoder;
pub mod error;
pub mod image_processor;
pub mod text_encoder;
pub mod tokenizer;
pub mod vision_model;

pub use error::ClipError;
pub use image_processor::{ClipImageProcessor, RgbImage};
pub use text_encoder::{ClipTextConfig, ClipTextModel, ClipTextModelWithProjection, HiddenAct};
pub use vision_model::{ClipVisionConfig, ClipVisionModelWithProjection, ClipVisionOutput};
