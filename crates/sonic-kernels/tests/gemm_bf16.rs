//! The bf16 products against an f64 reference on the same bf16 values: shapes that are not
//! multiples of the tile (12 x 32) or of the packed block (384 rows, 512 columns), odd `k`,
//! strided operands, accumulation into `c`, one thread and all of them.

use half::bf16;
use sonic_kernels::gemm_bf16::{available, matmul};

/// A deterministic pseudo-random bf16 value in [-2, 2).
fn value(seed: u64, i: usize) -> bf16 {
    let mut x = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    bf16::from_f32(((x >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0)
}

#[test]
fn products_equal_the_f64_reference() {
    if !available() {
        eprintln!("skipped: this CPU lacks AVX512-BF16");
        return;
    }
    let shapes = [
        [1, 1, 1],
        [5, 17, 3],
        [12, 32, 2],
        [13, 33, 385],
        [37, 100, 1000],
        [200, 600, 77],
        [3, 1100, 40],
        [130, 9, 768],
    ];
    for (s, &[m, n, k]) in shapes.iter().enumerate() {
        for (accumulate, parallel, pad) in [(false, true, 0), (true, false, 3), (true, true, 5)] {
            let (lda, ldb, ldc) = (k + pad, n + 2 * pad, n + pad);
            let a: Vec<bf16> = (0..m * lda).map(|i| value(s as u64, i)).collect();
            let b: Vec<bf16> = (0..k * ldb).map(|i| value(100 + s as u64, i)).collect();
            let c0: Vec<f32> = (0..m * ldc).map(|i| value(200, i).to_f32()).collect();
            let mut c = c0.clone();
            matmul(
                [m, n, k],
                &a,
                lda,
                &b,
                ldb,
                &mut c,
                ldc,
                accumulate,
                parallel,
            );
            for i in 0..m {
                for j in 0..ldc {
                    let got = c[i * ldc + j];
                    if j >= n {
                        assert_eq!(got, c0[i * ldc + j], "padding of c was written");
                        continue;
                    }
                    let (mut want, mut scale) = (0f64, 0f64);
                    for p in 0..k {
                        let prod = a[i * lda + p].to_f64() * b[p * ldb + j].to_f64();
                        want += prod;
                        scale += prod.abs();
                    }
                    if accumulate {
                        want += c0[i * ldc + j] as f64;
                        scale += (c0[i * ldc + j] as f64).abs();
                    }
                    let err = (got as f64 - want).abs();
                    assert!(
                        err <= 1e-6 * scale + 1e-30,
                        "[{m}, {n}, {k}] acc {accumulate} at ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn empty_k_clears_or_keeps_c() {
    if !available() {
        return;
    }
    let mut c = vec![1.5f32; 6];
    matmul([2, 3, 0], &[], 0, &[], 3, &mut c, 3, true, true);
    assert_eq!(c, vec![1.5; 6]);
    matmul([2, 3, 0], &[], 0, &[], 3, &mut c, 3, false, true);
    assert_eq!(c, vec![0.0; 6]);
}
