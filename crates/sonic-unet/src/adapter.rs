//! Inputs of the gated cross-attention adapters (docs/ARCHITECTURE.md, "The model": gated adapters): per adapter,
//! the keys and values of its context tokens (computed once per sampling run) and its
//! strength `f`.

use burn::tensor::Tensor;

/// How strongly each adapter acts (`f` in `h + f * tanh(gate) * attn(norm(h), tokens)`).
#[derive(Debug, Clone, PartialEq)]
pub enum AdapterStrength {
    /// The same strength for every adapter (official default 1.0).
    Global(f32),
    /// One strength per adapter, in the UNet's traversal order (down, mid, up blocks).
    PerAdapter(Vec<f32>),
}

impl AdapterStrength {
    /// The strength of adapter `i`.
    pub fn get(&self, i: usize) -> f32 {
        match self {
            AdapterStrength::Global(f) => *f,
            AdapterStrength::PerAdapter(v) => v.get(i).copied().unwrap_or(0.0),
        }
    }
}

/// The keys and values of one adapter, with the path of the transformer block it belongs to.
#[derive(Debug, Clone)]
pub struct AdapterKv {
    /// The transformer block's path (`up_blocks.1.attentions.0.transformer_blocks.0`), as the
    /// hooks and the weight keys name it.
    pub block: String,
    /// Keys `[B, heads, tokens, d]`.
    pub key: Tensor<4>,
    /// Values `[B, heads, tokens, d]`.
    pub value: Tensor<4>,
}

/// The precomputed adapter inputs of one sampling run.
#[derive(Debug, Clone)]
pub struct AdapterInput {
    /// Per adapter (traversal order: down, mid, up blocks): its block and keys / values.
    pub kv: Vec<AdapterKv>,
    /// Per adapter strengths.
    pub strength: AdapterStrength,
}

impl AdapterInput {
    /// The keys / values and the strength of the adapter of transformer block `block` (its
    /// path), if the run has one.
    pub fn get(&self, block: &str) -> Option<((Tensor<4>, Tensor<4>), f32)> {
        let i = self.kv.iter().position(|a| a.block == block)?;
        let a = &self.kv[i];
        Some(((a.key.clone(), a.value.clone()), self.strength.get(i)))
    }
}
