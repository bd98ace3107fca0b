//! The PyTorch-to-Burn conversion applied while loading: burn-store's `PyTorchToBurnAdapter`
//! (norm parameters renamed, linear weights `[out, in]` transposed to Burn's `[in, out]`), with
//! the transpose done here as a blocked copy of whole elements into one aligned buffer, and on
//! the plain `flex` device deferred to the weight's first use.
//!
//! Why: burn-store 0.22 transposes byte by byte (a `memcpy` call per element into a zeroed
//! buffer, then a second copy to align it), which made transposes the largest part of loading
//! SD (docs/PERFORMANCE.md, entry 11). On `flex` a loaded tensor stays on the mapped file; a
//! linear weight is handed to Burn in the file's `[out, in]` order under the shape `[in, out]`
//! (no copy), and [`PyTorchToBurn::finish`] makes each such parameter lazy: its first use
//! transposes it (once), so loading touches no weight's memory (entry 17). A strided view
//! instead of the copy was measured and is not used: `gemm` runs the products of few tokens
//! (the text encoder, the UNet's 8 x 8 level) 1.1 - 3x slower from a column-major weight.

use super::names::ParamPath;
use burn::module::{Module, ModuleMapper, Param};
use burn::store::{ModuleAdapter, ModuleContext, PyTorchToBurnAdapter, bridge};
use burn::tensor::{Bytes, DType, Tensor, TensorData};
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

type Snapshot = burn::store::burn_pack::Tensor;

/// burn-store's `PyTorchToBurnAdapter` with a fast transpose of linear weights, now or (see
/// [`Self::deferred`]) at their first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct PyTorchToBurn {
    /// `Some`: linear weights pass through untransposed, relabelled `[in, out]`; their module
    /// paths are collected here for [`Self::finish`].
    relabelled: Option<Arc<Mutex<HashSet<String>>>>,
}

impl PyTorchToBurn {
    /// Linear weights are transposed when the module first uses them: [`Self::finish`] must
    /// run on the loaded module.
    pub(crate) fn deferred() -> Self {
        Self {
            relabelled: Some(Arc::default()),
        }
    }

    /// Makes every linear weight this adapter relabelled a lazy parameter that transposes the
    /// loaded `[out, in]` data when first read. Until this runs, those parameters hold
    /// `[out, in]` data under an `[in, out]` shape.
    pub(crate) fn finish<M: Module>(&self, module: M) -> M {
        let Some(relabelled) = &self.relabelled else {
            return module;
        };
        let names = std::mem::take(&mut *relabelled.lock().unwrap_or_else(PoisonError::into_inner));
        if names.is_empty() {
            return module;
        }
        module.map(&mut TransposeOnFirstUse {
            at: ParamPath::default(),
            names,
        })
    }
}

impl ModuleAdapter for PyTorchToBurn {
    fn adapt(&self, tensor: Snapshot, ctx: ModuleContext<'_>) -> Snapshot {
        let param = tensor.name.rsplit('.').next().unwrap_or_default();
        let linear_weight = ctx.module_type() == Some("Struct:Linear") && param == "weight";
        if linear_weight && tensor.shape.len() == 2 && element_bytes(tensor.dtype).is_some() {
            let (name, dtype) = (tensor.name.clone(), tensor.dtype);
            let shape = [tensor.shape[1], tensor.shape[0]];
            let Some(relabelled) = &self.relabelled else {
                return bridge::map_data(tensor, name, dtype, shape.into(), transpose);
            };
            relabelled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone());
            return bridge::map_data(tensor, name, dtype, shape.into(), relabel);
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

/// `[rows, cols]` data under the shape `[cols, rows]`, bytes untouched.
fn relabel(data: TensorData) -> TensorData {
    let dtype = data.dtype();
    let (rows, cols) = (data.shape()[0], data.shape()[1]);
    TensorData::from_bytes(data.into_bytes(), [cols, rows], dtype)
}

/// Replaces each named linear weight (`[in, out]` holding `[out, in]` data) by a lazy
/// parameter of the same id whose first read transposes the data.
struct TransposeOnFirstUse {
    at: ParamPath,
    names: HashSet<String>,
}

impl ModuleMapper for TransposeOnFirstUse {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape();
        let (name, _) = self.at.pytorch(&shape.to_vec());
        if !self.at.is_linear_weight(D) || !self.names.remove(&name) {
            return param;
        }
        let require_grad = param.is_require_grad();
        let (id, loaded, _) = param.consume();
        let device = loaded.device();
        Param::uninitialized(
            id,
            move |device, require_grad| {
                let data = transpose(relabel(loaded.into_data()));
                let w = Tensor::from_data(data, device);
                if require_grad { w.require_grad() } else { w }
            },
            device,
            require_grad,
            shape,
        )
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
    use burn::nn::{Linear, LinearConfig};
    use burn::store::ModuleSnapshot;

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

    #[derive(Module, Debug)]
    struct Two {
        a: Linear,
        b: Linear,
    }

    /// Loads a PyTorch-order weight through the deferred adapter: untouched until first read,
    /// then the transpose, and the product `y = x W^T`; a weight the file does not hold is
    /// left as it was.
    #[test]
    fn deferred_weights_are_transposed_at_first_use() {
        let device = crate::device::parse_device("flex").unwrap();
        let mut module = Two {
            a: LinearConfig::new(3, 5).with_bias(false).init(&device),
            b: LinearConfig::new(4, 2).with_bias(false).init(&device),
        };
        let b_before = module.b.weight.val().into_data();
        let w: Vec<f32> = (0..15).map(|i| i as f32 * 0.25 - 1.0).collect(); // [out 5, in 3]
        let adapter = PyTorchToBurn::deferred();
        let snapshot =
            bridge::from_data(TensorData::new(w.clone(), [5, 3]), "a.weight".into(), None);
        let result = module.apply(vec![snapshot], None, Some(Box::new(adapter.clone())), true);
        assert!(result.errors.is_empty(), "{:?}", result.errors);
        let module = adapter.finish(module);
        assert!(!module.a.weight.is_initialized());
        assert_eq!(module.a.weight.lazy_shape().dims::<2>(), [3, 5]);
        let got = module
            .a
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for i in 0..3 {
            for o in 0..5 {
                assert_eq!(got[i * 5 + o], w[o * 3 + i], "in {i} out {o}");
            }
        }
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5], [1, 3]), &device);
        let y = module.a.forward(x).into_data().try_to_vec::<f32>().unwrap();
        for (o, yo) in y.iter().enumerate() {
            let want = w[o * 3] - 2.0 * w[o * 3 + 1] + 0.5 * w[o * 3 + 2];
            assert!((yo - want).abs() < 1e-6, "out {o}: {yo} vs {want}");
        }
        module.b.weight.val().into_data().assert_eq(&b_before, true);
    }
}
