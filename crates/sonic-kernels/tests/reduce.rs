//! The in-place finiteness check against the values it is given.

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use sonic_kernels::reduce::all_finite;

#[test]
fn finds_nan_and_infinities_in_every_float_type() {
    let device = Device::flex();
    // Longer than one parallel chunk, with the bad value in the last one.
    let n = (1 << 16) * 3 + 5;
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let mut v: Vec<f32> = (0..n).map(|i| (i % 97) as f32 - 48.0).collect();
            let t = Tensor::<2>::from_data(TensorData::new(v.clone(), [n, 1]), &device).cast(dtype);
            assert_eq!(all_finite(&t), Some(true), "{dtype:?} finite");
            v[n - 2] = bad;
            let t = Tensor::<2>::from_data(TensorData::new(v, [n, 1]), &device).cast(dtype);
            assert_eq!(all_finite(&t), Some(false), "{dtype:?} {bad}");
        }
    }
    // The largest finite values are finite.
    let t = Tensor::<1>::from_data(TensorData::new(vec![f32::MAX, f32::MIN, 0.0], [3]), &device);
    assert_eq!(all_finite(&t), Some(true));
}

#[test]
fn declines_what_it_cannot_read_in_place() {
    let device = Device::flex();
    let t = Tensor::<2>::random([4, 6], Distribution::Default, &device).swap_dims(0, 1);
    assert_eq!(all_finite(&t), None, "a transposed view");
    let i = Tensor::<1, burn::tensor::Int>::arange(0..4, &device)
        .float()
        .cast(DType::F64);
    assert_eq!(all_finite(&i), None, "f64");
}
