//! `Upsample2D`: nearest-neighbour upsampling followed by a 3x3 convolution.

use burn::module::{Module, Param, ParamId};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

/// Nearest-neighbour upsampling (x2, or to an explicit size) then a 3x3 convolution.
#[derive(Module, Debug)]
pub struct Upsample2D {
    /// The convolution after upsampling.
    pub conv: Conv2d,
}

/// Nearest-neighbour upsampling by exactly two, as `F.interpolate(scale_factor=2.0)`.
pub fn upsample_nearest2x(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

/// Nearest-neighbour resize to `[h, w]`, as `F.interpolate(size=..., mode="nearest")`
/// (source index `floor(dst * in / out)`).
pub fn upsample_nearest(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if size == [2 * h, 2 * w] {
        return upsample_nearest2x(x);
    }
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size(size),
    )
}

/// The sums of a 3x3 kernel's taps along axis `dim` (2: rows, 3: columns) that one output
/// parity of a nearest x2 upsampling sees: parity 0 reads source offsets `-1, 0` with taps
/// `[w0, w1 + w2]`, parity 1 reads `0, +1` with `[w0 + w1, w2]`.
fn fold_taps(w: Tensor<4>, dim: usize, parity: usize) -> Tensor<4> {
    let tap = |i| w.clone().narrow(dim, i, 1);
    let pair = if parity == 0 {
        [tap(0), tap(1) + tap(2)]
    } else {
        [tap(0) + tap(1), tap(2)]
    };
    Tensor::cat(pair.to_vec(), dim)
}

/// `conv(upsample_nearest2x(x))` for a 3x3, stride-1, padding-1 convolution, computed at the
/// input resolution: each of the four output parities `(a, b)` is a 2x2 convolution of `x`
/// with the taps that the nearest-neighbour copies make coincide summed (exact up to float
/// rounding), and the four run as one convolution with `4 * C_out` output channels. That is
/// 16 instead of 36 multiply-adds per output value, and the upsampled tensor is never built.
/// Any other convolution gets `x` back as the error.
// The error hands the caller's tensor back by value (no copy), hence its size.
#[allow(clippy::result_large_err)]
pub fn upsample2x_conv3x3(conv: &Conv2d, x: Tensor<4>) -> Result<Tensor<4>, Tensor<4>> {
    let [b, c, h, w] = x.dims();
    let w_dims = conv.weight.dims();
    let fits = conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
        && w_dims[1] == c
        && b * h * w > 0;
    if !fits {
        return Err(x);
    }
    // The kernel on plain flex (f32 / bf16); Burn's operations below everywhere else.
    let x = match sonic_kernels::upsample::upsample2x_conv3x3(conv, x) {
        Ok(y) => return Ok(y),
        Err(x) => x,
    };
    let c_out = w_dims[0];
    let weight = conv.weight.val();
    let mut kernels = Vec::with_capacity(4);
    for a in 0..2 {
        let rows = fold_taps(weight.clone(), 2, a);
        for p in 0..2 {
            kernels.push(fold_taps(rows.clone(), 3, p));
        }
    }
    let bias = conv
        .bias
        .as_ref()
        .map(|bias| Tensor::cat(vec![bias.val(); 4], 0));
    // Source offsets -1..=+1 around each pixel: pad 1 on every side, 2x2 windows give
    // (h + 1) x (w + 1) outputs, parity (a, b) takes rows a.. and columns b.. of its group.
    // Run as a convolution module so that `conv2d_forward` picks im2col at low resolution.
    // `Param::initialized` keeps the folded tensors as they are: on an autodiff device they are
    // results of the stored weights (gradients flow back to those), not new leaves, which
    // `Param::from_tensor` would try to make them.
    let param = |t: Tensor<4>| Param::initialized(ParamId::new(), t);
    let folded = Conv2d {
        weight: param(Tensor::cat(kernels, 0)),
        bias: bias.map(|b| Param::initialized(ParamId::new(), b)),
        stride: [1, 1],
        kernel_size: [2, 2],
        dilation: [1, 1],
        groups: 1,
        padding: PaddingConfig2d::Explicit(1, 1, 1, 1),
    };
    let y = crate::conv2d_forward(&folded, x);
    let part = |g: usize, a: usize, p: usize| {
        y.clone()
            .narrow(1, g * c_out, c_out)
            .narrow(2, a, h)
            .narrow(3, p, w)
    };
    let row = |a: usize| Tensor::stack::<5>(vec![part(2 * a, a, 0), part(2 * a + 1, a, 1)], 4);
    Ok(Tensor::stack::<6>(vec![row(0), row(1)], 3).reshape([b, c_out, 2 * h, 2 * w]))
}

impl Upsample2D {
    /// An upsampler `c_in -> c_out`.
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self {
            conv: crate::conv2d(c_in, c_out, 3, 1, 1, device),
        }
    }

    /// Upsamples to `size` (default: twice the input) and convolves; at exactly twice the
    /// size through [`upsample2x_conv3x3`] (the same result, a fraction of the work).
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let size = size.unwrap_or([2 * h, 2 * w]);
        let x = if size == [2 * h, 2 * w] {
            match upsample2x_conv3x3(&self.conv, x) {
                Ok(y) => return y,
                Err(x) => x,
            }
        } else {
            x
        };
        self.forward_reference(x, size)
    }

    /// Upsampling then convolution, literally (the reference [`Self::forward`] is tested
    /// against).
    pub fn forward_reference(&self, x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
        crate::conv2d_forward(&self.conv, upsample_nearest(x, size))
    }
}
