//! The transformer encoder shared by CLIP's text and image towers (transformers'
//! `CLIPEncoder`): pre-norm layers of multi-head self-attention (causal in the text tower) and a
//! two-layer MLP.

use crate::error::ClipError;
use crate::text_encoder::HiddenAct;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};
use std::path::Path;

/// The shape of an encoder stack.
#[derive(Debug, Clone, Copy)]
pub struct EncoderShape {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of attention heads (divides `hidden_size`).
    pub num_heads: usize,
    /// Number of layers.
    pub num_layers: usize,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// The MLP activation.
    pub act: HiddenAct,
    /// Whether each position attends only to itself and earlier ones (the text tower).
    pub causal: bool,
}

impl EncoderShape {
    /// Rejects shapes that are not a model: zero sizes, heads that do not divide the width,
    /// sizes over the sanity limits (checked before anything is allocated).
    pub fn validate(&self, origin: &Path) -> Result<(), ClipError> {
        use sonic_core::config::{check_limit, limits, unsupported};
        for (key, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(unsupported(origin, key, v, "must be positive").into());
            }
        }
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(unsupported(
                origin,
                "num_attention_heads",
                self.num_heads,
                &format!("must divide hidden_size = {}", self.hidden_size),
            )
            .into());
        }
        check_limit(origin, "hidden_size", self.hidden_size, limits::MAX_WIDTH)?;
        check_limit(
            origin,
            "intermediate_size",
            self.intermediate_size,
            limits::MAX_WIDTH,
        )?;
        check_limit(
            origin,
            "num_hidden_layers",
            self.num_layers,
            limits::MAX_LAYERS,
        )?;
        check_limit(
            origin,
            "num_attention_heads",
            self.num_heads,
            limits::MAX_HEADS,
        )?;
        Ok(())
    }
}

/// Multi-head self-attention with biased projections (causal in the text tower).
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
    /// Whether the attention is causal.
    pub causal: bool,
}

impl ClipAttention {
    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, c] = x.dims();
        let h = self.num_heads;
        let split = |t: Tensor<3>| t.reshape([b, s, h, c / h]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: self.causal,
        };
        let o = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([b, s, c]);
        self.out_proj.forward(o)
    }
}

/// The two-layer MLP.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// `hidden -> intermediate`.
    pub fc1: Linear,
    /// `intermediate -> hidden`.
    pub fc2: Linear,
    /// Whether the activation is quick-GELU (else exact GELU).
    pub quick_gelu: bool,
}

impl ClipMlp {
    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu {
            sonic_kernels::activation::quick_gelu(h)
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}

/// One pre-norm transformer layer.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Self-attention.
    pub self_attn: ClipAttention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// MLP.
    pub mlp: ClipMlp,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    pub(crate) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// The stack of encoder layers.
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The layers, in order.
    pub layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    /// An encoder of `shape` with untrained weights.
    pub fn new(shape: &EncoderShape, device: &Device) -> Self {
        let c = shape.hidden_size;
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(shape.layer_norm_eps)
                .init(device)
        };
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..shape.num_layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: lin(c, c),
                    k_proj: lin(c, c),
                    v_proj: lin(c, c),
                    out_proj: lin(c, c),
                    num_heads: shape.num_heads,
                    causal: shape.causal,
                },
                layer_norm1: ln(),
                mlp: ClipMlp {
                    fc1: lin(c, shape.intermediate_size),
                    fc2: lin(shape.intermediate_size, c),
                    quick_gelu: shape.act == HiddenAct::QuickGelu,
                },
                layer_norm2: ln(),
            })
            .collect();
        Self { layers }
    }

    /// Runs every layer over `x` (`[B, S, hidden]`).
    pub fn forward(&self, mut x: Tensor<3>) -> Tensor<3> {
        for layer in &self.layers {
            x = layer.forward(x);
        }
        x
    }
}
