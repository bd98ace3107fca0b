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
use burn::tensor::Device;

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
