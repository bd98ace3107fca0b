//! Extension points of the UNet: observing and replacing intermediate features.
//!
//! A [`UNetHook`] is called during [`UNet2DConditionModel::forward`](crate::UNet2DConditionModel::forward)
//! with named features; it may record them (for parity checks or Plug-and-Play capture) or
//! return replacements (Plug-and-Play injection). Names follow diffusers' module paths:
//!
//! - block outputs: `time_embedding` (via [`UNetHook::time_embedding`]), `conv_in`,
//!   `down_blocks.N`, `mid_block`, `up_blocks.N`;
//! - resnet residual branches (the `conv2` output before the skip addition):
//!   `up_blocks.1.resnets.1`, `mid_block.resnets.0`, ...;
//! - self-attention queries and keys (`[B, heads, N, d]`):
//!   `up_blocks.1.attentions.1.transformer_blocks.0.attn1`, ...;
//! - adapter taps, `<block>.attentions.N.transformer_blocks.M` with an [`AdapterTap`].
//!
//! Names are only built when [`UNetHook::active`] is true, so the default [`NoHook`] costs
//! nothing.

use burn::tensor::Tensor;

/// Which point of a gated adapter a tap observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterTap {
    /// The hidden states entering the adapter (after the text cross-attention residual).
    In,
    /// The adapter's cross-attention output, before the gate and strength.
    Attn,
    /// The hidden states after the adapter residual.
    Out,
}

/// Observes and optionally replaces UNet features. Every method has a do-nothing default.
pub trait UNetHook {
    /// Whether the hook wants any callback; when false, names are not even formatted.
    fn active(&self) -> bool {
        true
    }

    /// The time embedding `[B, time_embed_dim]`.
    fn time_embedding(&mut self, _emb: &Tensor<2>) {}

    /// The output of a top-level block (`conv_in`, `down_blocks.N`, `mid_block`, `up_blocks.N`).
    fn block_output(&mut self, _name: &str, _h: &Tensor<4>) {}

    /// Whether [`Self::resnet_residual`] should be called for the resnet `name`.
    fn wants_resnet(&self, _name: &str) -> bool {
        false
    }

    /// The residual branch of resnet `name`; the returned tensor replaces it.
    fn resnet_residual(&mut self, _name: &str, h: Tensor<4>) -> Tensor<4> {
        h
    }

    /// Whether [`Self::self_attention_qk`] should be called for the attention `name`.
    fn wants_self_attention(&self, _name: &str) -> bool {
        false
    }

    /// The self-attention queries and keys of `name`; the returned pair replaces them.
    fn self_attention_qk(
        &mut self,
        _name: &str,
        q: Tensor<4>,
        k: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        (q, k)
    }

    /// A gated-adapter tap of the transformer block `name`.
    fn adapter_tap(&mut self, _name: &str, _tap: AdapterTap, _h: &Tensor<3>) {}
}

/// The hook that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl UNetHook for NoHook {
    fn active(&self) -> bool {
        false
    }
}

/// A hook that records every block output and the time embedding, by name.
#[derive(Debug, Default)]
pub struct RecordBlocks {
    /// Recorded `(name, tensor)` pairs in call order.
    pub blocks: Vec<(String, Tensor<4>)>,
    /// The time embedding, once seen.
    pub time_embedding: Option<Tensor<2>>,
    /// Recorded adapter taps `(block name, tap, tensor)`.
    pub adapter_taps: Vec<(String, AdapterTap, Tensor<3>)>,
}

impl UNetHook for RecordBlocks {
    fn time_embedding(&mut self, emb: &Tensor<2>) {
        self.time_embedding = Some(emb.clone());
    }

    fn block_output(&mut self, name: &str, h: &Tensor<4>) {
        self.blocks.push((name.to_string(), h.clone()));
    }

    fn adapter_tap(&mut self, name: &str, tap: AdapterTap, h: &Tensor<3>) {
        self.adapter_taps.push((name.to_string(), tap, h.clone()));
    }
}

/// Whether a [`FeatureBank`] records features or replaces them with recorded ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BankMode {
    /// Record the named features.
    Capture,
    /// Replace the named features with the recorded ones (same shapes).
    Inject,
}

/// Captures, then injects, resnet residual branches and self-attention queries / keys by name
/// (Plug-and-Play's feature injection when the source branch runs as its own forward pass).
#[derive(Debug, Clone)]
pub struct FeatureBank {
    /// Resnets to act on, e.g. `up_blocks.1.resnets.1`.
    pub resnets: Vec<String>,
    /// Self-attentions to act on, e.g. `up_blocks.1.attentions.1.transformer_blocks.0.attn1`.
    pub attentions: Vec<String>,
    /// Capture or inject.
    pub mode: BankMode,
    /// Recorded residual branches by name.
    pub residuals: std::collections::HashMap<String, Tensor<4>>,
    /// Recorded `(q, k)` by name.
    pub qk: std::collections::HashMap<String, (Tensor<4>, Tensor<4>)>,
}

impl FeatureBank {
    /// A bank capturing the given features.
    pub fn capture(resnets: Vec<String>, attentions: Vec<String>) -> Self {
        Self {
            resnets,
            attentions,
            mode: BankMode::Capture,
            residuals: Default::default(),
            qk: Default::default(),
        }
    }
}

impl UNetHook for FeatureBank {
    fn wants_resnet(&self, name: &str) -> bool {
        self.resnets.iter().any(|n| n == name)
    }

    fn resnet_residual(&mut self, name: &str, h: Tensor<4>) -> Tensor<4> {
        match self.mode {
            BankMode::Capture => {
                self.residuals.insert(name.to_string(), h.clone());
                h
            }
            BankMode::Inject => match self.residuals.get(name) {
                Some(r) if r.dims() == h.dims() => r.clone(),
                _ => h,
            },
        }
    }

    fn wants_self_attention(&self, name: &str) -> bool {
        self.attentions.iter().any(|n| n == name)
    }

    fn self_attention_qk(
        &mut self,
        name: &str,
        q: Tensor<4>,
        k: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        match self.mode {
            BankMode::Capture => {
                self.qk.insert(name.to_string(), (q.clone(), k.clone()));
                (q, k)
            }
            BankMode::Inject => match self.qk.get(name) {
                Some((sq, sk)) if sq.dims() == q.dims() && sk.dims() == k.dims() => {
                    (sq.clone(), sk.clone())
                }
                _ => (q, k),
            },
        }
    }
}
