//! Winograd F(2x2, 3x3) against the im2col kernel (itself checked against Burn's convolution in
//! `conv.rs`) on awkward shapes: odd sizes (a last tile half outside), padding 0, 1 and 2 and
//! asymmetric, batch 3, 1x1 and 2x2 spatial, channel counts that are not multiples of 16,
//! several bands with a short last one, no bias.

use sonic_kernels::conv::{Geometry, conv2d_f32};
use sonic_kernels::winograd::{BAND_VALUES, conv3x3_f32, takes};

/// Uniform values in [-1, 1) from a fixed linear congruential sequence.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn geometry(b: usize, c_in: usize, h: usize, w: usize, c_out: usize, pad: [usize; 4]) -> Geometry {
    Geometry {
        b,
        c_in,
        h,
        w,
        c_out,
        kh: 3,
        kw: 3,
        sh: 1,
        sw: 1,
        pad,
    }
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut diff = 0f64;
    let mut scale = 0f64;
    for (&a, &b) in got.iter().zip(want) {
        diff = diff.max((a as f64 - b as f64).abs());
        scale = scale.max((b as f64).abs());
        assert!(a.is_finite(), "non-finite output");
    }
    diff / scale
}

// The last case below must span several bands.
const _: () = assert!(16 * 96 * 40 * 40 > BAND_VALUES);

#[test]
fn winograd_equals_the_direct_convolution() {
    let cases = [
        geometry(3, 13, 9, 11, 5, [1, 1, 1, 1]),
        geometry(2, 7, 1, 1, 9, [1, 1, 1, 1]),
        geometry(1, 5, 2, 2, 3, [1, 1, 1, 1]),
        geometry(1, 6, 7, 8, 4, [0, 0, 0, 0]),
        geometry(2, 4, 6, 5, 6, [2, 2, 2, 2]),
        geometry(1, 3, 10, 7, 2, [0, 2, 1, 0]),
        geometry(1, 17, 33, 31, 19, [1, 1, 1, 1]),
        // Several bands (16 x 96 x 40 tiles per row = 61 Ki values, 17 rows per band) and a
        // short last band: 40 tile rows.
        geometry(1, 96, 80, 80, 24, [1, 1, 1, 1]),
    ];
    for (i, g) in cases.iter().enumerate() {
        assert!(takes(g), "case {i}");
        let x = values(g.b * g.c_in * g.h * g.w, 1 + i as u64);
        let weight = values(g.c_out * g.c_in * 9, 100 + i as u64);
        let bias = values(g.c_out, 200 + i as u64);
        for bias in [Some(bias.as_slice()), None] {
            let want = conv2d_f32(g, &x, &weight, bias);
            let got = conv3x3_f32(g, &x, &weight, bias);
            let err = max_rel(&got, &want);
            println!("case {i} bias {}: max_rel {err:.2e}", bias.is_some());
            assert!(
                err < 2e-6,
                "case {i} ({g:?}), bias {}: {err:.2e}",
                bias.is_some()
            );
        }
    }
}

#[test]
fn only_3x3_stride_1_small_padding_is_taken() {
    let mut g = geometry(1, 4, 8, 8, 4, [1, 1, 1, 1]);
    assert!(takes(&g));
    g.sh = 2;
    assert!(!takes(&g));
    g.sh = 1;
    g.kw = 1;
    assert!(!takes(&g));
    g.kw = 3;
    g.pad = [3, 1, 1, 1];
    assert!(!takes(&g));
}

/// Best-of-3 times of both paths at the UNet's and the VAE decoder's sizes (batch 1 for the
/// VAE, 2 for the UNet); prints a table. Timing only, so ignored by default:
/// `cargo test --release -p sonic-kernels --test winograd -- --ignored --nocapture`.
#[test]
#[ignore = "timing, minutes; run in release on an idle machine"]
fn winograd_timing() {
    let best = |f: &dyn Fn() -> Vec<f32>| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    for (b, c_in, c_out, s) in [
        (2, 320, 320, 64),
        (2, 640, 640, 32),
        (2, 1280, 1280, 16),
        (2, 1280, 1280, 8),
        (1, 512, 512, 64),
        (1, 512, 512, 128),
        (1, 512, 256, 256),
        (1, 256, 256, 256),
        (1, 256, 128, 512),
        (1, 128, 128, 512),
    ] {
        let g = geometry(b, c_in, s, s, c_out, [1, 1, 1, 1]);
        let x = values(b * c_in * s * s, 1);
        let weight = values(c_out * c_in * 9, 2);
        let bias = values(c_out, 3);
        let direct = best(&|| conv2d_f32(&g, &x, &weight, Some(&bias)));
        let wino = best(&|| conv3x3_f32(&g, &x, &weight, Some(&bias)));
        let gflop = 2.0 * (b * c_out * c_in * 9 * s * s) as f64 / 1e9;
        println!(
            "{b}x{c_in}->{c_out}x{s}x{s}: direct {:.1} ms ({:.0} GFLOP/s), winograd {:.1} ms ({:.0} GFLOP/s equivalent), {:.2}x",
            direct * 1e3,
            gflop / direct,
            wino * 1e3,
            gflop / wino,
            direct / wino
        );
    }
}
