//! GELU and GEGLU (`hidden * gelu(gate)` for `[..., 2 c]` split into `hidden` `[..., :c]` and
//! `gate` `[..., c:]`), each in one parallel pass.
//!
//! Burn's `gelu` and its GEGLU chain (two slices, `gelu` on the strided gate, a multiply) runs on one thread, walks
//! the values three times and calls libm's scalar `erff` (~10 ns a value); here each row is
//! read once and the output written once, with the vectorised GELU of [`crate::vecmath`]
//! (`erf` within 1.5e-7 of the true one, as PyTorch's vectorised `erf`). GEGLU in bf16 widens
//! each row to f32, computes the same way and rounds once; other devices take Burn's chain.

use crate::cpu::Isa;
use crate::flex::{from_flex, into_flex, on_plain_flex};
use crate::vecmath;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
use half::bf16;
use rayon::prelude::*;

/// Output values per parallel task (whole rows).
const TASK_VALUES: usize = 1 << 14;

/// `hidden * gelu(gate)` for `h` `[..., 2 c]` (`hidden = h[..., :c]`, `gate = h[..., c:]`);
/// returns `[..., c]`.
///
/// # Panics
/// If the last dimension of `h` is odd (as Burn's slices would).
pub fn geglu<const D: usize>(h: Tensor<D>) -> Tensor<D> {
    let dims = h.dims();
    let c2 = dims[D - 1];
    assert!(c2.is_multiple_of(2), "geglu: odd last dimension {c2}");
    let c = c2 / 2;
    if let Some(f) = contiguous_f32(&h) {
        let mut out = vec![0f32; f.values().len() / 2];
        if let Some(rows) = TASK_VALUES.checked_div(c) {
            let rows = rows.max(1);
            let isa = Isa::selected();
            out.par_chunks_mut(rows * c)
                .zip(f.values().par_chunks(rows * c2))
                .for_each(|(o, i)| {
                    for (o, i) in o.chunks_exact_mut(c).zip(i.chunks_exact(c2)) {
                        let (hidden, gate) = i.split_at(c);
                        vecmath::gelu_mul(isa, Some(hidden), gate, o);
                    }
                });
        }
        let mut shape = dims.to_vec();
        shape[D - 1] = c;
        return from_flex(FlexTensor::from_data(TensorData::new(out, shape)));
    }
    if let Some(f) = contiguous_bf16(&h) {
        let values = crate::conv::bf16_values(&f);
        let mut out = vec![bf16::ZERO; values.len() / 2];
        if let Some(rows) = TASK_VALUES.checked_div(c) {
            let rows = rows.max(1);
            let isa = Isa::selected();
            out.par_chunks_mut(rows * c)
                .zip(values.par_chunks(rows * c2))
                .for_each_init(Vec::new, |wide, (o, i)| {
                    wide.resize(3 * c, 0f32);
                    let (input, result) = wide.split_at_mut(c2);
                    for (o, i) in o.chunks_exact_mut(c).zip(i.chunks_exact(c2)) {
                        crate::convert::bf16_to_f32(i, input);
                        let (hidden, gate) = input.split_at(c);
                        vecmath::gelu_mul(isa, Some(hidden), gate, result);
                        crate::convert::f32_to_bf16(result, o);
                    }
                });
        }
        let mut shape = dims.to_vec();
        shape[D - 1] = c;
        return from_flex(FlexTensor::from_data(TensorData::new(out, shape)));
    }
    let mut hidden = dims.map(|d| 0..d);
    let mut gate = hidden.clone();
    hidden[D - 1] = 0..c;
    gate[D - 1] = c..c2;
    h.clone().slice(hidden) * burn::tensor::activation::gelu(h.slice(gate))
}

/// `gelu(x)` (`0.5 x (1 + erf(x / sqrt 2))`) with the vectorised GELU, in parallel, on plain
/// flex f32; Burn's `gelu` otherwise.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if let Some(f) = contiguous_f32(&x) {
        let mut out = vec![0f32; f.values().len()];
        let isa = Isa::selected();
        out.par_chunks_mut(TASK_VALUES)
            .zip(f.values().par_chunks(TASK_VALUES))
            .for_each(|(o, i)| vecmath::gelu_mul(isa, None, i, o));
        return from_flex(FlexTensor::from_data(TensorData::new(
            out,
            x.dims().to_vec(),
        )));
    }
    burn::tensor::activation::gelu(x)
}

/// Quick GELU, `x * sigmoid(1.702 x)` (OpenAI CLIP's activation), with the vectorised SiLU of
/// [`crate::vecmath`] (`silu(1.702 x) / 1.702`), in parallel, on plain flex f32; Burn's
/// `x * sigmoid(1.702 x)` otherwise (one thread, three passes, libm's `expf`).
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    const A: f32 = 1.702;
    if let Some(f) = contiguous_f32(&x) {
        let mut out = f.values().to_vec();
        let isa = Isa::selected();
        out.par_chunks_mut(TASK_VALUES).for_each(|o| {
            vecmath::affine_silu(isa, o, 0.0, A, 0.0, true);
            o.iter_mut().for_each(|v| *v /= A);
        });
        return from_flex(FlexTensor::from_data(TensorData::new(
            out,
            x.dims().to_vec(),
        )));
    }
    x.clone() * burn::tensor::activation::sigmoid(x.mul_scalar(A))
}

/// `t` as a contiguous flex bf16 tensor where the GEGLU kernel applies: `geglu` enabled, bf16
/// on the plain flex device.
fn contiguous_bf16<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    if !(crate::cpu::enabled("geglu") && t.dtype() == DType::BF16 && on_plain_flex(&t.device())) {
        return None;
    }
    Some(crate::conv::contiguous(into_flex(t.clone())?))
}

/// A contiguous flex f32 tensor (`t` itself, or a contiguous copy of a strided view).
struct ContiguousF32(FlexTensor);

impl ContiguousF32 {
    /// Its values in row-major order.
    fn values(&self) -> &[f32] {
        let start = self.0.layout().start_offset();
        let n = self.0.layout().shape().iter().product::<usize>();
        &self.0.storage::<f32>()[start..start + n]
    }
}

/// `t` as a [`ContiguousF32`] where these kernels apply: `geglu` enabled (see
/// [`crate::cpu::enabled`]), f32 on the plain flex device.
fn contiguous_f32<const D: usize>(t: &Tensor<D>) -> Option<ContiguousF32> {
    if !(crate::cpu::enabled("geglu") && t.dtype() == DType::F32 && on_plain_flex(&t.device())) {
        return None;
    }
    let f = into_flex(t.clone())?;
    Some(ContiguousF32(if f.is_contiguous() {
        f
    } else {
        f.to_contiguous()
    }))
}
