//! Image captions for training data, on Burn: transformers' `BlipForConditionalGeneration`
//! (e.g. `Salesforce/blip-image-captioning-base`) and its image preprocessing, equal to
//! transformers.
//!
//! - [`config`]: `config.json` (`BlipConfig` with `vision_config` and `text_config`), validated;
//! - [`vision`]: the vision transformer (`BlipVisionModel`): pixels -> image embeddings;
//! - [`text`]: the text decoder with cross-attention and its LM head (`BlipTextLMHeadModel`);
//! - [`model`]: both, loaded one to one from a transformers folder, with the `logits` a
//!   decoding loop calls;
//! - [`processor`]: `BlipImageProcessor`'s preprocessing (sonic-clip's Pillow-exact resize).
//!
//! One decoding step: the logits of the next token after a prefix that starts with the BOS id
//! `[DEC]` (captions end with `[SEP]`):
//!
//! ```no_run
//! use burn::tensor::{Int, Tensor, TensorData};
//! use sonic_caption::{BlipForConditionalGeneration, processor};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let dir = std::path::Path::new("blip-image-captioning-base");
//! let model = BlipForConditionalGeneration::from_dir(dir, &device)?;
//! let images = processor::image_processor_from_dir(dir)?;
//! let (w, h) = (640, 480);
//! let pixels = vec![128u8; w * h * 3];
//! let picture = sonic_clip::RgbImage { width: w, height: h, pixels: &pixels };
//! let pixel_values = images.pixel_values(&[(picture, "grey.png".into())], &device)?;
//! let context = model.image_context(model.image_embeds(pixel_values)?)?;
//! let bos = model.bos_token_id().unwrap_or(30522);
//! let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![bos], [1, 1]), &device);
//! let logits = model.next_token_logits(ids, None, &context)?; // [1, vocab]
//! let next = logits.argmax(1); // greedy: the first caption token
//! # let _ = next;
//! # Ok(()) }
//! ```

pub mod config;
pub mod error;
pub mod generation;
pub mod model;
pub mod processor;
pub mod text;
pub mod tokenizer;
pub mod vision;

pub use config::{Activation, BlipConfig, BlipTextConfig, BlipVisionConfig};
pub use error::CaptionError;
pub use generation::{EarlyStopping, GenerationConfig};
pub use model::BlipForConditionalGeneration;
pub use text::{HeadLayout, ImageContext};
pub use tokenizer::BertTokenizer;
