//! The SonicDiffusion audio projector on Burn: MS-CLAP audio embeddings `[B, audio_dim]`
//! to the audio tokens `[B, T, context_dim]` that the gated adapters of the UNet attend to
//! (`[B, 77, 768]` for the released 1024-wide CLAP embeddings).
//!
//! The module is the official release's `Adapter(audio_token_count=77,
//! transformer_layer_count=4)`, equal to PyTorch to float32 rounding:
//!
//! - `audio_emb_projection`: convolutions over the embedding (`Conv1d(1 -> T)`, two
//!   `Conv1d(T -> T)`, a stride-3 `ConvTranspose1d`, a stride-4 `Conv1d`), exact GELUs and
//!   three LayerNorms over `[T, length]` jointly ([`model::JointLayerNorm`]);
//! - attention blocks: self-attention over the tokens (`to_{q,k,v}_adapter`, no output
//!   projection) and `between_attention[i]` (Linear, GELU, Linear) with a residual. In
//!   [`BlockMode::Faithful`] (the release, and the default) every block reads the projection
//!   output and only the last reaches the output, as the released weights were trained; in
//!   [`BlockMode::Chained`] (ours, for new training) each block reads the previous one's
//!   output;
//! - `to_out_adapter`: a final Linear.
//!
//! Sizes come from a [`ProjectorConfig`] (JSON, or inferred from a weights file's shapes);
//! weights load from the released `audio_projector_*.pth` torch pickles or from safetensors
//! ([`weights`]), after every key and shape has been checked.
//!
//! ```no_run
//! use sonic_projector::{BlockMode, Projector};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! // The released file: sizes inferred from its shapes, faithful mode.
//! let projector = Projector::from_file("ckpts/audio_projector_landscape.pth".as_ref(), &device)?;
//! let clap = burn::tensor::Tensor::<2>::zeros([2, 1024], &device); // CLAP embeddings
//! let tokens = projector.forward(clap)?; // [2, 77, 768]
//! let uncond = projector.null_tokens(2, &device)?; // projector(zeros), for guidance
//! assert_eq!(tokens.dims(), uncond.dims());
//! // The chained wiring, for new training:
//! let chained = projector.with_mode(BlockMode::Chained);
//! # let _ = chained; Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod model;
pub mod weights;

pub use config::{BlockMode, ProjectorConfig};
pub use error::ProjectorError;
pub use model::{Projector, ProjectorTrace};
