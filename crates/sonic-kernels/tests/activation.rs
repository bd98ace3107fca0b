//! GEGLU against Burn's chain (slices, `gelu` with libm's `erff`, multiply) on awkward shapes
//! (a width that is not a multiple of 16, batch 3, one row, rows that do not fill a task), on a
//! strided input, and in bf16 (rounded once); the vectorised GELU on every instruction
//! set against the exact formula.

use burn::tensor::activation::gelu;
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::activation::geglu;
use sonic_kernels::cpu::Isa;
use sonic_kernels::vecmath;

mod common;
use common::{host, max_rel};

fn burn_geglu(h: Tensor<3>) -> Tensor<3> {
    let [b, n, c2] = h.dims();
    let c = c2 / 2;
    h.clone().slice([0..b, 0..n, 0..c]) * gelu(h.slice([0..b, 0..n, c..c2]))
}

/// GELU with libm's `erf` in f64: the reference.
fn gelu_exact(x: f32) -> f64 {
    let x = x as f64;
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

#[test]
fn vectorised_gelu_is_within_2e7_of_the_exact_one() {
    // A dense grid over [-12, 12], the tails, zero and the signed extremes.
    let mut xs: Vec<f32> = (-120_000..=120_000).map(|i| i as f32 * 1e-4).collect();
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        30.0,
        -30.0,
        1e4,
        -1e4,
        f32::MIN_POSITIVE,
    ]);
    let hidden = vec![1.0f32; xs.len()];
    for isa in Isa::all_supported() {
        let mut out = vec![0f32; xs.len()];
        vecmath::gelu_mul(isa, Some(&hidden), &xs, &mut out);
        for (&x, &y) in xs.iter().zip(&out) {
            let want = gelu_exact(x);
            // 1.5e-7 from erf (scaled by x / 2) plus rounding.
            let tol = 2e-7 * (1.0 + x.abs() as f64);
            assert!(
                (y as f64 - want).abs() <= tol,
                "{isa:?} gelu({x}) = {y}, want {want}"
            );
        }
    }
}

/// Checks `got` (GEGLU of `h` `[..., 2c]`, or GELU of `h` when `gated` is false) value by value
/// against the f64 formula: within the erf's 1.5e-7 (scaled by |x| / 2 and the hidden factor)
/// plus f32 rounding.
fn check(h: &Tensor<3>, got: Tensor<3>, gated: bool, what: &str) {
    let [b, n, c2] = h.dims();
    let c = if gated { c2 / 2 } else { c2 };
    let (hv, gv) = (host(h), host(&got));
    assert_eq!(gv.len(), b * n * c, "{what}: size");
    for row in 0..b * n {
        for j in 0..c {
            let (hidden, x) = if gated {
                (hv[row * c2 + j] as f64, hv[row * c2 + c + j])
            } else {
                (1.0, hv[row * c2 + j])
            };
            let want = hidden * gelu_exact(x);
            let got = gv[row * c + j] as f64;
            let tol = 2e-7 * (1.0 + x.abs() as f64) * hidden.abs().max(1.0) + 2e-7 * want.abs();
            assert!(
                (got - want).abs() <= tol,
                "{what} row {row} col {j}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn geglu_and_gelu_match_the_formula_and_burn() {
    let device = Device::flex();
    for dims in [
        [3, 77, 2 * 40],
        [1, 1, 2],
        [1, 1, 1],
        [2, 4096, 2 * 320],
        [1, 9, 2 * 1280],
        [2, 5, 2 * 13],
    ] {
        let h = Tensor::<3>::random(dims, Distribution::Normal(0.0, 3.0), &device);
        check(
            &h,
            sonic_kernels::activation::gelu(h.clone()),
            false,
            &format!("gelu {dims:?}"),
        );
        if dims[2] % 2 == 1 {
            continue;
        }
        check(&h, geglu(h.clone()), true, &format!("geglu {dims:?}"));
        if dims[1] > 1 {
            // Against Burn's chain where the tensor is large enough for max_rel to mean much.
            assert!(
                max_rel(geglu(h.clone()), burn_geglu(h.clone())) < 1e-6,
                "{dims:?}"
            );
            assert!(max_rel(sonic_kernels::activation::gelu(h.clone()), gelu(h)) < 1e-6);
        }
    }
    // Strided inputs: [B, N, 2C] as a permuted view of [B, 2C, N].
    let h = Tensor::<3>::random([2, 2 * 24, 33], Distribution::Normal(0.0, 2.0), &device)
        .swap_dims(1, 2);
    check(&h, geglu(h.clone()), true, "geglu strided");
    check(
        &h,
        sonic_kernels::activation::gelu(h.clone()),
        false,
        "gelu strided",
    );
    // bf16: each value is the formula on the bf16 inputs, rounded once to bf16 (half an ulp, at most
    // 2^-8 of the value), for awkward widths and a strided view.
    for h in [
        Tensor::<3>::random([3, 7, 2 * 40], Distribution::Normal(0.0, 2.0), &device),
        Tensor::<3>::random([1, 1, 2 * 13], Distribution::Normal(0.0, 2.0), &device),
        Tensor::<3>::random([2, 2 * 24, 33], Distribution::Normal(0.0, 2.0), &device)
            .swap_dims(1, 2),
    ] {
        let h16 = h.cast(DType::BF16);
        let got = geglu(h16.clone());
        assert_eq!(got.dtype(), DType::BF16);
        let [b, n, c2] = h16.dims();
        let c = c2 / 2;
        let (hv, gv) = (host(&h16), host(&got));
        for row in 0..b * n {
            for j in 0..c {
                let (hidden, x) = (hv[row * c2 + j] as f64, hv[row * c2 + c + j]);
                let want = hidden * gelu_exact(x);
                let got = gv[row * c + j] as f64;
                let tol =
                    want.abs() / 256.0 + 2e-7 * (1.0 + x.abs() as f64) * hidden.abs().max(1.0);
                assert!(
                    (got - want).abs() <= tol,
                    "bf16 row {row} col {j}: {got} vs {want}"
                );
            }
        }
    }
}

/// Quick GELU (`x * sigmoid(1.702 x)`) value by value against the f64 formula, on a width that
/// is not a multiple of 16, one value, a strided view and the tails; bf16 takes Burn's chain.
#[test]
fn quick_gelu_matches_the_formula() {
    use sonic_kernels::activation::quick_gelu;
    let device = Device::flex();
    let d = Distribution::Normal(0.0, 4.0);
    for x in [
        Tensor::<3>::random([2, 77, 3072], d, &device),
        Tensor::<3>::random([1, 1, 1], d, &device),
        Tensor::<3>::random([3, 13, 5], d, &device).swap_dims(1, 2),
        Tensor::<3>::from_floats([[[-100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0]]], &device),
    ] {
        let got = quick_gelu(x.clone());
        assert_eq!(got.dims(), x.dims());
        for (&v, &g) in host(&x).iter().zip(&host(&got)) {
            let v64 = v as f64;
            let want = v64 / (1.0 + (-1.702 * v64).exp());
            let tol = 4e-7 * want.abs() + 1e-7 * (1.0 + v64.abs()) * 1e-3 + 1e-30;
            assert!((g as f64 - want).abs() <= tol, "x = {v}: {g} vs {want}");
        }
    }
    let x = Tensor::<3>::random([2, 7, 40], d, &device).cast(DType::BF16);
    let got = quick_gelu(x.clone());
    assert_eq!(got.dtype(), DType::BF16);
    let want = x.clone() * burn::tensor::activation::sigmoid(x.mul_scalar(1.702));
    assert_eq!(host(&got), host(&want));
}
