//! The fused attention kernel against Burn's attention on awkward shapes, every instruction
//! set this CPU has, f32 and bf16, strided and contiguous inputs.

use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::attention::{fits, scaled_dot_product_burn, scaled_dot_product_fused};
use sonic_kernels::cpu::Isa;

mod common;
use common::{host, max_rel};

/// `softmax(q k^T / sqrt(d)) v` in f64 on the host, `[B, H, N, dv]` row-major.
fn reference_f64(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> Vec<f64> {
    let [b, h, n, d] = q.dims();
    let m = k.dims()[2];
    let dv = v.dims()[3];
    let (q, k, v) = (host(q), host(k), host(v));
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f64; b * h * n * dv];
    for bh in 0..b * h {
        for i in 0..n {
            let qi = &q[(bh * n + i) * d..][..d];
            let s: Vec<f64> = (0..m)
                .map(|j| {
                    let kj = &k[(bh * m + j) * d..][..d];
                    qi.iter()
                        .zip(kj)
                        .map(|(&a, &c)| a as f64 * c as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = s.iter().map(|&x| (x - mx).exp()).collect();
            let z: f64 = p.iter().sum();
            let o = &mut out[(bh * n + i) * dv..][..dv];
            for (j, &pj) in p.iter().enumerate() {
                let vj = &v[(bh * m + j) * dv..][..dv];
                for (oc, &vc) in o.iter_mut().zip(vj) {
                    *oc += pj / z * vc as f64;
                }
            }
        }
    }
    out
}

/// Max |got - want| / max |want|.
fn rel_to(got: &Tensor<4>, want: &[f64]) -> f64 {
    let got = host(got);
    let num = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    num / want.iter().map(|w| w.abs()).fold(0.0, f64::max)
}

/// `[B, H, N, d]` as diffusers' head split produces it: a strided view of `[B, N, H * d]`.
fn heads(b: usize, h: usize, n: usize, d: usize, scale: f32, device: &Device) -> Tensor<4> {
    Tensor::<3>::random([b, n, h * d], Distribution::Normal(0.0, 1.0), device)
        .mul_scalar(scale)
        .reshape([b, n, h, d])
        .swap_dims(1, 2)
}

// (batch, heads, queries, keys, head width): token counts that are not multiples of the
// query block (64) or of the key block, 5 heads, batch 3, widths 40 / 64 / 80 / 160 / 512,
// a single token (1x1 spatial).
const SHAPES: [[usize; 5]; 8] = [
    [3, 5, 130, 77, 40],
    [1, 5, 200, 300, 64],
    [2, 2, 65, 520, 80],
    [3, 1, 33, 33, 160],
    [1, 1, 1, 1, 160],
    [1, 2, 1, 77, 40],
    [1, 1, 100, 100, 512],
    [2, 8, 64, 1030, 40],
];

#[test]
fn fused_matches_burn_f32() {
    let device = Device::flex();
    for [b, h, n, m, d] in SHAPES {
        // Peaky softmax (scores of several units) so that the online rescaling matters.
        let q = heads(b, h, n, d, 2.0, &device);
        let k = heads(b, h, m, d, 1.0, &device);
        let v = heads(b, h, m, d, 1.0, &device);
        assert!(fits(&q, &k, &v));
        // Against attention in f64: the f32 results of both Burn and the kernel differ from
        // it by rounding (sums over up to 1030 keys); the kernel's error may be at most twice
        // Burn's or 2e-6, whichever is larger.
        let exact = reference_f64(&q, &k, &v);
        let burn = scaled_dot_product_burn(q.clone(), k.clone(), v.clone());
        let e_burn = rel_to(&burn, &exact);
        for isa in Isa::all_supported() {
            let got = scaled_dot_product_fused(isa, q.clone(), k.clone(), v.clone()).unwrap();
            assert_eq!(got.dims(), [b, h, n, d]);
            let e = rel_to(&got, &exact);
            eprintln!(
                "{isa:?} {:?}: kernel {e:.2e}, burn {e_burn:.2e}",
                [b, h, n, m, d]
            );
            assert!(
                e <= 2.0 * e_burn.max(1e-6),
                "{isa:?} {:?}: max rel error {e} against f64 (Burn's: {e_burn})",
                [b, h, n, m, d]
            );
        }
    }
}

#[test]
fn fused_matches_burn_contiguous_inputs_and_value_width() {
    let device = Device::flex();
    let dist = Distribution::Normal(0.0, 1.0);
    let q = Tensor::<4>::random([3, 5, 70, 40], dist, &device).mul_scalar(2.0);
    let k = Tensor::<4>::random([3, 5, 90, 40], dist, &device);
    let v = Tensor::<4>::random([3, 5, 90, 24], dist, &device);
    let want = scaled_dot_product_burn(q.clone(), k.clone(), v.clone());
    let got = scaled_dot_product_fused(Isa::selected(), q, k, v).unwrap();
    assert_eq!(got.dims(), [3, 5, 70, 24]);
    let e = max_rel(got, want);
    assert!(e < 2e-6, "max rel error {e}");
}

#[test]
fn fused_output_merges_heads_like_burn() {
    // The output is a view of [B, N, H, d] memory: merging heads must give Burn's layout.
    let device = Device::flex();
    let (q, k, v) = (
        heads(2, 5, 50, 40, 1.0, &device),
        heads(2, 5, 77, 40, 1.0, &device),
        heads(2, 5, 77, 40, 1.0, &device),
    );
    let merge = |x: Tensor<4>| x.swap_dims(1, 2).reshape([2, 50, 200]);
    let want = merge(scaled_dot_product_burn(q.clone(), k.clone(), v.clone()));
    let got = merge(scaled_dot_product_fused(Isa::selected(), q, k, v).unwrap());
    let e = max_rel(got.unsqueeze::<4>(), want.unsqueeze::<4>());
    assert!(e < 2e-6, "max rel error {e}");
}

/// bf16: the f64 attention of the bf16 inputs, within two bf16 roundings: of each
/// probability before `P V` (each at most 2^-8 of itself, so at most 2^-8 of the largest
/// value), and of the output (2^-8 of itself); with AVX512-BF16 the products run in bf16,
/// without it widened to f32. Every shape of the f32 tests plus an odd head width and key
/// count.
#[test]
fn fused_bf16_matches_the_rounded_inputs() {
    let device = Device::flex();
    let mut shapes = SHAPES.to_vec();
    shapes.push([1, 2, 9, 31, 13]);
    for [b, h, n, m, d] in shapes {
        let q = heads(b, h, n, d, 2.0, &device).cast(DType::BF16);
        let k = heads(b, h, m, d, 1.0, &device).cast(DType::BF16);
        let v = heads(b, h, m, d, 1.0, &device).cast(DType::BF16);
        let f = |x: &Tensor<4>| x.clone().cast(DType::F32);
        let want = reference_f64(&f(&q), &f(&k), &f(&v));
        let v_max = host(&v).iter().fold(0f64, |a, &x| a.max((x as f64).abs()));
        let got = scaled_dot_product_fused(Isa::selected(), q, k, v).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        for (i, (&g, &w)) in host(&got).iter().zip(&want).enumerate() {
            let tol = (v_max + w.abs()) / 256.0 + 1e-6;
            assert!(
                (g as f64 - w).abs() <= tol,
                "{:?} value {i}: {g} vs {w}",
                [b, h, n, m, d]
            );
        }
    }
}

#[test]
fn mixed_dtypes_are_refused() {
    let device = Device::flex();
    let q = heads(1, 2, 10, 40, 1.0, &device);
    let k = heads(1, 2, 10, 40, 1.0, &device).cast(DType::BF16);
    let v = heads(1, 2, 10, 40, 1.0, &device);
    assert!(!fits(&q, &k, &v));
    assert!(scaled_dot_product_fused(Isa::selected(), q, k, v).is_none());
}
