//! Whole-tensor checks that read a flex tensor's memory in place.

use crate::flex::{into_flex, on_plain_flex};
use burn::tensor::{DType, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

/// Values per parallel task of [`all_finite`].
const CHUNK: usize = 1 << 16;

/// Whether every value of `t` is finite (no NaN, no infinity), read in place on the plain
/// `flex` device for contiguous f32 / f16 / bf16 tensors: no allocation, one vectorised pass.
/// `None` where it does not apply (another device or dtype, a strided view); the caller then
/// uses Burn's operations.
pub fn all_finite<const D: usize>(t: &Tensor<D>) -> Option<bool> {
    let dtype = t.dtype();
    if !on_plain_flex(&t.device()) || !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return None;
    }
    let f = into_flex(t.clone())?;
    if !f.is_contiguous() {
        return None;
    }
    let start = f.layout().start_offset();
    let n = f.layout().shape().iter().product::<usize>();
    Some(match dtype {
        DType::F32 => no_special(&f.storage::<f32>()[start..start + n], |v| {
            (v.to_bits() & 0x7f80_0000) == 0x7f80_0000
        }),
        DType::F16 => no_special(&f.storage::<f16>()[start..start + n], |v| {
            (v.to_bits() & 0x7c00) == 0x7c00
        }),
        _ => no_special(&f.storage::<bf16>()[start..start + n], |v| {
            (v.to_bits() & 0x7f80) == 0x7f80
        }),
    })
}

/// Whether no value has the all-ones exponent of NaN and infinity (`special`), folded without
/// early exit so that the loop vectorises.
fn no_special<T: Copy + Sync>(values: &[T], special: impl Fn(T) -> bool + Sync) -> bool {
    values
        .par_chunks(CHUNK)
        .all(|c| !c.iter().fold(false, |acc, &v| acc | special(v)))
}
