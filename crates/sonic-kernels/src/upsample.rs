//! Nearest x2 upsampling followed by a 3x3 convolution (stride 1, padding 1), computed at the
//! input resolution as four 2x2 convolutions (docs/PERFORMANCE.md, "the VAE decoder's
//! upsampling").
//!
//! Output parity `(a, p)` (row, column) of `conv(upsample2x(x))` sees each source pixel through
//! the taps that the nearest copies make coincide: along one axis, parity 0 reads source offsets
//! `-1, 0` with taps `[w0, w1 + w2]` and parity 1 reads `0, +1` with `[w0 + w1, w2]`. The four
//! folded `2 x 2` kernels run as one convolution with `4 * C_out` output channels over the
//! input padded by 1, whose `(h + 1) x (w + 1)` outputs hold every parity; one parallel pass
//! then interleaves them into `[B, C_out, 2h, 2w]`. That is 16 instead of 36 multiply-adds per
//! output value, and the upsampled tensor is never built.
//!
//! Burn's operations built the folded weight with per-value concatenations on every call
//! (~10 % of a 32 x 32 UNet step); here it is one parallel pass over the weight.

use crate::conv::{F32Values, Geometry, bf16_values, contiguous, conv2d_bf16, conv2d_f32, output};
use crate::flex::{OutPtr, from_flex, host_f32, into_flex, on_plain_flex};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

/// Whether [`upsample2x_conv3x3`] takes `conv` over an input of `dims` on its kernel path: a
/// 3x3, stride-1, padding-1 convolution without groups or dilation whose weight matches the
/// input's channels, f32 or bf16 on the plain flex device, `upsample` not listed in
/// `SONIC_KERNELS_OFF`.
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let [b, c, h, w] = x.dims();
    let [_, c_w, kh, kw] = conv.weight.dims();
    let dtype = x.dtype();
    crate::cpu::enabled("upsample")
        && [kh, kw] == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
        && c_w == c
        && b * c * h * w > 0
        && matches!(dtype, DType::F32 | DType::BF16)
        && on_plain_flex(&x.device())
        && conv.weight.val().dtype() == dtype
        && on_plain_flex(&conv.weight.device())
        && conv
            .bias
            .as_ref()
            .is_none_or(|b| b.dims() == [conv.weight.dims()[0]])
}

/// `conv(upsample_nearest2x(x))` for `x` `[B, C_in, H, W]` where [`fits`] accepts it (the
/// result is `[B, C_out, 2H, 2W]` in the input's dtype, equal to the literal computation up to
/// float rounding), else `x` back as the error, untouched.
// The error hands the caller's tensor back by value (no copy), hence its size.
#[allow(clippy::result_large_err)]
pub fn upsample2x_conv3x3(conv: &Conv2d, x: Tensor<4>) -> Result<Tensor<4>, Tensor<4>> {
    if !fits(conv, &x) {
        return Err(x);
    }
    let [b, c_in, h, w] = x.dims();
    let c_out = conv.weight.dims()[0];
    let dtype = x.dtype();
    let bias: Option<Vec<f32>> = conv.bias.as_ref().and_then(|p| host_f32(p.val()));
    let (Some(xf), Some(wf)) = (into_flex(x.clone()), into_flex(conv.weight.val())) else {
        return Err(x);
    };
    let folded = fold_weight(F32Values::new(wf).values(), c_out, c_in);
    let bias4: Option<Vec<f32>> = bias.map(|b| b.repeat(4));
    let g = Geometry {
        b,
        c_in,
        h,
        w,
        c_out: 4 * c_out,
        kh: 2,
        kw: 2,
        sh: 1,
        sw: 1,
        pad: [1; 4],
    };
    let y = if dtype == DType::BF16 && crate::gemm_bf16::available() {
        // bf16 products: the folded taps (sums of two to four bf16 taps, in f32) are rounded
        // to bf16 once more; the input is read in place.
        let folded: Vec<bf16> = crate::convert::to_bf16_vec(&folded);
        let xc = contiguous(xf);
        conv2d_bf16(&g, bf16_values(&xc), &folded, bias4.as_deref())
    } else {
        conv2d_f32(&g, F32Values::new(xf).values(), &folded, bias4.as_deref())
    };
    let out = interleave(&y, b, c_out, h, w);
    let shape = vec![b, c_out, 2 * h, 2 * w];
    Ok(from_flex(output(out, shape, dtype)))
}

/// The four folded kernels of a 3x3 weight `[c_out, c_in, 3, 3]`, as one weight
/// `[4 * c_out, c_in, 2, 2]` whose group `2a + p` is output parity `(a, p)`.
pub fn fold_weight(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    // Along one axis: parity 0 -> [w0, w1 + w2], parity 1 -> [w0 + w1, w2].
    let fold = |t: [f32; 3], parity: usize| -> [f32; 2] {
        if parity == 0 {
            [t[0], t[1] + t[2]]
        } else {
            [t[0] + t[1], t[2]]
        }
    };
    let per_group = c_out * c_in * 4;
    let mut out = vec![0f32; 4 * per_group];
    out.par_chunks_mut(c_in * 4)
        .enumerate()
        .for_each(|(row, dst)| {
            let (group, co) = (row / c_out, row % c_out);
            let (a, p) = (group / 2, group % 2);
            for ci in 0..c_in {
                let k = &weight[(co * c_in + ci) * 9..(co * c_in + ci + 1) * 9];
                // Fold the rows first (three columns each), then the columns.
                let col = |x: usize| fold([k[x], k[3 + x], k[6 + x]], a);
                let (c0, c1, c2) = (col(0), col(1), col(2));
                for (r, d) in dst[ci * 4..ci * 4 + 4].chunks_exact_mut(2).enumerate() {
                    d.copy_from_slice(&fold([c0[r], c1[r], c2[r]], p));
                }
            }
        });
    out
}

/// `[b, 4 * c_out, h + 1, w + 1]` (group `2a + p` = parity `(a, p)`) to `[b, c_out, 2h, 2w]`:
/// output `(2i + a, 2j + p)` is the group's value at `(i + a, j + p)`.
fn interleave(y: &[f32], b: usize, c_out: usize, h: usize, w: usize) -> Vec<f32> {
    let (yh, yw) = (h + 1, w + 1);
    let plane = yh * yw;
    let mut out = vec![0f32; b * c_out * 4 * h * w];
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..b * c_out).into_par_iter().for_each(|bc| {
        let (bi, co) = (bc / c_out, bc % c_out);
        // SAFETY: task `bc` alone writes the `4 h w` values of channel `co` of image `bi`.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(bc * 4 * h * w), 4 * h * w) };
        for a in 0..2 {
            let even = &y[(bi * 4 * c_out + 2 * a * c_out + co) * plane..][..plane];
            let odd = &y[(bi * 4 * c_out + (2 * a + 1) * c_out + co) * plane..][..plane];
            for i in 0..h {
                let row = &mut dst[(2 * i + a) * 2 * w..(2 * i + a + 1) * 2 * w];
                let e = &even[(i + a) * yw..(i + a) * yw + w];
                let o = &odd[(i + a) * yw + 1..(i + a) * yw + 1 + w];
                for ((pair, &ev), &ov) in row.chunks_exact_mut(2).zip(e).zip(o) {
                    pair[0] = ev;
                    pair[1] = ov;
                }
            }
        }
    });
    out
}
