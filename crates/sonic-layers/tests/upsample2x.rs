//! `Upsample2D` at twice the size (four 2x2 convolutions at the input resolution) against the
//! literal nearest upsampling + 3x3 convolution, on awkward shapes.

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use sonic_core::fixtures::{compare_slices, to_host};
use sonic_layers::upsampling::Upsample2D;

fn max_rel(got: Tensor<4>, want: Tensor<4>) -> f64 {
    compare_slices(&to_host(&got).unwrap(), &to_host(&want).unwrap()).max_rel
}

#[test]
fn four_2x2_convolutions_equal_upsample_then_3x3() {
    let device = Device::flex();
    // (batch, c_in, c_out, height, width): batch 3, channels not multiples of 16, 1x1 spatial,
    // non-square.
    for [b, ci, co, h, w] in [
        [3, 5, 7, 4, 6],
        [1, 20, 12, 1, 1],
        [2, 33, 40, 9, 5],
        [1, 64, 64, 16, 16],
    ] {
        let mut up = Upsample2D::new(ci, co, &device);
        let d = Distribution::Normal(0.0, 1.0);
        up.conv.bias = Some(Param::from_tensor(Tensor::random([co], d, &device)));
        let x = Tensor::<4>::random([b, ci, h, w], d, &device);
        let got = up.forward(x.clone(), None);
        assert_eq!(got.dims(), [b, co, 2 * h, 2 * w]);
        let want = up.forward_reference(x.clone(), [2 * h, 2 * w]);
        let e = max_rel(got, want);
        assert!(e < 2e-6, "{:?}: max rel error {e}", [b, ci, co, h, w]);
        // An explicit size of exactly twice the input takes the same path.
        let e = max_rel(
            up.forward(x.clone(), Some([2 * h, 2 * w])),
            up.forward_reference(x, [2 * h, 2 * w]),
        );
        assert!(e < 2e-6);
    }
}

#[test]
fn other_sizes_keep_the_literal_path() {
    let device = Device::flex();
    let up = Upsample2D::new(6, 6, &device);
    let x = Tensor::<4>::random([1, 6, 5, 4], Distribution::Normal(0.0, 1.0), &device);
    let got = up.forward(x.clone(), Some([9, 7]));
    assert_eq!(got.dims(), [1, 6, 9, 7]);
    assert_eq!(max_rel(got, up.forward_reference(x, [9, 7])), 0.0);
}

/// On an autodiff device (training: the UNet's up-samplers sit between the adapters and the
/// loss), the rewrite differentiates as the literal path does, for the input and for the
/// stored weights, whether those are tracked or frozen.
#[test]
fn the_rewrite_differentiates_like_upsample_then_3x3() {
    let device = Device::flex();
    let d = Distribution::Normal(0.0, 1.0);
    let [b, ci, co, h, w] = [2, 6, 5, 3, 4];
    for tracked_weights in [true, false] {
        let mut up = Upsample2D::new(ci, co, &device);
        up.conv.bias = Some(Param::from_tensor(Tensor::random([co], d, &device)));
        up.conv.weight = up
            .conv
            .weight
            .map(|t| t.autodiff())
            .set_require_grad(tracked_weights);
        up.conv.bias = up
            .conv
            .bias
            .map(|p| p.map(|t| t.autodiff()).set_require_grad(tracked_weights));
        let x0 = Tensor::<4>::random([b, ci, h, w], d, &device);
        let upstream = Tensor::<4>::random([b, co, 2 * h, 2 * w], d, &device);
        let grads_of = |fast: bool| {
            let x = x0.clone().autodiff().require_grad();
            let y = if fast {
                up.forward(x.clone(), None)
            } else {
                up.forward_reference(x.clone(), [2 * h, 2 * w])
            };
            let g = (y * upstream.clone().autodiff()).sum().backward();
            let gx = x.grad(&g).expect("input gradient");
            let gw = up.conv.weight.val().grad(&g);
            (gx, gw)
        };
        let (fx, fw) = grads_of(true);
        let (rx, rw) = grads_of(false);
        let e = max_rel(fx, rx);
        assert!(e < 2e-6, "input gradient: max rel error {e}");
        assert_eq!(fw.is_some(), tracked_weights);
        if let (Some(fw), Some(rw)) = (fw, rw) {
            let e = max_rel(fw, rw);
            assert!(e < 2e-6, "weight gradient: max rel error {e}");
        }
    }
}
