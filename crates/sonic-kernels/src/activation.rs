//! GELU and GEGLU (`hidden * gelu(gate)` for `[..., 2 c]` split into `hidden` `[..., :c]` and
//! `gate` `[..., c:]`), each in one parallel pass.
//!
//! Burn's `gelu` and its GEGLU chain (two slices, `gelu` on the strided gate, a multiply) runs on one thread, walks
//! the values three times and calls libm's scalar `erff` (~10 ns a value); here each row is
//! read once and the output written once, with the vectorised GELU of [`crate::vecmath`]
//! (`erf` within 1.5e-7 of the true one, as PyTorch's vectorised `erf`). f32 only; bf16 and
//! other devices take Burn's chain.

use crate::flex::{from_flex, into_flex, on_plain_flex};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
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
    assert!(c2 % 2 == 0, "geglu: odd last dimension {c2}");
    let c = c2 / 2;
    if crate::cpu::enabled("geglu") && h.dtype() == DType::F32 && on_plain_flex(&h.device()) {
        if let Some(f) = into_flex(h.clone()) {
            let f = if f.is_contiguous() {
                f
            } else {
                f.to_contiguous()
            };
            let start = f.layout().start_offset();
            let n: usize = dims.iter().product();
            let input = &f.storage::<f32>()[start..start + n];
            let mut out = vec![0f32; n / 2];
            if c > 0 {
                let rows_per_task = (TASK_VALUES / c).max(1);
                let isa = crate::cpu::Isa::selected();
                out.par_chunks_mut(rows_per_task * c)
                    .zip(input.par_chunks(rows_per_task * c2))
                    .for_each(|(o, i)| {
                        for (o, i) in o.chunks_exact_mut(c).zip(i.chunks_exact(c2)) {
                            let (hidden, gate) = i.split_at(c);
                            crate::vecmath::gelu_mul(isa, Some(hidden), gate, o);
                        }
                    });
            }
            let mut shape = dims.to_vec();
            shape[D - 1] = c;
            return from_flex(FlexTensor::from_data(TensorData::new(out, shape)));
        }
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
    if crate::cpu::enabled("geglu") && x.dtype() == DType::F32 && on_plain_flex(&x.device()) {
        if let Some(f) = into_flex(x.clone()) {
            let f = if f.is_contiguous() {
                f
            } else {
                f.to_contiguous()
            };
            let start = f.layout().start_offset();
            let dims = x.dims();
            let n: usize = dims.iter().product();
            let input = &f.storage::<f32>()[start..start + n];
            let mut out = vec![0f32; n];
            let isa = crate::cpu::Isa::selected();
            out.par_chunks_mut(TASK_VALUES)
                .zip(input.par_chunks(TASK_VALUES))
                .for_each(|(o, i)| crate::vecmath::gelu_mul(isa, None, i, o));
            return from_flex(FlexTensor::from_data(TensorData::new(out, dims.to_vec())));
        }
    }
    burn::tensor::activation::gelu(x)
}
