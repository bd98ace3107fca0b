//! `Upsample2D`: nearest-neighbour upsampling followed by a 3x3 convolution.

use crate::conv2d;
use burn::module::Module;
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

impl Upsample2D {
    /// An upsampler `c_in -> c_out`.
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        Self {
            conv: conv2d(c_in, c_out, 3, 1, 1, device),
        }
    }

    /// Upsamples to `size` (default: twice the input) and convolves.
    pub fn forward(&self, x: Tensor<4>, size: Option<[usize; 2]>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let x = upsample_nearest(x, size.unwrap_or([2 * h, 2 * w]));
        crate::conv2d_forward(&self.conv, x)
    }
}
