//! The upsampling kernel (four folded 2x2 convolutions at the input resolution) against the
//! literal nearest x2 upsampling + 3x3 convolution in Burn's operations, on awkward shapes:
//! batch 3, channel counts that are not multiples of 16, 1x1 spatial, non-square, no bias, bf16.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::upsample::{fits, fold_weight, upsample2x_conv3x3};

mod common;
use common::{host, max_rel};

fn conv(c_in: usize, c_out: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .init(device)
}

/// Nearest x2 upsampling, then the convolution, with Burn's own operations.
fn literal(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let up = x
        .reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w]);
    conv.forward(up)
}

const SHAPES: &[[usize; 5]] = &[
    // (batch, c_in, c_out, height, width)
    [3, 5, 7, 4, 6],
    [1, 20, 12, 1, 1],
    [2, 33, 40, 9, 5],
    [1, 64, 48, 16, 16],
    [2, 17, 3, 1, 7],
];

#[test]
fn equals_upsample_then_3x3_in_f32() {
    let device = Device::flex();
    let d = Distribution::Normal(0.0, 1.0);
    for &[b, ci, co, h, w] in SHAPES {
        for bias in [true, false] {
            let conv = conv(ci, co, bias, &device);
            let x = Tensor::<4>::random([b, ci, h, w], d, &device);
            assert!(fits(&conv, &x));
            let got = upsample2x_conv3x3(&conv, x.clone()).expect("the kernel path");
            assert_eq!(got.dims(), [b, co, 2 * h, 2 * w]);
            let e = max_rel(got, literal(&conv, x));
            assert!(
                e < 2e-6,
                "{:?} bias {bias}: max rel error {e}",
                [b, ci, co, h, w]
            );
        }
    }
}

/// bf16 in and out: the exact result on the bf16 values, within the output's rounding (2^-8 of
/// itself at most) and, where the products run in bf16 (AVX512-BF16), the rounding of the
/// folded taps (each 2^-8 of itself at most, so 2^-8 of `sum |w| |x|` over the 3x3 window).
#[test]
fn bf16_is_the_exact_result_within_its_roundings() {
    let device = Device::flex();
    let d = Distribution::Normal(0.0, 1.0);
    let with_weight = |conv: &Conv2d, w: Tensor<4>, bias: Option<Tensor<1>>| {
        let mut c = conv.clone();
        c.weight = Param::from_tensor(w);
        c.bias = bias.map(Param::from_tensor);
        c
    };
    for &[b, ci, co, h, w] in SHAPES {
        let conv32 = conv(ci, co, true, &device);
        let bias16 = conv32.bias.as_ref().map(|p| p.val().cast(DType::BF16));
        let conv16 = with_weight(
            &conv32,
            conv32.weight.val().cast(DType::BF16),
            bias16.clone(),
        );
        // The f32 reference on exactly the bf16 values, and the sums of |w| |x| (+ |bias|).
        let w16 = conv16.weight.val().cast(DType::F32);
        let exact = with_weight(
            &conv32,
            w16.clone(),
            bias16.clone().map(|b| b.cast(DType::F32)),
        );
        let magnitude = with_weight(&conv32, w16.abs(), bias16.map(|b| b.cast(DType::F32).abs()));
        let x16 = Tensor::<4>::random([b, ci, h, w], d, &device).cast(DType::BF16);
        let got = upsample2x_conv3x3(&conv16, x16.clone()).expect("the kernel path");
        assert_eq!(got.dtype(), DType::BF16);
        let x32 = x16.cast(DType::F32);
        let want = host(&literal(&exact, x32.clone()));
        let scale = host(&literal(&magnitude, x32.abs()));
        for (i, (&g, (&e, &s))) in host(&got).iter().zip(want.iter().zip(&scale)).enumerate() {
            let tol = (e.abs() + s) as f64 / 256.0 + 1e-6 * s as f64;
            assert!(
                (g as f64 - e as f64).abs() <= tol,
                "{:?} value {i}: {g} vs {e}",
                [b, ci, co, h, w]
            );
        }
    }
}

#[test]
fn other_convolutions_are_handed_back_untouched() {
    let device = Device::flex();
    let x = Tensor::<4>::random([1, 6, 5, 4], Distribution::Normal(0.0, 1.0), &device);
    let strided = Conv2dConfig::new([6, 6], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let pointwise = Conv2dConfig::new([6, 6], [1, 1]).init(&device);
    let unpadded = Conv2dConfig::new([6, 6], [3, 3]).init(&device);
    let wrong_channels = conv(5, 6, true, &device);
    for c in [strided, pointwise, unpadded, wrong_channels] {
        assert!(!fits(&c, &x));
        let back = upsample2x_conv3x3(&c, x.clone()).expect_err("declined");
        assert_eq!(host(&back), host(&x));
    }
}

/// The folded kernels: along an axis, parity 0 reads source offsets `-1, 0` with taps
/// `[w0, w1 + w2]`, parity 1 reads `0, +1` with `[w0 + w1, w2]`.
#[test]
fn folded_taps_are_the_coinciding_sums() {
    // One 3x3 kernel of distinct powers of two, so every sum is exact and tells its taps apart.
    let k: Vec<f32> = (0..9).map(|i| (1u32 << i) as f32).collect();
    let folded = fold_weight(&k, 1, 1);
    let groups = |parity: usize| -> [&'static [usize]; 2] {
        if parity == 0 {
            [&[0], &[1, 2]]
        } else {
            [&[0, 1], &[2]]
        }
    };
    for a in 0..2 {
        for p in 0..2 {
            for (r, rows) in groups(a).iter().enumerate() {
                for (c, cols) in groups(p).iter().enumerate() {
                    let mut want = 0f32;
                    for &y in rows.iter() {
                        for &x in cols.iter() {
                            want += k[3 * y + x];
                        }
                    }
                    let got = folded[(2 * a + p) * 4 + 2 * r + c];
                    assert_eq!(got, want, "parity ({a}, {p}), tap ({r}, {c})");
                }
            }
        }
    }
}
