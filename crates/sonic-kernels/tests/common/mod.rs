//! What the kernel tests share: host copies and the relative error of a result.

use burn::tensor::{DType, Tensor};

/// The values of `t` on the host as f32, in logical (row-major) order.
pub fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone()
        .cast(DType::F32)
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 read-back")
}

/// max |got - want| / max |want| (infinite for a NaN or a shape mismatch).
pub fn max_rel<const D: usize>(got: Tensor<D>, want: Tensor<D>) -> f64 {
    if got.dims() != want.dims() {
        return f64::INFINITY;
    }
    let (g, w) = (host(&got), host(&want));
    let mut diff = 0f64;
    let mut scale = 0f64;
    for (&a, &b) in g.iter().zip(&w) {
        let d = (a as f64 - b as f64).abs();
        if d.is_nan() {
            return f64::INFINITY;
        }
        diff = diff.max(d);
        scale = scale.max((b as f64).abs());
    }
    if scale > 0.0 { diff / scale } else { diff }
}
