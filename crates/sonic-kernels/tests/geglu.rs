//! GEGLU against Burn's chain (slices, `gelu`, multiply): bit for bit in f32 on awkward shapes
//! (a width that is not a multiple of 16, batch 3, one row, rows that do not fill a task), on a
//! strided input, and through Burn's chain for bf16.

use burn::tensor::activation::gelu;
use burn::tensor::{DType, Device, Distribution, Tensor};
use sonic_kernels::geglu::geglu;

mod common;
use common::{host, max_rel};

fn burn_geglu(h: Tensor<3>) -> Tensor<3> {
    let [b, n, c2] = h.dims();
    let c = c2 / 2;
    h.clone().slice([0..b, 0..n, 0..c]) * gelu(h.slice([0..b, 0..n, c..c2]))
}

#[test]
fn geglu_is_burns_chain_bit_for_bit() {
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
        assert_eq!(host(&got), host(&burn_geglu(h)), "{dims:?}");
    }
    // A strided input: [B, N, 2C] as a permuted view of [B, 2C, N].
    let h = Tensor::<3>::random([2, 2 * 24, 33], Distribution::Normal(0.0, 2.0), &device)
        .swap_dims(1, 2);
    assert_eq!(host(&geglu(h.clone())), host(&burn_geglu(h)), "strided");
    // bf16 takes Burn's chain.
    let h = Tensor::<3>::random([2, 7, 2 * 40], Distribution::Normal(0.0, 2.0), &device);
    let got = geglu(h.clone().cast(DType::BF16));
    assert_eq!(got.dtype(), DType::BF16);
    assert!(max_rel(got, burn_geglu(h)) < 2e-2);
}
