//! Stable Diffusion's text side: the CLIP tokenizer and the CLIP text encoder, equal to
//! transformers' `CLIPTokenizer` and `CLIPTextModel`.
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

pub mod error;
pub mod text_encoder;
pub mod tokenizer;

pub use error::ClipError;
pub use text_encoder::{ClipTextConfig, ClipTextModel, HiddenAct};
