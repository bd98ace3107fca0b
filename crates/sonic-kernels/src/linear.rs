//! Linear layers in bf16 on the AVX512-BF16 products of [`crate::gemm_bf16`].
//!
//! Burn's `flex` backend computes a bf16 matrix product by widening both operands to f32 on
//! every call (the whole weight included) and rounding the result back. Here the product reads
//! the bf16 input and weight in place, accumulates in f32 on top of the bias, and rounds once.
//! f32 layers, other devices and CPUs without AVX512-BF16 keep Burn's `Linear::forward`.

use crate::conv::{bf16_values, contiguous, round_to_bf16};
use crate::flex::{from_flex, host_f32, into_flex, on_plain_flex};
use crate::gemm_bf16::{Mat, available, gemm};
use burn::nn::Linear;
use burn::tensor::{DType, Tensor};

/// Whether [`forward`] takes the bf16 kernel path for `linear` on `x`: both bf16 on the plain
/// flex device, the CPU has AVX512-BF16, `x`'s last dimension is the layer's input width, and
/// `bf16` is not listed in `SONIC_KERNELS_OFF`.
pub fn fits<const D: usize>(linear: &Linear, x: &Tensor<D>) -> bool {
    let [d_in, d_out] = linear.weight.dims();
    D >= 1
        && x.dtype() == DType::BF16
        && linear.weight.val().dtype() == DType::BF16
        && linear.bias.as_ref().is_none_or(|b| b.dims() == [d_out])
        && x.dims()[D - 1] == d_in
        && on_plain_flex(&x.device())
        && on_plain_flex(&linear.weight.device())
        && available()
}

/// `linear.forward(x)` (`x W + b` over the last dimension): the bf16 products where [`fits`]
/// accepts the pair, Burn's `Linear::forward` otherwise.
pub fn forward<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    if fits(linear, &x)
        && let Some(y) = bf16_forward(linear, x.clone())
    {
        return y;
    }
    linear.forward(x)
}

fn bf16_forward<const D: usize>(linear: &Linear, x: Tensor<D>) -> Option<Tensor<D>> {
    let [k, n] = linear.weight.dims();
    let mut dims = x.dims();
    let m: usize = dims[..D - 1].iter().product();
    dims[D - 1] = n;
    let bias: Option<Vec<f32>> = match &linear.bias {
        Some(b) => Some(host_f32(b.val())?),
        None => None,
    };
    let (xf, wf) = (
        contiguous(into_flex(x)?),
        contiguous(into_flex(linear.weight.val())?),
    );
    let (xs, ws) = (bf16_values(&xf), bf16_values(&wf));
    // Without a bias the product overwrites every value: the buffer is not zeroed first.
    let mut out: Vec<f32> = match &bias {
        Some(b) => b.repeat(m),
        None => Vec::with_capacity(m * n),
    };
    // SAFETY: `xs` is `m x k` and `ws` `k x n`, both contiguous row-major; `out` has room for
    // `m x n` values (initialised with the bias when it is read); `fits` checked the CPU. The
    // product writes all `m x n` values before the length is set.
    unsafe {
        gemm(
            [m, n, k],
            Mat {
                ptr: xs.as_ptr(),
                rs: k,
            },
            Mat {
                ptr: ws.as_ptr(),
                rs: n,
            },
            Mat {
                ptr: out.as_mut_ptr() as *const f32,
                rs: n,
            },
            bias.is_some(),
            true,
        );
        out.set_len(m * n);
    };
    Some(from_flex(round_to_bf16(out, dims.to_vec())))
}
