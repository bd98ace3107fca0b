//! The convolution kernel against Burn's convolution on awkward shapes: channel counts that
//! are not multiples of 16, batch 3, 1x1 spatial, strides 1 and 2, asymmetric padding,
//! rectangular kernels, several bands, no bias, bf16.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::conv::{Geometry, conv2d, fits};

mod common;
use common::max_rel;

struct Case {
    x: [usize; 4],
    c_out: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 4],
    bias: bool,
}

/// A convolution's bias cast to `dtype`.
fn bias_as(bias: &Option<Param<Tensor<1>>>, dtype: DType) -> Option<Param<Tensor<1>>> {
    bias.as_ref()
        .map(|p| Param::from_tensor(p.val().cast(dtype)))
}

fn conv(case: &Case, device: &Device) -> Conv2d {
    let [t, l, b, r] = case.pad;
    Conv2dConfig::new([case.x[1], case.c_out], case.k)
        .with_stride(case.stride)
        .with_padding(PaddingConfig2d::Explicit(t, l, b, r))
        .with_bias(case.bias)
        .init(device)
}

const CASES: &[Case] = &[
    // 3x3, stride 1, padding 1, odd channel counts, batch 3.
    Case {
        x: [3, 13, 9, 11],
        c_out: 5,
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        bias: true,
    },
    // 1x1 spatial.
    Case {
        x: [2, 7, 1, 1],
        c_out: 9,
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        bias: true,
    },
    // The VAE encoder's down-sampler: stride 2, padding (0, 0, 1, 1), odd input size.
    Case {
        x: [1, 6, 15, 17],
        c_out: 6,
        k: [3, 3],
        stride: [2, 2],
        pad: [0, 0, 1, 1],
        bias: true,
    },
    // The UNet's down-sampler: stride 2, padding 1.
    Case {
        x: [2, 10, 16, 16],
        c_out: 10,
        k: [3, 3],
        stride: [2, 2],
        pad: [1, 1, 1, 1],
        bias: false,
    },
    // Pointwise (input used in place), with and without bias.
    Case {
        x: [3, 21, 6, 5],
        c_out: 17,
        k: [1, 1],
        stride: [1, 1],
        pad: [0; 4],
        bias: true,
    },
    Case {
        x: [1, 8, 4, 4],
        c_out: 3,
        k: [1, 1],
        stride: [1, 1],
        pad: [0; 4],
        bias: false,
    },
    // 1x1 with padding (not the in-place path) and a rectangular kernel, no padding.
    Case {
        x: [1, 4, 5, 6],
        c_out: 2,
        k: [1, 1],
        stride: [1, 1],
        pad: [1, 0, 2, 1],
        bias: true,
    },
    Case {
        x: [2, 3, 12, 9],
        c_out: 4,
        k: [5, 3],
        stride: [1, 2],
        pad: [0; 4],
        bias: true,
    },
    // Many input channels, so the output is cut into several bands of rows (the last short).
    Case {
        x: [2, 300, 45, 20],
        c_out: 19,
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        bias: true,
    },
];

#[test]
fn several_bands_are_exercised() {
    let device = Device::flex();
    let case = &CASES[CASES.len() - 1];
    let g = Geometry::of(&conv(case, &device), case.x).unwrap();
    assert!(g.band_rows() < g.oh(), "{g:?}: one band only");
    assert!(
        !g.oh().is_multiple_of(g.band_rows()),
        "{g:?}: no short last band"
    );
}

#[test]
fn kernel_matches_burn_f32() {
    let device = Device::flex();
    for case in CASES {
        let conv = conv(case, &device);
        let x = Tensor::<4>::random(case.x, Distribution::Normal(0.3, 1.0), &device);
        assert!(fits(&conv, &x), "kernel refused {:?}", case.x);
        let e = max_rel(conv2d(&conv, x.clone()), conv.forward(x));
        assert!(
            e < 2e-6,
            "{:?} k {:?} stride {:?} pad {:?}: {e}",
            case.x,
            case.k,
            case.stride,
            case.pad
        );
    }
}

#[test]
fn kernel_reads_strided_inputs() {
    let device = Device::flex();
    let case = &CASES[0];
    let conv = conv(case, &device);
    let [b, c, h, w] = case.x;
    // A non-contiguous input: [B, C, H, W] as a permuted view of [B, H, W, C].
    let x = Tensor::<4>::random([b, h, w, c], Distribution::Normal(0.0, 1.0), &device)
        .permute([0, 3, 1, 2]);
    let e = max_rel(conv2d(&conv, x.clone()), conv.forward(x));
    assert!(e < 2e-6, "strided: {e}");
}

#[test]
fn kernel_matches_burn_bf16() {
    let device = Device::flex();
    for case in [&CASES[0], &CASES[2], &CASES[4]] {
        let conv = conv(case, &device);
        let x =
            Tensor::<4>::random(case.x, Distribution::Normal(0.3, 1.0), &device).cast(DType::BF16);
        let convb = Conv2d {
            weight: Param::from_tensor(conv.weight.val().cast(DType::BF16)),
            bias: bias_as(&conv.bias, DType::BF16),
            ..conv.clone()
        };
        // Computed in f32 on the bf16 values and rounded once: within one bf16 rounding of the
        // f32 result on the same values.
        let wantf = Conv2d {
            weight: Param::from_tensor(convb.weight.val().cast(DType::F32)),
            bias: bias_as(&convb.bias, DType::F32),
            ..conv.clone()
        }
        .forward(x.clone().cast(DType::F32));
        let got = conv2d(&convb, x);
        assert_eq!(got.dtype(), DType::BF16);
        let e = max_rel(got, wantf);
        assert!(e < 8e-3, "bf16 {:?}: {e}", case.x);
    }
}

#[test]
fn refuses_what_it_does_not_take() {
    let device = Device::flex();
    let grouped = Conv2dConfig::new([4, 4], [3, 3])
        .with_groups(2)
        .init(&device);
    let dilated = Conv2dConfig::new([4, 4], [3, 3])
        .with_dilation([2, 2])
        .init(&device);
    let x = Tensor::<4>::zeros([1, 4, 8, 8], &device);
    assert!(!fits(&grouped, &x));
    assert!(!fits(&dilated, &x));
    // Input channels other than the weight's, and a kernel larger than the padded input.
    let c = Conv2dConfig::new([3, 4], [3, 3]).init(&device);
    assert!(!fits(&c, &x));
    let big = Conv2dConfig::new([4, 4], [9, 9]).init(&device);
    assert!(!fits(&big, &x));
    // Falls back to Burn (same result as conv.forward) where refused.
    let y = conv2d(&grouped, x.clone());
    assert_eq!(y.dims(), grouped.forward(x).dims());
}

/// 1-d convolutions (the projector's: kernel 15, padding 7, stride 1 and 4) against Burn's,
/// with odd channel counts, batch 3, a length shorter than the kernel, no bias, bf16, and the
/// fallback for what the kernel refuses.
#[test]
fn conv1d_matches_burn() {
    use burn::nn::PaddingConfig1d;
    use burn::nn::conv::{Conv1d, Conv1dConfig};
    use sonic_kernels::conv::conv1d;
    let device = Device::flex();
    // (batch, c_in, length, c_out, kernel, stride, padding left / right, bias)
    let cases = [
        (1, 1, 1024, 77, 15, 1, (7, 7), true),
        (3, 13, 100, 5, 15, 4, (7, 7), true),
        (2, 7, 5, 9, 15, 1, (7, 7), false),
        (2, 6, 31, 6, 3, 2, (0, 1), true),
        (1, 4, 9, 3, 1, 1, (0, 0), true),
    ];
    for (b, c_in, l, c_out, k, stride, (left, right), bias) in cases {
        let conv = Conv1dConfig::new(c_in, c_out, k)
            .with_stride(stride)
            .with_padding(PaddingConfig1d::Explicit(left, right))
            .with_bias(bias)
            .init(&device);
        let x = Tensor::<3>::random([b, c_in, l], Distribution::Normal(0.3, 1.0), &device);
        assert!(
            Geometry::of_1d(&conv, x.dims()).is_some(),
            "refused {b}x{c_in}x{l}"
        );
        let want = conv.forward(x.clone());
        let e = max_rel(conv1d(&conv, x.clone()), want.clone());
        assert!(
            e < 2e-6,
            "{b}x{c_in}x{l} -> {c_out}, k {k} stride {stride}: {e}"
        );
        let convb = Conv1d {
            weight: Param::from_tensor(conv.weight.val().cast(DType::BF16)),
            bias: bias_as(&conv.bias, DType::BF16),
            ..conv.clone()
        };
        let got = conv1d(&convb, x.clone().cast(DType::BF16));
        assert_eq!(got.dtype(), DType::BF16);
        assert!(max_rel(got, want) < 3e-2, "bf16 {b}x{c_in}x{l}");
    }
    let grouped = Conv1dConfig::new(4, 4, 3).with_groups(2).init(&device);
    let x = Tensor::<3>::random([1, 4, 8], Distribution::Normal(0.0, 1.0), &device);
    assert!(Geometry::of_1d(&grouped, x.dims()).is_none());
    let e = max_rel(conv1d(&grouped, x.clone()), grouped.forward(x));
    assert!(e < 1e-6, "fallback: {e}");
}
