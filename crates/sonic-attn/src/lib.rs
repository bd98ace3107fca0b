//! Attention as diffusers builds it (`models/attention_processor.py`'s `Attention`):
//! multi-head scaled dot-product attention with `to_q`, `to_k`, `to_v`, `to_out.0`, optional
//! GroupNorm on a spatial input and an optional residual connection (the VAE's mid-block
//! attention), self- or cross-attention (the UNet's transformer blocks).
//!
//! ```no_run
//! use sonic_attn::attention_processor::{Attention, AttentionConfig};
//! let device = burn::tensor::Device::default();
//! // A cross-attention of 320-wide queries over 768-wide text tokens, 8 heads of 40.
//! let attn = Attention::new(&AttentionConfig::new(320, 8, 40).with_cross(768), &device);
//! let x = burn::tensor::Tensor::<3>::zeros([1, 4096, 320], &device);
//! let text = burn::tensor::Tensor::<3>::zeros([1, 77, 768], &device);
//! let y = attn.forward(x, Some(text)); // [1, 4096, 320]
//! ```

pub mod attention_processor;

pub use attention_processor::{Attention, AttentionConfig};
