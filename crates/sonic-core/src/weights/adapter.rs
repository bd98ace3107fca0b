//! The PyTorch-to-Burn conversion applied while loading: burn-store's `PyTorchToBurnAdapter`
//! (norm parameters renamed, linear weights `[out, in]` transposed to Burn's `[in, out]`), with
//! the transpose done here as a blocked copy of whole elements into one aligned buffer.
//!
//! Why: burn-store 0.22 transposes byte by byte (a `memcpy` call per element into a zeroed
//! buffer, then a second copy to align it), which made transposes the largest part of loading
//! SD (docs/PERFORMANCE.md, entry 11).

use burn::store::{ModuleAdapter, ModuleContext, PyTorchToBurnAdapter, bridge};
use burn::tensor::{Bytes, DType, TensorData};
use rayon::prelude::*;

type Snapshot = burn::store::burn_pack::Tensor;

/// burn-store's `PyTorchToBurnAdapter` with a fast transpose of linear weights.
#[derive(Debug, Clone, Default)]
pub(crate) struct PyTorchToBurn;

impl ModuleAdapter for PyTorchToBurn {
    fn adapt(&self, tensor: Snapshot, ctx: ModuleContext<'_>) -> Snapshot {
        let param = tensor.name.rsplit('.').next().unwrap_or_default();
        let linear_weight = ctx.module_type() == Some("Struct:Linear") && param == "weight";
        if linear_weight && tensor.shape.len() == 2 && element_bytes(tensor.dtype).is_some() {
            let (name, dtype) = (tensor.name.clone(), tensor.dtype);
            let shape = [tensor.shape[1], tensor.shape[0]];
            return bridge::map_data(tensor, name, dtype, shape.into(), transpose);
        }
        PyTorchToBurnAdapter.adapt(tensor, ctx)
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The element width of the float dtypes transposed here.
fn element_bytes(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F64 => Some(8),
        DType::F32 => Some(4),
        DType::F16 | DType::BF16 => Some(2),
        _ => None,
    }
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(data: TensorData) -> TensorData {
    let dtype = data.dtype();
    let (rows, cols) = (data.shape()[0], data.shape()[1]);
    let bytes = data.as_bytes();
    let out = match element_bytes(dtype) {
        Some(8) => Bytes::from_elems(transpose_elems::<u64>(bytes, rows, cols)),
        Some(4) => Bytes::from_elems(transpose_elems::<u32>(bytes, rows, cols)),
        _ => Bytes::from_elems(transpose_elems::<u16>(bytes, rows, cols)),
    };
    TensorData::from_bytes(out, [cols, rows], dtype)
}

/// Elements `T` (the bit patterns of the floats) from `bytes` `[rows, cols]` to a new
/// `[cols, rows]` buffer: bands of 32 output rows in parallel; within a band each input row
/// contributes 32 elements, so reads and writes both stay in cache.
fn transpose_elems<T: bytemuck::Pod + Send + Sync>(
    bytes: &[u8],
    rows: usize,
    cols: usize,
) -> Vec<T> {
    const TILE: usize = 32;
    // The mapped file keeps elements aligned; a copy makes any other source aligned.
    let copied: Vec<T>;
    let input: &[T] = match bytemuck::try_cast_slice(bytes) {
        Ok(v) => v,
        Err(_) => {
            copied = bytes
                .chunks_exact(size_of::<T>())
                .map(bytemuck::pod_read_unaligned)
                .collect();
            &copied
        }
    };
    let mut out = vec![T::zeroed(); rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    out.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(band, block)| {
            let c0 = band * TILE;
            let width = block.len() / rows;
            for r in 0..rows {
                let src = &input[r * cols + c0..r * cols + c0 + width];
                for (k, &v) in src.iter().enumerate() {
                    block[k * rows + r] = v;
                }
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `transpose` of `v` `[rows, cols]` against the definition.
    fn check<E: burn::tensor::Element + PartialEq + std::fmt::Debug + Copy>(
        v: Vec<E>,
        rows: usize,
        cols: usize,
    ) {
        let t = transpose(TensorData::new(v.clone(), [rows, cols]));
        assert_eq!(t.shape().as_slice(), [cols, rows]);
        let got = t.try_to_vec::<E>().unwrap();
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(
                    got[c * rows + r],
                    v[r * cols + c],
                    "{rows}x{cols} at {r},{c}"
                );
            }
        }
    }

    #[test]
    fn transpose_matches_the_definition_for_every_width() {
        for (rows, cols) in [(1, 1), (3, 70), (65, 33), (40, 1)] {
            let v: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            check(v.clone(), rows, cols);
            check(
                v.iter().map(|&x| half::f16::from_f32(x)).collect(),
                rows,
                cols,
            );
            check(
                v.iter().map(|&x| half::bf16::from_f32(x)).collect(),
                rows,
                cols,
            );
            check(v.iter().map(|&x| x as f64).collect(), rows, cols);
        }
    }
}
