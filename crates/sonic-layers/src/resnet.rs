//! `ResnetBlock2D` (diffusers' default variant: `time_embedding_norm="default"`,
//! output scale 1, pre-activation GroupNorm + SiLU).

use crate::{conv2d, group_norm};
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};
use sonic_kernels::norm::group_norm_silu;

/// `norm1 -> SiLU -> conv1 (+ time_emb_proj(SiLU(temb))) -> norm2 -> SiLU -> conv2`, plus the
/// (1x1-projected when the width changes) input.
#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    /// GroupNorm on the input.
    pub norm1: GroupNorm,
    /// First 3x3 convolution.
    pub conv1: Conv2d,
    /// Projection of the time embedding to the output width (UNet only).
    pub time_emb_proj: Option<Linear>,
    /// GroupNorm before the second convolution.
    pub norm2: GroupNorm,
    /// Second 3x3 convolution.
    pub conv2: Conv2d,
    /// 1x1 projection of the input when the width changes.
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// A block `c_in -> c_out`; `temb_channels` is the time-embedding width (None in the VAE).
    pub fn new(
        c_in: usize,
        c_out: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: group_norm(groups, c_in, eps, device),
            conv1: conv2d(c_in, c_out, 3, 1, 1, device),
            time_emb_proj: temb_channels.map(|t| LinearConfig::new(t, c_out).init(device)),
            norm2: group_norm(groups, c_out, eps, device),
            conv2: conv2d(c_out, c_out, 3, 1, 1, device),
            conv_shortcut: (c_in != c_out).then(|| conv2d(c_in, c_out, 1, 1, 0, device)),
        }
    }

    /// The residual branch alone (the output of `conv2`, before the skip addition); this is
    /// the feature Plug-and-Play editing captures and injects.
    pub fn residual(&self, x: Tensor<4>, temb: Option<Tensor<2>>) -> Tensor<4> {
        let h = crate::conv2d_forward(&self.conv1, group_norm_silu(&self.norm1, x));
        let h = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(t)) => {
                let t = sonic_kernels::linear::forward(proj, silu(t));
                let [n, c] = t.dims();
                h + t.reshape([n, c, 1, 1])
            }
            _ => h,
        };
        crate::conv2d_forward(&self.conv2, group_norm_silu(&self.norm2, h))
    }

    /// Adds the (projected) input to a residual branch computed by [`Self::residual`].
    pub fn combine(&self, x: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
        let skip = match &self.conv_shortcut {
            Some(c) => crate::conv2d_forward(c, x),
            None => x,
        };
        skip + residual
    }

    /// The whole block.
    pub fn forward(&self, x: Tensor<4>, temb: Option<Tensor<2>>) -> Tensor<4> {
        let r = self.residual(x.clone(), temb);
        self.combine(x, r)
    }
}
