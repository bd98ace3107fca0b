//! bf16 linear layers (AVX512-BF16 products) and bf16 LayerNorm against f64 references on the
//! same bf16 values: widths that are not multiples of the tile, one row, batch 3, 2-d and
//! 3-d inputs, strided inputs, with and without bias; f32 keeps Burn's path exactly.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::linear;
use sonic_kernels::norm::layer_norm;

mod common;
use common::{host, max_rel};

/// `layer` with its parameters rounded to bf16 (`dtype` bf16) or kept (f32).
fn linear_as(layer: &Linear, dtype: DType) -> Linear {
    let mut l = layer.clone();
    l.weight = Param::from_tensor(layer.weight.val().cast(dtype));
    l.bias = layer
        .bias
        .as_ref()
        .map(|b| Param::from_tensor(b.val().cast(dtype)));
    l
}

#[test]
fn bf16_linear_equals_the_f64_product_rounded_once() {
    let device = Device::flex();
    let d = Distribution::Normal(0.0, 1.0);
    for (dims, d_out, bias) in [
        ([3usize, 77, 40], 13usize, true),
        ([1, 1, 1], 1, false),
        ([2, 130, 320], 1280, false),
        ([2, 9, 768], 33, true),
    ] {
        let layer = linear_as(
            &LinearConfig::new(dims[2], d_out)
                .with_bias(bias)
                .init(&device),
            DType::BF16,
        );
        // A contiguous input, and the same values as a strided view.
        let x = Tensor::<3>::random(dims, d, &device).cast(DType::BF16);
        let strided = Tensor::<3>::random([dims[1], dims[0], dims[2]], d, &device)
            .cast(DType::BF16)
            .swap_dims(0, 1);
        for input in [x, strided] {
            let got = linear::forward(&layer, input.clone());
            assert_eq!(got.dtype(), DType::BF16);
            assert_eq!(got.dims(), [dims[0], dims[1], d_out]);
            let (xv, wv) = (host(&input), host(&layer.weight.val()));
            let bv = layer.bias.as_ref().map(|b| host(&b.val()));
            let gv = host(&got);
            let k = dims[2];
            for row in 0..dims[0] * dims[1] {
                for j in 0..d_out {
                    let (mut want, mut scale) = (0f64, 0f64);
                    for p in 0..k {
                        let prod = xv[row * k + p] as f64 * wv[p * d_out + j] as f64;
                        want += prod;
                        scale += prod.abs();
                    }
                    if let Some(b) = &bv {
                        want += b[j] as f64;
                        scale += (b[j] as f64).abs();
                    }
                    let got = gv[row * d_out + j] as f64;
                    // One rounding of the output (half an ulp: at most 2^-8 of it) plus f32
                    // accumulation.
                    let tol = want.abs() / 256.0 + 1e-6 * scale;
                    assert!(
                        (got - want).abs() <= tol,
                        "{dims:?} ({row}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }
    // A 2-d input.
    let layer = linear_as(&LinearConfig::new(5, 7).init(&device), DType::BF16);
    let x = Tensor::<2>::random([2, 5], d, &device).cast(DType::BF16);
    let got = linear::forward(&layer, x.clone());
    let want = linear_as(&layer, DType::F32).forward(x.cast(DType::F32));
    assert_eq!(got.dims(), [2, 7]);
    assert!(max_rel(got, want) <= 1.0 / 256.0);
}

#[test]
fn f32_linear_is_burns() {
    let device = Device::flex();
    let layer = LinearConfig::new(40, 13).init(&device);
    let x = Tensor::<3>::random([3, 7, 40], Distribution::Normal(0.0, 1.0), &device);
    assert!(!linear::fits(&layer, &x));
    assert_eq!(
        host(&linear::forward(&layer, x.clone())),
        host(&layer.forward(x))
    );
}

/// `ln` with random gamma / beta, rounded to bf16.
fn random_layer_norm(width: usize, bias: bool, device: &Device) -> LayerNorm {
    let mut ln = LayerNormConfig::new(width).with_bias(bias).init(device);
    let d = Distribution::Normal(0.0, 1.0);
    ln.gamma = Param::from_tensor(Tensor::<1>::random([width], d, device).cast(DType::BF16));
    ln.beta = ln
        .beta
        .map(|_| Param::from_tensor(Tensor::<1>::random([width], d, device).cast(DType::BF16)));
    ln
}

#[test]
fn bf16_layer_norm_equals_the_f64_formula_rounded_once() {
    let device = Device::flex();
    for (dims, bias) in [
        ([3usize, 77, 40], true),
        ([1, 1, 13], false),
        ([2, 1030, 320], true),
    ] {
        let ln = random_layer_norm(dims[2], bias, &device);
        let d = Distribution::Normal(0.5, 2.0);
        let x = Tensor::<3>::random(dims, d, &device).cast(DType::BF16);
        let strided = Tensor::<3>::random([dims[1], dims[0], dims[2]], d, &device)
            .cast(DType::BF16)
            .swap_dims(0, 1);
        for input in [x, strided] {
            let got = layer_norm(&ln, 1e-5, input.clone());
            assert_eq!(got.dtype(), DType::BF16);
            let w = dims[2];
            let (xv, gv) = (host(&input), host(&got));
            let gamma = host(&ln.gamma.val());
            let beta = ln.beta.as_ref().map(|b| host(&b.val()));
            for (row, (xr, gr)) in xv.chunks_exact(w).zip(gv.chunks_exact(w)).enumerate() {
                let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / w as f64;
                let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w as f64;
                let inv = 1.0 / (var + 1e-5).sqrt();
                for j in 0..w {
                    let norm = (xr[j] as f64 - mean) * inv;
                    let want = norm * gamma[j] as f64 + beta.as_ref().map_or(0.0, |b| b[j] as f64);
                    let tol = want.abs() / 256.0
                        + 1e-5 * (1.0 + norm.abs()) * (gamma[j] as f64).abs().max(1.0);
                    assert!(
                        (gr[j] as f64 - want).abs() <= tol,
                        "{dims:?} row {row} col {j}: {} vs {want}",
                        gr[j]
                    );
                }
            }
        }
    }
}

#[test]
fn f32_layer_norm_is_burns() {
    let device = Device::flex();
    let ln = LayerNormConfig::new(40).init(&device);
    let x = Tensor::<3>::random([2, 5, 40], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(
        host(&layer_norm(&ln, 1e-5, x.clone())),
        host(&ln.forward(x))
    );
}
