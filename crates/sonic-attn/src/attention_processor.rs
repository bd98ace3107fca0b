//! diffusers' `Attention` module.

use burn::module::Module;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use sonic_kernels::linear::forward as linear;

/// The shape of an [`Attention`].
#[derive(Debug, Clone)]
pub struct AttentionConfig {
    /// Width of the queries (and of the output).
    pub query_dim: usize,
    /// Width of the context tokens for cross-attention (`None`: self-attention).
    pub cross_attention_dim: Option<usize>,
    /// Number of heads.
    pub heads: usize,
    /// Width of each head.
    pub dim_head: usize,
    /// Whether `to_q`, `to_k`, `to_v` have biases (the VAE: yes; the UNet: no).
    pub qkv_bias: bool,
    /// GroupNorm `(groups, eps)` applied to a spatial input first (the VAE).
    pub group_norm: Option<(usize, f64)>,
    /// Whether the input is added back to the output (the VAE).
    pub residual_connection: bool,
}

impl AttentionConfig {
    /// Self-attention over `query_dim`-wide tokens, without biases, norm or residual.
    pub fn new(query_dim: usize, heads: usize, dim_head: usize) -> Self {
        Self {
            query_dim,
            cross_attention_dim: None,
            heads,
            dim_head,
            qkv_bias: false,
            group_norm: None,
            residual_connection: false,
        }
    }

    /// Makes it a cross-attention over `context_dim`-wide tokens.
    pub fn with_cross(mut self, context_dim: usize) -> Self {
        self.cross_attention_dim = Some(context_dim);
        self
    }

    /// Sets whether the q/k/v projections have biases.
    pub fn with_qkv_bias(mut self, bias: bool) -> Self {
        self.qkv_bias = bias;
        self
    }

    /// Adds a GroupNorm on the (spatial) input.
    pub fn with_group_norm(mut self, groups: usize, eps: f64) -> Self {
        self.group_norm = Some((groups, eps));
        self
    }

    /// Adds the input back to the output.
    pub fn with_residual(mut self, residual: bool) -> Self {
        self.residual_connection = residual;
        self
    }
}

/// Multi-head attention with diffusers' parameter names.
#[derive(Module, Debug)]
pub struct Attention {
    /// Optional GroupNorm over the channels of a spatial input.
    pub group_norm: Option<GroupNorm>,
    /// Query projection.
    pub to_q: Linear,
    /// Key projection.
    pub to_k: Linear,
    /// Value projection.
    pub to_v: Linear,
    /// Output projection (`to_out.0`; `to_out.1` is dropout and has no weights).
    pub to_out: Vec<Linear>,
    /// Number of heads.
    pub heads: usize,
    /// Whether the input is added back to the output.
    pub residual_connection: bool,
}

/// Splits `[B, N, heads * d]` into `[B, heads, N, d]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, n, c] = x.dims();
    x.reshape([b, n, heads, c / heads]).swap_dims(1, 2)
}

/// Merges `[B, heads, N, d]` back into `[B, N, heads * d]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, n, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, n, h * d])
}

/// Scaled dot-product attention of `[B, heads, N, d]` queries over `[B, heads, M, d]` keys and
/// values, with the `1 / sqrt(d)` scale: the fused kernel of `sonic-kernels` on the `flex`
/// device, Burn's `attention` on every other device.
pub fn scaled_dot_product(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    sonic_kernels::attention::scaled_dot_product(q, k, v)
}

impl Attention {
    /// Builds the module with untrained weights.
    pub fn new(config: &AttentionConfig, device: &Device) -> Self {
        let inner = config.heads * config.dim_head;
        let ctx = config.cross_attention_dim.unwrap_or(config.query_dim);
        let lin = |i, o, bias| LinearConfig::new(i, o).with_bias(bias).init(device);
        Self {
            group_norm: config
                .group_norm
                .map(|(g, eps)| sonic_layers::group_norm(g, config.query_dim, eps, device)),
            to_q: lin(config.query_dim, inner, config.qkv_bias),
            to_k: lin(ctx, inner, config.qkv_bias),
            to_v: lin(ctx, inner, config.qkv_bias),
            to_out: vec![lin(inner, config.query_dim, true)],
            heads: config.heads,
            residual_connection: config.residual_connection,
        }
    }

    /// The query projection split into heads: `[B, heads, N, d]`.
    pub fn query(&self, x: Tensor<3>) -> Tensor<4> {
        split_heads(linear(&self.to_q, x), self.heads)
    }

    /// The key and value projections of `context` split into heads. For cross-attention these
    /// depend only on the context and can be computed once and reused.
    pub fn key_value(&self, context: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (
            split_heads(linear(&self.to_k, context.clone()), self.heads),
            split_heads(linear(&self.to_v, context), self.heads),
        )
    }

    /// Attends with given per-head queries, keys and values and applies `to_out`.
    pub fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<3> {
        let o = merge_heads(scaled_dot_product(q, k, v));
        self.project_out(o)
    }

    /// Applies the output projection `to_out.0`.
    pub fn project_out(&self, x: Tensor<3>) -> Tensor<3> {
        self.to_out.iter().fold(x, |h, l| linear(l, h))
    }

    /// Token attention: `x` `[B, N, query_dim]` over `context` `[B, M, ctx_dim]`
    /// (`None`: self-attention). No norm or residual (see [`Self::forward_spatial`]).
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let q = self.query(x.clone());
        let (k, v) = self.key_value(context.unwrap_or(x));
        self.attend(q, k, v)
    }

    /// Self-attention over the pixels of `[B, C, H, W]`, with the optional GroupNorm first and
    /// the optional residual connection, as diffusers' VAE mid block.
    pub fn forward_spatial(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = match &self.group_norm {
            Some(gn) => sonic_kernels::norm::group_norm(gn, x.clone()),
            None => x.clone(),
        };
        let tokens = normed.reshape([b, c, h * w]).swap_dims(1, 2);
        let out = self
            .forward(tokens, None)
            .swap_dims(1, 2)
            .reshape([b, c, h, w]);
        if self.residual_connection {
            out + x
        } else {
            out
        }
    }
}
