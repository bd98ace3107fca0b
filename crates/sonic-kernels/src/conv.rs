//! Dense 2-d convolution (any `kh x kw`, stride, explicit padding; no groups, no dilation) as
//! banded im2col + packed matrix products, written straight into the `[B, C_out, OH, OW]`
//! output.
//!
//! Burn's convolution on `flex` re-lays out the whole weight and converts the input to NHWC on
//! every call, then writes each output tile back to NCHW value by value. Here the weight is
//! used in its stored `[C_out, C_in * kh * kw]` order as the left operand (no copy for f32),
//! and the work is cut into bands of whole output rows: for each (image, band) the input
//! windows of the band are gathered into a `C_in * kh * kw x band` scratch matrix (row copies
//! when the stride is 1) and one `gemm` call multiplies the weight by it, its result landing in
//! the output's final layout (one contiguous run per output channel: the band's rows are
//! whole rows). A `1 x 1` convolution with stride 1 and no padding skips the gather: the input
//! itself is the right operand. Bands run in parallel on rayon; when there are fewer bands
//! than threads, the products themselves are split over the threads instead.
//!
//! The sums run in another order than Burn's, so results equal Burn's up to float rounding.
//! `bf16` runs on the AVX512-BF16 products of [`crate::gemm_bf16`] (f32 accumulation, one
//! rounding of the result) where the CPU has them; elsewhere it is widened to `f32` once
//! (input and weight), computed in `f32` and rounded once.

use crate::flex::{OutPtr, from_flex, host_f32, into_flex, on_plain_flex};
use burn::backend::flex::FlexTensor;
use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::{PaddingConfig1d, PaddingConfig2d};
use burn::tensor::{DType, Tensor, TensorData};
use half::bf16;
use rayon::prelude::*;

/// Target number of scratch values (`C_in * kh * kw` times the band's pixels) per band: the
/// band is as many whole output rows as keep the gathered windows near 1 Mi values (4 MiB),
/// with at least [`MIN_BAND_PIXELS`] pixels.
pub const BAND_VALUES: usize = 1 << 20;

/// Fewest output pixels per band (one band is never less than one output row).
pub const MIN_BAND_PIXELS: usize = 256;

/// The shape of one convolution: input `[b, c_in, h, w]`, weight `[c_out, c_in, kh, kw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Batch.
    pub b: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride along the height.
    pub sh: usize,
    /// Stride along the width.
    pub sw: usize,
    /// Padding: top, left, bottom, right.
    pub pad: [usize; 4],
}

impl Geometry {
    /// The geometry of `conv` applied to an input of `dims`, or `None` for a convolution the
    /// kernel does not take (groups, dilation, `Same` padding, an empty output, channel
    /// mismatch).
    pub fn of(conv: &Conv2d, dims: [usize; 4]) -> Option<Geometry> {
        let pad = match conv.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Same => return None,
        };
        let plain = conv.groups == 1 && conv.dilation == [1, 1];
        Self::checked(conv.weight.dims(), dims, conv.stride, pad, plain)
    }

    /// The geometry of the 1-d `conv` applied to an input `[b, c_in, l]`: a 2-d convolution
    /// of height 1 (`None` as for [`Self::of`]).
    pub fn of_1d(conv: &Conv1d, dims: [usize; 3]) -> Option<Geometry> {
        let (left, right) = match conv.padding {
            PaddingConfig1d::Explicit(l, r) => (l, r),
            PaddingConfig1d::Valid => (0, 0),
            PaddingConfig1d::Same => return None,
        };
        let [c_out, c_w, k] = conv.weight.dims();
        let [b, c_in, l] = dims;
        let plain = conv.groups == 1 && conv.dilation == 1;
        let pad = [0, left, 0, right];
        Self::checked(
            [c_out, c_w, 1, k],
            [b, c_in, 1, l],
            [1, conv.stride],
            pad,
            plain,
        )
    }

    /// The geometry of a weight `[c_out, c_w, kh, kw]` over `[b, c_in, h, w]` if the kernel
    /// takes it: `plain` (no groups, no dilation), matching channels, a non-empty output.
    fn checked(
        weight: [usize; 4],
        dims: [usize; 4],
        [sh, sw]: [usize; 2],
        pad: [usize; 4],
        plain: bool,
    ) -> Option<Geometry> {
        let [c_out, c_w, kh, kw] = weight;
        let [b, c_in, h, w] = dims;
        let g = Geometry {
            b,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            sh,
            sw,
            pad,
        };
        let ok = plain
            && c_w == c_in
            && sh > 0
            && sw > 0
            && kh > 0
            && kw > 0
            && h + pad[0] + pad[2] >= kh
            && w + pad[1] + pad[3] >= kw
            && b * c_in * c_out > 0
            && g.oh() * g.ow() > 0;
        ok.then_some(g)
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + self.pad[0] + self.pad[2] - self.kh) / self.sh + 1
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + self.pad[1] + self.pad[3] - self.kw) / self.sw + 1
    }

    /// Rows of the scratch matrix (the products' inner dimension).
    pub fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// A `1 x 1` convolution with stride 1 and no padding: the input is the right operand.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.pad == [0; 4]
    }

    /// Output rows per band.
    pub fn band_rows(&self) -> usize {
        let pixels = (BAND_VALUES / self.k().max(1)).max(MIN_BAND_PIXELS);
        pixels.div_ceil(self.ow()).clamp(1, self.oh())
    }
}

/// `conv.forward(x)` for `x` `[B, C_in, H, W]`: the kernel on the plain `flex` device (f32 or
/// bf16) where [`Geometry::of`] accepts the convolution, Burn's convolution otherwise.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let g = Geometry::of(conv, x.dims());
    let bias = conv.bias.as_ref().map(|b| b.val());
    if let Some(g) = g.filter(|_| takes(&x, &conv.weight.val(), bias.as_ref()))
        && let Some(out) = fused(&g, x.clone(), conv.weight.val(), bias)
    {
        return from_flex(out);
    }
    conv.forward(x)
}

/// `conv.forward(x)` for a 1-d convolution and `x` `[B, C_in, L]`: the kernel as a 2-d
/// convolution of height 1 where [`Geometry::of_1d`] accepts it (as for [`conv2d`]), Burn's
/// convolution otherwise.
pub fn conv1d(conv: &Conv1d, x: Tensor<3>) -> Tensor<3> {
    let g = Geometry::of_1d(conv, x.dims());
    let bias = conv.bias.as_ref().map(|b| b.val());
    if let Some(g) = g.filter(|_| takes(&x, &conv.weight.val(), bias.as_ref()))
        && let Some(out) = fused(&g, x.clone(), conv.weight.val(), bias)
    {
        return from_flex(out.reshape(vec![g.b, g.c_out, g.ow()].into()));
    }
    conv.forward(x)
}

/// Whether [`conv2d`] takes the kernel path for `conv` on `x` (never when `conv` is listed in
/// `SONIC_KERNELS_OFF`, see [`crate::cpu::enabled`]).
pub fn fits(conv: &Conv2d, x: &Tensor<4>) -> bool {
    let bias = conv.bias.as_ref().map(|b| b.val());
    Geometry::of(conv, x.dims()).is_some() && takes(x, &conv.weight.val(), bias.as_ref())
}

/// Whether the kernel runs on these tensors: `conv` enabled, f32 or bf16 on the plain flex
/// device, the weight in the input's dtype, a bias of one value per output channel.
fn takes<const D: usize>(x: &Tensor<D>, weight: &Tensor<D>, bias: Option<&Tensor<1>>) -> bool {
    let dtype = x.dtype();
    crate::cpu::enabled("conv")
        && matches!(dtype, DType::F32 | DType::BF16)
        && on_plain_flex(&x.device())
        && weight.dtype() == dtype
        && on_plain_flex(&weight.device())
        && bias.is_none_or(|b| b.dims() == [weight.dims()[0]])
}

/// Whether [`crate::winograd`] computes `g` instead of the im2col products: a 3x3 stride-1
/// convolution ([`crate::winograd::takes`]) with at least [`WINOGRAD_MIN_CHANNELS`] input and
/// output channels and [`WINOGRAD_MIN_TILES`] 2x2 output tiles over the batch, unless
/// `winograd` is listed in `SONIC_KERNELS_OFF`.
pub fn winograd_pays(g: &Geometry) -> bool {
    crate::winograd::takes(g)
        && g.c_in.min(g.c_out) >= WINOGRAD_MIN_CHANNELS
        && g.b * g.oh().div_ceil(2) * g.ow().div_ceil(2) >= WINOGRAD_MIN_TILES
        && crate::cpu::enabled("winograd")
}

/// Fewest input and output channels for the Winograd path (below it the 16 products are too
/// thin to run at the packed products' speed).
pub const WINOGRAD_MIN_CHANNELS: usize = 64;

/// Fewest 2x2 output tiles (over the whole batch) for the Winograd path. The filter transform
/// (16 x C_out x C_in values, per call) is paid once per call: measured on the AVX-512 machine
/// (docs/PERFORMANCE.md, entry 15), 2 x 320 ch at 32 x 32 (512 tiles) gains 1.45x, 2 x 1280 ch
/// at 16 x 16 (128 tiles) loses 1.5x.
pub const WINOGRAD_MIN_TILES: usize = 512;

/// Contiguous `f32` values of a flex tensor: borrowed for contiguous f32, else copied (bf16
/// widened).
pub(crate) enum F32Values {
    Borrowed(FlexTensor),
    Owned(Vec<f32>),
}

impl F32Values {
    pub(crate) fn new(t: FlexTensor) -> Self {
        let t = contiguous(t);
        if t.dtype() == DType::F32 {
            return F32Values::Borrowed(t);
        }
        let n = t.layout().shape().iter().product::<usize>();
        let start = t.layout().start_offset();
        F32Values::Owned(crate::convert::to_f32_vec(
            &t.storage::<bf16>()[start..start + n],
        ))
    }

    pub(crate) fn values(&self) -> &[f32] {
        match self {
            F32Values::Borrowed(t) => {
                let start = t.layout().start_offset();
                let n = t.layout().shape().iter().product::<usize>();
                &t.storage::<f32>()[start..start + n]
            }
            F32Values::Owned(v) => v,
        }
    }
}

/// The convolution `g` of `x` by `weight` (+ `bias`) as a flex tensor `[b, c_out, oh, ow]` in
/// the input's dtype; `None` if a tensor is not on plain flex.
fn fused<const D: usize>(
    g: &Geometry,
    x: Tensor<D>,
    weight: Tensor<D>,
    bias: Option<Tensor<1>>,
) -> Option<FlexTensor> {
    let dtype = x.dtype();
    let (xf, wf) = (into_flex(x)?, into_flex(weight)?);
    let bias: Option<Vec<f32>> = bias.and_then(host_f32);
    if dtype == DType::BF16 && crate::gemm_bf16::available() {
        // bf16 products, read in place (no widening). Also for the 3x3 convolutions Winograd
        // would take in f32: at twice the f32 rate the direct products are as fast as f32
        // Winograd's 2.25x fewer multiplications, without widening, and round no more
        // (docs/PERFORMANCE.md, entry 21: unet-32 bf16 1.74 s with f32 Winograd, 1.45 s without).
        let (xc, wc) = (contiguous(xf), contiguous(wf));
        let out = conv2d_bf16(g, bf16_values(&xc), bf16_values(&wc), bias.as_deref());
        return Some(output(out, vec![g.b, g.c_out, g.oh(), g.ow()], dtype));
    }
    let (xv, wv) = (F32Values::new(xf), F32Values::new(wf));
    let out = if winograd_pays(g) {
        crate::winograd::conv3x3_f32(g, xv.values(), wv.values(), bias.as_deref())
    } else {
        conv2d_f32(g, xv.values(), wv.values(), bias.as_deref())
    };
    Some(output(out, vec![g.b, g.c_out, g.oh(), g.ow()], dtype))
}

/// A flex tensor of `shape` holding `values` in `dtype`: as they are for f32, rounded to bf16
/// (in parallel) for bf16.
pub(crate) fn output(values: Vec<f32>, shape: Vec<usize>, dtype: DType) -> FlexTensor {
    if dtype == DType::BF16 {
        round_to_bf16(values, shape)
    } else {
        FlexTensor::from_data(TensorData::new(values, shape))
    }
}

/// `t` itself if contiguous, else a contiguous copy.
pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a contiguous bf16 flex tensor, in place.
pub(crate) fn bf16_values(t: &FlexTensor) -> &[bf16] {
    let start = t.layout().start_offset();
    let n = t.layout().shape().iter().product::<usize>();
    &t.storage::<bf16>()[start..start + n]
}

/// A bf16 flex tensor of `shape` holding `values` rounded (in parallel).
pub(crate) fn round_to_bf16(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    let out: Vec<bf16> = crate::convert::to_bf16_vec(&values);
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// The convolution on contiguous `f32` values: `x` `[b, c_in, h, w]`, `weight`
/// `[c_out, c_in, kh, kw]`, optional `bias` `[c_out]`; returns `[b, c_out, oh, ow]`.
///
/// # Panics
/// If the slices are shorter than `g` implies (the tensor entry point guarantees they are not).
pub fn conv2d_f32(g: &Geometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let k = g.k();
    assert!(
        weight.len() >= g.c_out * k,
        "weight shorter than its geometry"
    );
    conv2d_bands(
        g,
        x,
        bias,
        |dst, plane, rhs, rhs_rs, n, accumulate, parallel| {
            // SAFETY: `dst` is `c_out x n` with row stride `plane` (see `conv2d_bands`); `weight`
            // is `c_out x k` row-major; `rhs` is `k x n` with row stride `rhs_rs` and unit column
            // stride, and `(k - 1) * rhs_rs + n <= rhs.len()` (checked by the geometry: the
            // scratch is exactly `k x n`; the pointwise input holds `k` planes of `h * w >= r0 *
            // ow + n` values).
            unsafe {
                gemm::gemm(
                    g.c_out,
                    n,
                    k,
                    dst,
                    1,
                    plane as isize,
                    accumulate,
                    weight.as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    1,
                    rhs_rs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    if parallel {
                        gemm::Parallelism::Rayon(rayon::current_num_threads())
                    } else {
                        gemm::Parallelism::None
                    },
                );
            }
        },
    )
}

/// The convolution on contiguous `bf16` values with the AVX512-BF16 products of
/// [`crate::gemm_bf16`] (f32 accumulation and result), as [`conv2d_f32`].
///
/// # Panics
/// If the slices are shorter than `g` implies, or [`crate::gemm_bf16::available`] is false.
pub fn conv2d_bf16(g: &Geometry, x: &[bf16], weight: &[bf16], bias: Option<&[f32]>) -> Vec<f32> {
    let k = g.k();
    assert!(
        weight.len() >= g.c_out * k,
        "weight shorter than its geometry"
    );
    assert!(crate::gemm_bf16::available(), "the CPU lacks AVX512-BF16");
    conv2d_bands(
        g,
        x,
        bias,
        |dst, plane, rhs, rhs_rs, n, accumulate, parallel| {
            use crate::gemm_bf16::{Mat, gemm};
            // SAFETY: as in `conv2d_f32`; the CPU was checked above.
            unsafe {
                gemm(
                    [g.c_out, n, k],
                    Mat {
                        ptr: weight.as_ptr(),
                        rs: k,
                    },
                    Mat {
                        ptr: rhs.as_ptr(),
                        rs: rhs_rs,
                    },
                    Mat {
                        ptr: dst as *const f32,
                        rs: plane,
                    },
                    accumulate,
                    parallel,
                )
            }
        },
    )
}

/// The banded convolution around a product: for each (image, band of output rows) the input
/// windows are gathered (or, pointwise, the input used as is) and `product(dst, plane, rhs,
/// rhs_rs, n, accumulate, parallel)` writes `weight x rhs` (`c_out x n`, row stride `plane`)
/// to `dst`, added to the bias already there when `accumulate`.
fn conv2d_bands<T: Copy + Default + Send + Sync>(
    g: &Geometry,
    x: &[T],
    bias: Option<&[f32]>,
    product: impl Fn(*mut f32, usize, &[T], usize, usize, bool, bool) + Sync,
) -> Vec<f32> {
    let (oh, ow, k) = (g.oh(), g.ow(), g.k());
    assert!(
        x.len() >= g.b * g.c_in * g.h * g.w,
        "input shorter than its geometry"
    );
    assert!(
        bias.is_none_or(|b| b.len() >= g.c_out),
        "bias shorter than c_out"
    );
    let plane = oh * ow;
    // Every value is written by exactly one band (the bias, then the product added, or the
    // product alone): the buffer is not zeroed first.
    let mut out: Vec<f32> = Vec::with_capacity(g.b * g.c_out * plane);
    let rows = g.band_rows();
    let bands = oh.div_ceil(rows);
    let tasks = g.b * bands;
    // Too few bands to keep every thread busy: split each product over the threads instead.
    let parallel = tasks < rayon::current_num_threads();
    let out_ptr = OutPtr(out.as_mut_ptr());
    let run = |scratch: &mut Vec<T>, task: usize| {
        let (bi, band) = (task / bands, task % bands);
        let r0 = band * rows;
        let n_rows = rows.min(oh - r0);
        let n = n_rows * ow;
        let image = &x[bi * g.c_in * g.h * g.w..(bi + 1) * g.c_in * g.h * g.w];
        let (rhs, rhs_rs): (&[T], usize) = if g.pointwise() {
            (&image[r0 * ow..], g.h * g.w)
        } else {
            scratch.resize(k * n, T::default());
            gather(g, image, r0, n_rows, &mut scratch[..k * n]);
            (&scratch[..k * n], n)
        };
        let dst_off = bi * g.c_out * plane + r0 * ow;
        // SAFETY: this task alone writes `n` values from `dst_off + co * plane` for every
        // output channel `co` (image `bi`, rows `r0 .. r0 + n_rows`), all inside `out`.
        let dst = unsafe { out_ptr.get().add(dst_off) };
        if let Some(bias) = bias {
            for (co, &bv) in bias.iter().enumerate().take(g.c_out) {
                // SAFETY: as above.
                let run = unsafe { std::slice::from_raw_parts_mut(dst.add(co * plane), n) };
                run.fill(bv);
            }
        }
        product(dst, plane, rhs, rhs_rs, n, bias.is_some(), parallel);
    };
    run_tasks(tasks, run);
    // SAFETY: the bands cover every output row of every image, and each band wrote all
    // `c_out x n` of its values (see above).
    unsafe { out.set_len(g.b * g.c_out * plane) };
    out
}

/// How the products inside one of `tasks` bands use the threads: split over all of them when
/// there are fewer bands than threads ([`run_tasks`] then runs the bands one after the other),
/// else not at all (the bands run in parallel).
pub(crate) fn inner_parallelism(tasks: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if tasks < threads {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// Runs `run(scratch, task)` for every task in `0..tasks`: in parallel on rayon with one
/// scratch per thread when there are at least as many tasks as threads, else one after the
/// other with one scratch (see [`inner_parallelism`]).
pub(crate) fn run_tasks<S: Default + Send>(tasks: usize, run: impl Fn(&mut S, usize) + Sync) {
    if tasks < rayon::current_num_threads() {
        let mut scratch = S::default();
        for task in 0..tasks {
            run(&mut scratch, task);
        }
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each_init(S::default, |scratch, task| run(scratch, task));
    }
}

/// Gathers the input windows of output rows `r0 .. r0 + n_rows` of one image `[c_in, h, w]`
/// into `cols` `[c_in * kh * kw, n_rows * ow]` (zeros where a window reaches into the padding).
fn gather<T: Copy + Default>(g: &Geometry, image: &[T], r0: usize, n_rows: usize, cols: &mut [T]) {
    let ow = g.ow();
    let n = n_rows * ow;
    let [top, left, _, _] = g.pad;
    // Output columns whose input column `ox * sw + kx - left` lies inside the image.
    let valid = |kx: usize| -> (usize, usize) {
        let lo = left.saturating_sub(kx).div_ceil(g.sw);
        let hi = if g.w + left > kx {
            ((g.w + left - kx - 1) / g.sw + 1).min(ow)
        } else {
            0
        };
        (lo.min(hi), hi)
    };
    for ci in 0..g.c_in {
        let chan = &image[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = (ci * g.kh + ky) * g.kw + kx;
                let dst_row = &mut cols[row * n..(row + 1) * n];
                let (lo, hi) = valid(kx);
                for r in 0..n_rows {
                    let dst = &mut dst_row[r * ow..(r + 1) * ow];
                    let iy = (r0 + r) * g.sh + ky;
                    if iy < top || iy - top >= g.h || lo >= hi {
                        dst.fill(T::default());
                        continue;
                    }
                    let src = &chan[(iy - top) * g.w..(iy - top + 1) * g.w];
                    dst[..lo].fill(T::default());
                    dst[hi..].fill(T::default());
                    let ix0 = lo * g.sw + kx - left;
                    if g.sw == 1 {
                        dst[lo..hi].copy_from_slice(&src[ix0..ix0 + (hi - lo)]);
                    } else {
                        for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = src[ix0 + j * g.sw];
                        }
                    }
                }
            }
        }
    }
}
