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

/// The precomputed adapter inputs of one sampling run.
#[derive(Debug, Clone)]
pub struct AdapterInput {
    /// Per adapter (traversal order): keys and values `[B, heads, tokens, d]`.
    pub kv: Vec<(Tensor<4>, Tensor<4>)>,
    /// Per adapter strengths.
    pub strength: AdapterStrength,
}
