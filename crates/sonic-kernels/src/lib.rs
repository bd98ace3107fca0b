//! CPU kernels for Burn's `flex` backend, each behind a function on Burn tensors that falls back
//! to Burn's own operations on every other device (wgpu, CUDA, ndarray, autodiff).
//!
//! The kernels read and write the memory of `burn_flex::FlexTensor`s in place (see [`flex`]),
//! and pick an AVX-512, AVX2 or portable path at run time ([`cpu::Isa`]; `SONIC_KERNELS_ISA`
//! lowers it for testing).
//!
//! - [`attention::scaled_dot_product`]: fused flash-style attention (blocked packed matrix
//!   products, online softmax, vectorised exponential), f32 and bf16.
//! - [`conv::conv2d`]: dense convolutions as banded im2col + packed products written in the
//!   output's final layout (the weight used as stored, no per-call re-layout), f32 and bf16.
//!   Large 3x3 stride-1 f32 convolutions go through [`winograd`] (F(2x2, 3x3): 2.25x fewer
//!   multiplications).
//!
//! bf16 tensors are computed with the AVX512-BF16 products of [`gemm_bf16`] where the CPU has
//! them (convolutions, linear layers, attention, the up-sampler), otherwise widened to f32.
//! Every kernel family can be sent back to Burn with `SONIC_KERNELS_OFF` ([`cpu::enabled`]).
//! - [`upsample::upsample2x_conv3x3`]: nearest x2 upsampling + 3x3 convolution as four 2x2
//!   convolutions at the input resolution, the folded weight built in one parallel pass.
//! - [`gemm_bf16::matmul`]: bf16 matrix products with AVX512-BF16 dot products, f32 accumulation.
//! - [`linear::forward`]: bf16 linear layers on those products (bias added in f32, rounded once).
//! - [`norm::group_norm`], [`norm::group_norm_silu`]: GroupNorm (+ SiLU) in three passes;
//!   [`norm::layer_norm`]: LayerNorm in bf16 in one parallel pass.
//! - [`convert`]: vectorised f32 <-> bf16 conversion (ties to even, as `half`).
//! - [`activation::geglu`], [`activation::gelu`]: GEGLU and GELU in one parallel pass with a
//!   vectorised `erf`.
//! - [`reduce::all_finite`]: the finiteness check of loaded weights, in place.
//!
//! ```no_run
//! use burn::tensor::{Device, Distribution, Tensor};
//! let device = Device::flex();
//! // 2 x 8 heads, 4096 query tokens of width 40 over 77 text tokens.
//! let q = Tensor::<4>::random([2, 8, 4096, 40], Distribution::Default, &device);
//! let k = Tensor::<4>::random([2, 8, 77, 40], Distribution::Default, &device);
//! let v = Tensor::<4>::random([2, 8, 77, 40], Distribution::Default, &device);
//! let o = sonic_kernels::attention::scaled_dot_product(q, k, v); // [2, 8, 4096, 40]
//! ```

pub mod activation;
pub mod attention;
pub mod conv;
pub mod convert;
pub mod cpu;
pub mod flex;
pub mod gemm_bf16;
pub mod linear;
pub mod norm;
pub mod reduce;
pub mod upsample;
pub mod vecmath;
pub mod winograd;
