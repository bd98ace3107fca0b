//! `Transformer2DModel` and `BasicTransformerBlock` (diffusers' `transformer_2d.py` and
//! `attention.py`), with the optional gated audio adapter of SonicDiffusion in each block.

use crate::hooks::{AdapterTap, UNetHook};
use crate::unet_2d_blocks::{BlockInputs, BlockSource};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use sonic_attn::{Attention, AttentionConfig};
use sonic_core::weights::Remap;
use sonic_kernels::linear::forward as linear;
use sonic_kernels::norm::layer_norm;

/// The epsilon of the transformer blocks' LayerNorms (diffusers' `norm_eps` default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `GEGLU`: `proj` to twice the width, then `hidden * gelu(gate)`.
#[derive(Module, Debug)]
pub struct GeGlu {
    /// `dim -> 2 * inner`.
    pub proj: Linear,
}

impl GeGlu {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        sonic_kernels::activation::geglu(linear(&self.proj, x))
    }
}

/// `FeedForward` with GEGLU activation. diffusers stores it as the list `net` =
/// `[GEGLU, Dropout, Linear]`; the file keys `ff.net.0.*` and `ff.net.2.*` map to `geglu` and
/// `out` ([`feed_forward_remaps`]).
#[derive(Module, Debug)]
pub struct FeedForward {
    /// `net.0`.
    pub geglu: GeGlu,
    /// `net.2`.
    pub out: Linear,
}

/// The inverse of [`feed_forward_remaps`]: a module path to diffusers' key.
pub fn feed_forward_file_key(module_key: &str) -> String {
    module_key
        .replace(".ff.geglu.", ".ff.net.0.")
        .replace(".ff.out.", ".ff.net.2.")
}

/// The key rewrites from diffusers' `ff.net.N` list to [`FeedForward`]'s fields.
pub fn feed_forward_remaps() -> Vec<Remap> {
    vec![
        Remap::new(r"\.ff\.net\.0\.", ".ff.geglu."),
        Remap::new(r"\.ff\.net\.2\.", ".ff.out."),
    ]
}

/// The shape of one [`BasicTransformerBlock`].
#[derive(Debug, Clone, Copy)]
pub struct BlockDims {
    /// Width of the hidden states.
    pub dim: usize,
    /// Heads.
    pub heads: usize,
    /// Width of the text tokens.
    pub cross_attention_dim: usize,
}

/// Self-attention, text cross-attention, optional gated adapter, GEGLU feed-forward; each
/// pre-normed with a LayerNorm and residual.
#[derive(Module, Debug)]
pub struct BasicTransformerBlock {
    /// Norm before self-attention.
    pub norm1: LayerNorm,
    /// Self-attention.
    pub attn1: Attention,
    /// Norm before the text cross-attention.
    pub norm2: LayerNorm,
    /// Text cross-attention.
    pub attn2: Attention,
    /// Norm of the adapter input (SonicDiffusion).
    pub norm_adapter: Option<LayerNorm>,
    /// Adapter cross-attention over the audio tokens (SonicDiffusion).
    pub attn_adapter: Option<Attention>,
    /// The adapter's scalar gate `[1]`; the adapter output is scaled by `tanh(gate)`.
    pub gate_adapter: Option<Param<Tensor<1>>>,
    /// Norm before the feed-forward.
    pub norm3: LayerNorm,
    /// Feed-forward.
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    /// A block of the given shape, without adapter.
    pub fn new(d: BlockDims, device: &Device) -> Self {
        let ln = || {
            LayerNormConfig::new(d.dim)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device)
        };
        let dh = d.dim / d.heads;
        let inner = 4 * d.dim;
        Self {
            norm1: ln(),
            attn1: Attention::new(&AttentionConfig::new(d.dim, d.heads, dh), device),
            norm2: ln(),
            attn2: Attention::new(
                &AttentionConfig::new(d.dim, d.heads, dh).with_cross(d.cross_attention_dim),
                device,
            ),
            norm_adapter: None,
            attn_adapter: None,
            gate_adapter: None,
            norm3: ln(),
            ff: FeedForward {
                geglu: GeGlu {
                    proj: LinearConfig::new(d.dim, 2 * inner).init(device),
                },
                out: LinearConfig::new(inner, d.dim).init(device),
            },
        }
    }

    /// Adds a gated adapter attending over `context_dim`-wide tokens, with the block's heads
    /// and head size and the gate at `gate_init` (0 for new training).
    pub fn add_adapter(&mut self, context_dim: usize, gate_init: f32, device: &Device) {
        let dim = self.norm1.gamma.dims()[0];
        let heads = self.attn1.heads;
        self.norm_adapter = Some(
            LayerNormConfig::new(dim)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device),
        );
        self.attn_adapter = Some(Attention::new(
            &AttentionConfig::new(dim, heads, dim / heads).with_cross(context_dim),
            device,
        ));
        self.gate_adapter = Some(Param::from_tensor(
            Tensor::<1>::zeros([1], device).add_scalar(gate_init),
        ));
    }

    /// Whether this block has an adapter.
    pub fn has_adapter(&self) -> bool {
        self.attn_adapter.is_some()
    }

    /// The adapter's keys and values for `tokens` (None without adapter).
    pub fn adapter_kv(&self, tokens: Tensor<3>) -> Option<(Tensor<4>, Tensor<4>)> {
        self.attn_adapter.as_ref().map(|a| a.key_value(tokens))
    }

    /// Runs the block on `[B, N, dim]` tokens. `inputs` holds this block's precomputed text
    /// keys / values (else they are computed from `text`) and adapter keys / values and
    /// strength; `name` is the block's path for hooks.
    pub fn forward(
        &self,
        h: Tensor<3>,
        text: &Tensor<3>,
        inputs: &BlockInputs,
        hook: &mut dyn UNetHook,
        name: &dyn Fn() -> String,
    ) -> Tensor<3> {
        // Self-attention, with optional Q/K observation or injection.
        let x = layer_norm(&self.norm1, LAYER_NORM_EPS, h.clone());
        let q = self.attn1.query(x.clone());
        let (k, v) = self.attn1.key_value(x);
        let (q, k) = if hook.active() {
            let n = format!("{}.attn1", name());
            if hook.wants_self_attention(&n) {
                hook.self_attention_qk(&n, q, k)
            } else {
                (q, k)
            }
        } else {
            (q, k)
        };
        let h = self.attn1.attend(q, k, v) + h;
        // Text cross-attention, with the keys / values of the run when given.
        let x = layer_norm(&self.norm2, LAYER_NORM_EPS, h.clone());
        let h = match &inputs.text_kv {
            Some((k, v)) => self.attn2.attend(self.attn2.query(x), k.clone(), v.clone()),
            None => self.attn2.forward(x, Some(text.clone())),
        } + h;
        // Gated adapter.
        let h = match (
            &self.norm_adapter,
            &self.attn_adapter,
            &self.gate_adapter,
            &inputs.adapter,
        ) {
            (Some(norm), Some(attn), Some(gate), Some(((k, v), f))) => {
                let active = hook.active();
                if active {
                    hook.adapter_tap(&name(), AdapterTap::In, &h);
                }
                let q = attn.query(layer_norm(norm, LAYER_NORM_EPS, h.clone()));
                let a = attn.attend(q, k.clone(), v.clone());
                if active {
                    hook.adapter_tap(&name(), AdapterTap::Attn, &a);
                }
                let scale = gate.val().tanh().mul_scalar(*f).reshape([1, 1, 1]);
                let h = h + a * scale;
                if active {
                    hook.adapter_tap(&name(), AdapterTap::Out, &h);
                }
                h
            }
            _ => h,
        };
        self.ff
            .forward_residual(layer_norm(&self.norm3, LAYER_NORM_EPS, h.clone()), h)
    }
}

impl FeedForward {
    fn forward_residual(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        linear(&self.out, self.geglu.forward(x)) + residual
    }
}

/// `proj_in` / `proj_out`: a 1x1 convolution (SD 1.x) or a linear layer (SD 2.x).
#[derive(Module, Debug)]
pub enum Projection {
    /// `use_linear_projection = false`.
    Conv(Conv2d),
    /// `use_linear_projection = true`.
    Linear(Linear),
}

/// `Transformer2DModel` (continuous input): GroupNorm, `proj_in`, transformer blocks,
/// `proj_out`, residual.
#[derive(Module, Debug)]
pub struct Transformer2DModel {
    /// GroupNorm (eps 1e-6).
    pub norm: GroupNorm,
    /// Input projection.
    pub proj_in: Projection,
    /// The transformer blocks.
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    /// Output projection.
    pub proj_out: Projection,
}

impl Transformer2DModel {
    /// `layers` blocks of shape `d` over `d.dim` channels.
    pub fn new(
        d: BlockDims,
        layers: usize,
        groups: usize,
        linear_projection: bool,
        device: &Device,
    ) -> Self {
        let proj = || {
            if linear_projection {
                Projection::Linear(LinearConfig::new(d.dim, d.dim).init(device))
            } else {
                Projection::Conv(sonic_layers::conv2d(d.dim, d.dim, 1, 1, 0, device))
            }
        };
        Self {
            norm: sonic_layers::group_norm(groups, d.dim, 1e-6, device),
            proj_in: proj(),
            transformer_blocks: (0..layers)
                .map(|_| BasicTransformerBlock::new(d, device))
                .collect(),
            proj_out: proj(),
        }
    }

    /// Runs on `[B, C, H, W]`. `blocks` gives each transformer block, by its path, its
    /// precomputed inputs (text and adapter keys / values); `name` is this module's path (for
    /// the blocks' paths and the hooks).
    pub fn forward(
        &self,
        x: Tensor<4>,
        text: &Tensor<3>,
        blocks: &mut BlockSource<'_>,
        hook: &mut dyn UNetHook,
        name: &dyn Fn() -> String,
    ) -> Tensor<4> {
        let [b, c, hh, ww] = x.dims();
        let h = sonic_kernels::norm::group_norm(&self.norm, x.clone());
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => sonic_layers::conv2d_forward(conv, h)
                .reshape([b, c, hh * ww])
                .swap_dims(1, 2),
            Projection::Linear(lin) => linear(lin, h.reshape([b, c, hh * ww]).swap_dims(1, 2)),
        };
        for (i, block) in self.transformer_blocks.iter().enumerate() {
            let block_name = || format!("{}.transformer_blocks.{i}", name());
            let inputs = blocks(&block_name());
            tokens = block.forward(tokens, text, &inputs, hook, &block_name);
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => {
                sonic_layers::conv2d_forward(conv, tokens.swap_dims(1, 2).reshape([b, c, hh, ww]))
            }
            Projection::Linear(lin) => linear(lin, tokens).swap_dims(1, 2).reshape([b, c, hh, ww]),
        };
        out + x
    }
}
