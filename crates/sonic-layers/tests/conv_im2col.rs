//! `conv2d_im2col` (im2col + matmul) and `conv2d_forward` against Burn's own convolution.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use sonic_layers::{conv2d_forward, conv2d_im2col};

fn device() -> Device {
    sonic_core::device::default_device().expect("a backend is compiled in")
}

fn check(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: [usize; 4],
    hw: [usize; 2],
    bias: bool,
) {
    let d = device();
    let conv = Conv2dConfig::new([c_in, c_out], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad[0], pad[1], pad[2], pad[3]))
        .with_bias(bias)
        .init(&d);
    let x = Tensor::<4>::random([2, c_in, hw[0], hw[1]], Distribution::Normal(0.0, 1.0), &d);
    let want = conv.forward(x.clone());
    for (path, got) in [
        ("im2col", conv2d_im2col(&conv, x.clone())),
        ("dispatch", conv2d_forward(&conv, x)),
    ] {
        assert_eq!(
            got.dims(),
            want.dims(),
            "{path}: shape for k{k} s{stride} pad {pad:?} {hw:?}"
        );
        let scale: f32 = want.clone().abs().max().into_scalar();
        let err: f32 = (got - want.clone()).abs().max().into_scalar();
        assert!(
            err <= 1e-5 * scale.max(1.0),
            "{path}: k{k} s{stride} pad {pad:?} {hw:?}: max err {err} (scale {scale})"
        );
    }
}

#[test]
fn matches_burn_conv() {
    check(8, 16, 3, 1, [1, 1, 1, 1], [9, 7], true);
    check(8, 16, 3, 1, [1, 1, 1, 1], [9, 7], false);
    // The UNet's down-sampler (stride 2, padding 1) and the VAE's (padding 0, the input padded
    // right / bottom by the caller).
    check(6, 6, 3, 2, [1, 1, 1, 1], [10, 10], true);
    check(6, 6, 3, 2, [0, 0, 0, 0], [11, 11], true);
    // Asymmetric padding and an odd size.
    check(4, 5, 3, 1, [0, 1, 2, 0], [6, 5], true);
    check(3, 4, 5, 1, [2, 2, 2, 2], [8, 8], true);
    // 1x1 goes through Burn's own path.
    check(8, 4, 1, 1, [0, 0, 0, 0], [5, 5], true);
    // Few pixels, many channels: the dispatcher picks im2col.
    check(16, 64, 3, 1, [1, 1, 1, 1], [4, 4], true);
}

#[test]
fn bands_match_one_pass() {
    // Large enough that the im2col buffer exceeds the budget and is done in bands.
    let c = 64;
    let hw = (sonic_layers::IM2COL_BUDGET / (2 * c * 9 * 64)) + 8;
    check(c, 8, 3, 1, [1, 1, 1, 1], [hw, 64], true);
    check(c, 8, 3, 2, [1, 1, 1, 1], [hw, 64], true);
}
