//! `Downsample2D`: a stride-2 3x3 convolution.

use crate::conv2d;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

/// A stride-2 3x3 convolution. With `padding = 0` (the VAE encoder) the input is first padded
/// by one on the right and bottom only, as diffusers does.
#[derive(Module, Debug)]
pub struct Downsample2D {
    /// The convolution.
    pub conv: Conv2d,
    /// Symmetric padding of the convolution (1 in the UNet, 0 in the VAE).
    pub padding: usize,
}

impl Downsample2D {
    /// A downsampler on `channels` channels (`c_out` may differ in custom configs).
    pub fn new(c_in: usize, c_out: usize, padding: usize, device: &Device) -> Self {
        Self {
            conv: conv2d(c_in, c_out, 3, 2, padding, device),
            padding,
        }
    }

    /// Halves height and width (rounding up with padding 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.padding == 0 {
            x.pad(
                [(0, 0), (0, 0), (0, 1), (0, 1)],
                burn::tensor::ops::PadMode::Constant(0.0),
            )
        } else {
            x
        };
        crate::conv2d_forward(&self.conv, x)
    }
}
