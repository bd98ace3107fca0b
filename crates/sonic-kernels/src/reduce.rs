//! Whole-tensor checks that read a flex tensor's memory in place.

use crate::flex::{into_flex, on_plain_flex};
use burn::tensor::{DType, Tensor};
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
    let size = dtype.size();
    bytes_all_finite(f.bytes().get(start * size..(start + n) * size)?, dtype)
}

/// Runs `$f(values, mask)` on `$bytes` viewed as the bit patterns of `$dtype` (`u64`, `u32` or
/// `u16` words) with the mask of the exponent field, all ones for NaN and infinity; `None` for
/// another dtype or bytes that are not a whole number of aligned values.
macro_rules! by_dtype {
    ($bytes:expr, $dtype:expr, $f:ident) => {
        match $dtype {
            DType::F64 => bytemuck::try_cast_slice::<u8, u64>($bytes)
                .ok()
                .map(|v| $f(v, 0x7ff0_0000_0000_0000)),
            DType::F32 => bytemuck::try_cast_slice::<u8, u32>($bytes)
                .ok()
                .map(|v| $f(v, 0x7f80_0000)),
            DType::F16 => bytemuck::try_cast_slice::<u8, u16>($bytes)
                .ok()
                .map(|v| $f(v, 0x7c00)),
            DType::BF16 => bytemuck::try_cast_slice::<u8, u16>($bytes)
                .ok()
                .map(|v| $f(v, 0x7f80)),
            _ => None,
        }
    };
}

/// Whether every value of `bytes` (native-endian `dtype` values: f64, f32, f16 or bf16, e.g. a
/// tensor of a mapped weights file) is finite: one parallel, vectorised pass. `None` for
/// another dtype, or when `bytes` is not a whole number of aligned values.
pub fn bytes_all_finite(bytes: &[u8], dtype: DType) -> Option<bool> {
    by_dtype!(bytes, dtype, no_special)
}

/// How many values of `bytes` (as in [`bytes_all_finite`]) are NaN or infinite; `None` where
/// [`bytes_all_finite`] is.
pub fn bytes_count_non_finite(bytes: &[u8], dtype: DType) -> Option<usize> {
    by_dtype!(bytes, dtype, count_special)
}

/// Whether no value has the all-ones exponent `mask` of NaN and infinity, folded without
/// early exit so that the loop vectorises.
fn no_special<T>(values: &[T], mask: T) -> bool
where
    T: Copy + Sync + PartialEq + std::ops::BitAnd<Output = T>,
{
    values
        .par_chunks(CHUNK)
        .all(|c| !c.iter().fold(false, |acc, &v| acc | ((v & mask) == mask)))
}

/// How many values have the all-ones exponent `mask`.
fn count_special<T>(values: &[T], mask: T) -> usize
where
    T: Copy + Sync + PartialEq + std::ops::BitAnd<Output = T>,
{
    values.par_iter().filter(|&&v| (v & mask) == mask).count()
}
