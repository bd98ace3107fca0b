//! diffusers' convolutional building blocks (`models/resnet.py`, `models/downsampling.py`,
//! `models/upsampling.py`), shared by the VAE and the UNet. Field names mirror diffusers', so
//! weight keys map one to one.
//!
//! ```no_run
//! use sonic_layers::resnet::ResnetBlock2D;
//! let device = burn::tensor::Device::default();
//! let block = ResnetBlock2D::new(64, 128, None, 32, 1e-6, &device);
//! let x = burn::tensor::Tensor::<4>::zeros([1, 64, 16, 16], &device);
//! let y = block.forward(x, None); // [1, 128, 16, 16]
//! ```

pub mod downsampling;
pub mod resnet;
pub mod upsampling;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

/// A `k x k` convolution with `stride` and symmetric `padding`, biased, as PyTorch's `Conv2d`.
pub fn conv2d(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .init(device)
}

/// PyTorch's `GroupNorm(groups, channels, eps, affine=True)`.
pub fn group_norm(groups: usize, channels: usize, eps: f64, device: &Device) -> GroupNorm {
    GroupNormConfig::new(groups, channels)
        .with_epsilon(eps)
        .init(device)
}

/// Largest im2col buffer (elements) that [`conv2d_forward`] materialises at once; bigger
/// inputs are processed in bands of output rows (16 Mi elements = 64 MiB in float32).
pub const IM2COL_BUDGET: usize = 16 << 20;

/// Applies `conv` to `x` `[B, C, H, W]`, as `conv.forward(x)`, choosing the faster path: on
/// the plain `flex` device, `sonic_kernels::conv::conv2d` (banded im2col + packed products
/// written in the output's final layout; faster than Burn's convolution at every UNet and VAE
/// size measured in docs/PERFORMANCE.md). On other devices, [`conv2d_im2col`] when the output
/// has at most `C_out` pixels (summed over the batch), i.e. where the weight is larger than the
/// gathered input windows, Burn's own convolution otherwise.
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if sonic_kernels::conv::fits(conv, &x) {
        return sonic_kernels::conv::conv2d(conv, x);
    }
    match im2col_geometry(conv, x.dims()) {
        Some(g) if g.b * g.oh * g.ow <= g.c_out => im2col(conv, x, &g),
        _ => conv.forward(x),
    }
}

/// The convolution as im2col + one batched matmul, for dense `k x k` convolutions (`k > 1`,
/// no groups, no dilation, explicit or no padding; anything else goes to `conv.forward`):
/// the input windows are gathered once (a strided view made contiguous) and multiplied by
/// the weight in its stored `[C_out, C_in * k * k]` order. Burn's own convolution re-lays out
/// the whole weight on every call, which over few pixels costs more than the product. The
/// result equals `conv.forward(x)` up to float rounding (the sums run in another order).
/// Inputs whose im2col buffer would exceed [`IM2COL_BUDGET`] are done in bands of output
/// rows.
pub fn conv2d_im2col(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match im2col_geometry(conv, x.dims()) {
        Some(g) => im2col(conv, x, &g),
        None => conv.forward(x),
    }
}

struct Geometry {
    b: usize,
    c: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pad: (usize, usize, usize, usize),
    oh: usize,
    ow: usize,
}

fn im2col_geometry(conv: &Conv2d, dims: [usize; 4]) -> Option<Geometry> {
    let [kh, kw] = conv.kernel_size;
    let (top, left, bottom, right) = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => (t, l, b, r),
        PaddingConfig2d::Valid => (0, 0, 0, 0),
        PaddingConfig2d::Same => return None,
    };
    let [b, c, h, w] = dims;
    let [sh, sw] = conv.stride;
    let w_dims = conv.weight.dims();
    if conv.groups != 1
        || conv.dilation != [1, 1]
        || kh * kw == 1
        || sh == 0
        || sw == 0
        || w_dims[1] != c
        || h + top + bottom < kh
        || w + left + right < kw
    {
        return None;
    }
    Some(Geometry {
        b,
        c,
        c_out: w_dims[0],
        kh,
        kw,
        sh,
        sw,
        pad: (top, left, bottom, right),
        oh: (h + top + bottom - kh) / sh + 1,
        ow: (w + left + right - kw) / sw + 1,
    })
}

fn im2col(conv: &Conv2d, x: Tensor<4>, g: &Geometry) -> Tensor<4> {
    let Geometry {
        b,
        c,
        c_out,
        kh,
        kw,
        sh,
        sw,
        pad: (top, left, bottom, right),
        oh,
        ow,
    } = *g;
    let x = if top + left + bottom + right > 0 {
        x.pad(
            [(0, 0), (0, 0), (top, bottom), (left, right)],
            PadMode::Constant(0.0),
        )
    } else {
        x
    };
    let k = c * kh * kw;
    let weight = conv.weight.val().reshape([1, c_out, k]);
    // Output rows per band so that the im2col buffer [B, k, rows * ow] fits the budget.
    let rows = (IM2COL_BUDGET / (b * k * ow).max(1)).clamp(1, oh);
    let mut bands = Vec::with_capacity(oh.div_ceil(rows));
    let mut r0 = 0;
    while r0 < oh {
        let r1 = (r0 + rows).min(oh);
        let band = if r0 == 0 && r1 == oh {
            x.clone()
        } else {
            x.clone().narrow(2, r0 * sh, (r1 - 1 - r0) * sh + kh)
        };
        let n = r1 - r0;
        // [B, C, n, Wp, kh] -> [B, C, n, ow, kh, kw] -> [B, C, kh, kw, n, ow]
        let cols: Tensor<5> = band.unfold(2, kh, sh);
        let cols: Tensor<6> = cols.unfold(3, kw, sw);
        let cols = cols.permute([0, 1, 4, 5, 2, 3]).reshape([b, k, n * ow]);
        bands.push(weight.clone().matmul(cols).reshape([b, c_out, n, ow]));
        r0 = r1;
    }
    let out = if bands.len() == 1 {
        bands.remove(0)
    } else {
        Tensor::cat(bands, 2)
    };
    match &conv.bias {
        Some(bias) => out + bias.val().reshape([1, c_out, 1, 1]),
        None => out,
    }
}
