//! The fused GroupNorm (+ SiLU) against Burn's GroupNorm (and `silu`) on awkward shapes.

use burn::module::Param;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::cpu::Isa;
use sonic_kernels::norm::group_norm_with;

mod common;
use common::max_rel;

fn norm(groups: usize, channels: usize, affine: bool, device: &Device) -> GroupNorm {
    let mut gn = GroupNormConfig::new(groups, channels)
        .with_epsilon(1e-5)
        .with_affine(affine)
        .init(device);
    if affine {
        let d = Distribution::Normal(0.0, 1.0);
        gn.gamma = Some(Param::from_tensor(Tensor::random([channels], d, device)));
        gn.beta = Some(Param::from_tensor(Tensor::random([channels], d, device)));
    }
    gn
}

#[test]
fn fused_group_norm_matches_burn() {
    let device = Device::flex();
    // (batch, channels, height, width, groups): channels not multiples of 16, batch 3, 1x1
    // spatial, a group longer than the staging chunk, a non-zero mean.
    for [b, c, h, w, g] in [
        [3, 40, 5, 7, 8],
        [1, 12, 1, 1, 4],
        [2, 96, 17, 9, 32],
        [1, 64, 64, 64, 32],
        [3, 6, 3, 1, 3],
    ] {
        let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.7, 2.0), &device);
        for affine in [true, false] {
            let gn = norm(g, c, affine, &device);
            for isa in Isa::all_supported() {
                for with_silu in [false, true] {
                    let want = gn.forward(x.clone());
                    let want = if with_silu { silu(want) } else { want };
                    let got = group_norm_with(isa, &gn, x.clone(), with_silu);
                    let e = max_rel(got, want);
                    assert!(
                        e < 2e-6,
                        "{isa:?} {:?} affine {affine} silu {with_silu}: {e}",
                        [b, c, h, w, g]
                    );
                }
            }
        }
    }
}

#[test]
fn fused_group_norm_strided_rank3_and_bf16() {
    let device = Device::flex();
    let gn = norm(4, 20, true, &device);
    // A non-contiguous input: [B, C, N] as a transposed view of [B, N, C].
    let x =
        Tensor::<3>::random([3, 33, 20], Distribution::Normal(0.0, 1.0), &device).swap_dims(1, 2);
    let e = max_rel(
        group_norm_with(Isa::selected(), &gn, x.clone(), true),
        silu(gn.forward(x.clone())),
    );
    assert!(e < 2e-6, "strided: {e}");
    // bf16: computed in f32 and rounded once, against Burn in f32 on the same bf16 values.
    let xb = x.cast(DType::BF16);
    let want = silu(gn.forward(xb.clone().cast(DType::F32)));
    let gnb = GroupNorm {
        gamma: gn
            .gamma
            .as_ref()
            .map(|p| Param::from_tensor(p.val().cast(DType::BF16))),
        beta: gn
            .beta
            .as_ref()
            .map(|p| Param::from_tensor(p.val().cast(DType::BF16))),
        ..gn.clone()
    };
    let got = group_norm_with(Isa::selected(), &gnb, xb, true);
    assert_eq!(got.dtype(), DType::BF16);
    // gamma / beta rounded to bf16 as well as the output: a few 2^-9.
    let e = max_rel(got, want);
    assert!(e < 1.5e-2, "bf16: {e}");
}
