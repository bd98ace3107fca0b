//! GEGLU against Burn's chain (slices, `gelu` with libm's `erff`, multiply) on awkward shapes
//! (a width that is not a multiple of 16, batch 3, one row, rows that do not fill a task), on a
//! strided input, and through Burn's chain for bf16; the vectorised GELU on every instruction
//! set against the exact formula.

use burn::tensor::activation::gelu;
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::activation::geglu;
use sonic_kernels::cpu::Isa;
use sonic_kernels::vecmath;

mod common;
use common::max_rel;

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

#[test]
fn geglu_matches_burns_chain() {
    let device = Device::flex();
    for dims in [
        [3, 77, 2 * 40],
        [1, 1, 2],
        [2, 4096, 2 * 320],
        [1, 9, 2 * 1280],
        [2, 5, 2 * 13],
    ] {
        let h = Tensor::<3>::random(dims, Distribution::Normal(0.0, 3.0), &device);
        let got = geglu(h.clone());
        assert_eq!(got.dims(), [dims[0], dims[1], dims[2] / 2]);
        let e = max_rel(got, burn_geglu(h));
        assert!(e < 1e-6, "{dims:?}: {e}");
    }
    // A strided input: [B, N, 2C] as a permuted view of [B, 2C, N].
    let h = Tensor::<3>::random([2, 2 * 24, 33], Distribution::Normal(0.0, 2.0), &device)
        .swap_dims(1, 2);
    let e = max_rel(geglu(h.clone()), burn_geglu(h));
    assert!(e < 1e-6, "strided: {e}");
    // bf16 takes Burn's chain.
    let h = Tensor::<3>::random([2, 7, 2 * 40], Distribution::Normal(0.0, 2.0), &device);
    let got = geglu(h.clone().cast(DType::BF16));
    assert_eq!(got.dtype(), DType::BF16);
    assert!(max_rel(got, burn_geglu(h)) < 2e-2);
}

#[test]
fn gelu_matches_burns() {
    let device = Device::flex();
    for dims in [[1, 77, 1024], [3, 5, 13], [1, 1, 1]] {
        let x = Tensor::<3>::random(dims, Distribution::Normal(0.0, 3.0), &device);
        let e = max_rel(sonic_kernels::activation::gelu(x.clone()), gelu(x));
        assert!(e < 1e-6, "{dims:?}: {e}");
    }
    let x = Tensor::<3>::random([2, 9, 4], Distribution::Normal(0.0, 3.0), &device);
    let e = max_rel(
        sonic_kernels::activation::gelu(x.clone().swap_dims(1, 2)),
        gelu(x.swap_dims(1, 2)),
    );
    assert!(e < 1e-6, "strided: {e}");
}
