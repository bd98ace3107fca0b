//! The bridge between Burn tensors and `burn_flex` memory.
//!
//! Burn 0.22's extension API (`Tensor::try_into_primitive` / `Tensor::from_primitive`, made for
//! backend extensions) hands out the concrete primitive of a tensor: on the `flex` device that
//! is a [`FlexTensor`], whose storage the kernels read and write in place. Tensors on any other
//! device (wgpu, CUDA, ndarray, an autodiff device) are never converted: the kernels' callers
//! check [`on_plain_flex`] first and run Burn's own operations otherwise.

use burn::backend::DispatchDevice;
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

/// Whether `device` is the plain `flex` device (not autodiff, not another backend).
pub fn on_plain_flex(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Flex(_))
}

/// Whether every tensor lives on the plain `flex` device and has dtype `f32` or `bf16`, all the
/// same.
pub fn all_flex_float<const D: usize>(tensors: &[&Tensor<D>]) -> bool {
    let Some(first) = tensors.first() else {
        return false;
    };
    let dtype = first.dtype();
    matches!(dtype, DType::F32 | DType::BF16)
        && tensors
            .iter()
            .all(|t| t.dtype() == dtype && on_plain_flex(&t.device()))
}

/// The flex primitive of a tensor that [`on_plain_flex`] accepted (`None` otherwise).
pub fn into_flex<const D: usize>(t: Tensor<D>) -> Option<FlexTensor> {
    t.try_into_primitive::<Flex>().ok()
}

/// The values of a small 1-d tensor (a bias, a norm's scale) as f32 on the host; `None` if the
/// read-back fails.
pub(crate) fn host_f32(t: Tensor<1>) -> Option<Vec<f32>> {
    t.cast(DType::F32).into_data().try_into_vec::<f32>().ok()
}

/// Wraps a flex primitive back into a Burn tensor.
pub fn from_flex<const D: usize>(t: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(t)
}

/// A tensor of `shape` over `values` stored in the row-major order of `storage_shape`, whose
/// axes are `shape`'s permuted by `perm` (`storage_shape[i] == shape[perm[i]]`): a view, no copy.
pub fn from_vec_permuted<E: burn::tensor::Element>(
    values: Vec<E>,
    shape: &[usize],
    perm: &[usize],
) -> FlexTensor {
    let storage_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let mut storage_strides = vec![0isize; shape.len()];
    let mut s = 1isize;
    for i in (0..shape.len()).rev() {
        storage_strides[i] = s;
        s *= storage_shape[i] as isize;
    }
    let mut strides = vec![0isize; shape.len()];
    for (i, &p) in perm.iter().enumerate() {
        strides[p] = storage_strides[i];
    }
    let t = FlexTensor::from_data(TensorData::new(values, storage_shape));
    t.with_layout(Layout::new(Shape::from(shape.to_vec()), strides, 0))
}

/// A raw pointer into an output buffer that parallel tasks write disjoint parts of.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every user hands each task a disjoint set of output values to write.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
