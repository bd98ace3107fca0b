//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015).
//!
//! Each 2x2 block of output pixels is computed from the 4x4 block of input pixels around it:
//! the input block `d` and the 3x3 filter `g` are moved into a 4x4 "transform" domain
//! (`V = Bᵀ d B`, `U = G g Gᵀ`), where the convolution is an element-wise product summed over
//! the input channels, i.e. 16 independent matrix products `M[ξ] = U[ξ] V[ξ]`
//! (`[C_out x C_in] x [C_in x tiles]`), and the result is moved back (`Y = Aᵀ M A`). That is 16
//! multiplications per 4 outputs and input channel instead of 36: 2.25x fewer, paid for with
//! the three transforms, which are additions and halvings only (so the rounding stays close to
//! the direct sum's; the tests compare with Burn's convolution).
//!
//! The work is cut as [`crate::conv`] cuts it: bands of whole rows of output tiles per image,
//! in parallel on rayon, each band with its own scratch (`16 x C_in x tiles` transformed
//! inputs, `16 x C_out x tiles` products), its output written in the final `[B, C_out, OH, OW]`
//! layout. Any padding of at most 2 on each side is taken (outputs past the padded input are
//! never computed); the filter transform is done per call (`16 x C_out x C_in` values, small
//! next to the products at the sizes where this path is chosen).

use crate::conv::{Geometry, inner_parallelism, run_tasks};
use crate::flex::OutPtr;
use rayon::prelude::*;

/// Target number of transformed input values (`16 x C_in x tiles`) per band.
pub const BAND_VALUES: usize = 1 << 20;

/// Whether `g` is a convolution this module computes: 3x3, stride 1, padding at most 2 on
/// each side.
pub fn takes(g: &Geometry) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.pad.iter().all(|&p| p <= 2)
}

/// The filter transform `U = G g Gᵀ` of `weight` `[c_out, c_in, 3, 3]`, laid out as 16
/// row-major `[c_out x c_in]` matrices, `ξ = 4 i + j` for the transform's row `i` and column
/// `j`.
fn filter_transform(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let per = c_out * c_in;
    let mut u = vec![0f32; 16 * per];
    // `G a` for a 3-vector `a`: `[a0, (a0 + a1 + a2) / 2, (a0 - a1 + a2) / 2, a2]`.
    let g = |a: [f32; 3]| {
        [
            a[0],
            0.5 * (a[0] + a[1] + a[2]),
            0.5 * (a[0] - a[1] + a[2]),
            a[2],
        ]
    };
    let out = OutPtr(u.as_mut_ptr());
    (0..per).into_par_iter().for_each(|oc| {
        let f = &weight[oc * 9..oc * 9 + 9];
        // Columns of `G g` (4 x 3), then each of its rows through `G` again.
        let cols: [[f32; 4]; 3] = std::array::from_fn(|c| g([f[c], f[3 + c], f[6 + c]]));
        let rows: [[f32; 3]; 4] = std::array::from_fn(|i| [cols[0][i], cols[1][i], cols[2][i]]);
        for (i, gg) in rows.into_iter().enumerate() {
            for (j, v) in g(gg).into_iter().enumerate() {
                // SAFETY: `(4 i + j) * per + oc < 16 * per`, and only this task writes `oc`.
                unsafe { *out.get().add((4 * i + j) * per + oc) = v };
            }
        }
    });
    u
}

/// One band's working memory, kept across the bands a thread runs.
#[derive(Default)]
struct Scratch {
    /// Transformed inputs, 16 x `[c_in x tiles]`.
    v: Vec<f32>,
    /// Products, 16 x `[c_out x tiles]`.
    m: Vec<f32>,
    /// Four padded input rows and their column transforms.
    rows: Vec<f32>,
    /// The output transform's column sums (8 runs) and one output row.
    sums: Vec<f32>,
}

/// The convolution of `x` `[b, c_in, h, w]` by `weight` `[c_out, c_in, 3, 3]` with optional
/// `bias` `[c_out]`, for a geometry [`takes`] accepts; returns `[b, c_out, oh, ow]`.
///
/// # Panics
/// If [`takes`] refuses `g`, or the slices are shorter than `g` implies (the tensor entry point
/// guarantees neither).
pub fn conv3x3_f32(g: &Geometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert!(takes(g), "not a 3x3 stride-1 convolution with padding <= 2");
    assert!(
        x.len() >= g.b * g.c_in * g.h * g.w,
        "input shorter than its geometry"
    );
    assert!(
        weight.len() >= g.c_out * g.c_in * 9,
        "weight shorter than its geometry"
    );
    assert!(
        bias.is_none_or(|b| b.len() >= g.c_out),
        "bias shorter than c_out"
    );
    let (oh, ow) = (g.oh(), g.ow());
    let (c_in, c_out) = (g.c_in, g.c_out);
    let u = filter_transform(weight, c_out, c_in);
    let (ty_n, tx_n) = (oh.div_ceil(2), ow.div_ceil(2));
    let band_rows = (BAND_VALUES / (16 * c_in * tx_n).max(1)).clamp(1, ty_n);
    let bands = ty_n.div_ceil(band_rows);
    let tasks = g.b * bands;
    let inner = inner_parallelism(tasks);
    let plane = oh * ow;
    let mut out = vec![0f32; g.b * c_out * plane];
    let out_ptr = OutPtr(out.as_mut_ptr());
    let [top, left, _, _] = g.pad;
    // Input rows padded to whole tiles: input columns `-left .. 2 tx_n + 2 - left`.
    let wp = 2 * tx_n + 2;
    let run = |scratch: &mut Scratch, task: usize| {
        let (bi, band) = (task / bands, task % bands);
        let ty0 = band * band_rows;
        let n_ty = band_rows.min(ty_n - ty0);
        let nt = n_ty * tx_n;
        let Scratch { v, m, rows, sums } = scratch;
        v.resize(16 * c_in * nt, 0.0);
        m.resize(16 * c_out * nt, 0.0);
        rows.resize(8 * wp, 0.0);
        sums.resize(8 * tx_n + 2 * tx_n, 0.0);
        let image = &x[bi * c_in * g.h * g.w..(bi + 1) * c_in * g.h * g.w];
        // Input transform V[ξ][ci][t], one row of tiles at a time: the four input rows of the
        // tile row (zeros outside the image), `Bᵀ` down the columns of all of them at once,
        // then `B` along each transformed row, tile by tile; each of the 16 results is a
        // contiguous run over the tile row.
        let vs = c_in * nt;
        let (input_rows, col_t) = rows.split_at_mut(4 * wp);
        for ci in 0..c_in {
            let chan = &image[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            for ty in 0..n_ty {
                let iy0 = (2 * (ty0 + ty)) as isize - top as isize;
                for (r, row) in input_rows.chunks_exact_mut(wp).enumerate() {
                    let iy = iy0 + r as isize;
                    row.fill(0.0);
                    if iy >= 0 && (iy as usize) < g.h {
                        let src = &chan[iy as usize * g.w..(iy as usize + 1) * g.w];
                        // Input column `ix` lands at `ix + left`.
                        let n = g.w.min(wp.saturating_sub(left));
                        row[left..left + n].copy_from_slice(&src[..n]);
                    }
                }
                let (r0, rest) = input_rows.split_at(wp);
                let (r1, rest) = rest.split_at(wp);
                let (r2, r3) = rest.split_at(wp);
                let (t0, rest) = col_t.split_at_mut(wp);
                let (t1, rest) = rest.split_at_mut(wp);
                let (t2, t3) = rest.split_at_mut(wp);
                for x in 0..wp {
                    t0[x] = r0[x] - r2[x];
                    t1[x] = r1[x] + r2[x];
                    t2[x] = r2[x] - r1[x];
                    t3[x] = r1[x] - r3[x];
                }
                for (i, t) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                    let base = 4 * i * vs + ci * nt + ty * tx_n;
                    let (o0, rest) = v[base..].split_at_mut(vs);
                    let (o1, rest) = rest.split_at_mut(vs);
                    let (o2, o3) = rest.split_at_mut(vs);
                    let (o0, o1, o2, o3) = (
                        &mut o0[..tx_n],
                        &mut o1[..tx_n],
                        &mut o2[..tx_n],
                        &mut o3[..tx_n],
                    );
                    for tx in 0..tx_n {
                        let a = &t[2 * tx..2 * tx + 4];
                        o0[tx] = a[0] - a[2];
                        o1[tx] = a[1] + a[2];
                        o2[tx] = a[2] - a[1];
                        o3[tx] = a[1] - a[3];
                    }
                }
            }
        }
        // The 16 products M[ξ] = U[ξ] V[ξ].
        let ms = c_out * nt;
        for xi in 0..16 {
            // SAFETY: `m[xi * ms ..]` is `c_out x nt` row-major, `u[xi * c_out * c_in ..]`
            // `c_out x c_in`, `v[xi * vs ..]` `c_in x nt`, all inside their buffers.
            unsafe {
                gemm::gemm(
                    c_out,
                    nt,
                    c_in,
                    m.as_mut_ptr().add(xi * ms),
                    1,
                    nt as isize,
                    false,
                    u.as_ptr().add(xi * c_out * c_in),
                    1,
                    c_in as isize,
                    v.as_ptr().add(xi * vs),
                    1,
                    nt as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    inner,
                );
            }
        }
        // Output transform Y = Aᵀ M A, one row of tiles at a time: `Aᵀ` down the columns (over
        // the 16 contiguous runs of the tile row), then `A` along each of the two rows, whose
        // even and odd output columns are interleaved into the output row, plus the bias.
        let (cols, out_row) = sums.split_at_mut(8 * tx_n);
        for co in 0..c_out {
            let b0 = bias.map_or(0.0, |b| b[co]);
            let base = bi * c_out * plane + co * plane;
            for ty in 0..n_ty {
                let run = |xi: usize| &m[xi * ms + co * nt + ty * tx_n..][..tx_n];
                // cols[r][j][tx]: row r of Aᵀ M, column j.
                for j in 0..4 {
                    let (m0, m1, m2, m3) = (run(j), run(4 + j), run(8 + j), run(12 + j));
                    let (s0, s1) = cols[2 * j * tx_n..(2 * j + 2) * tx_n].split_at_mut(tx_n);
                    for tx in 0..tx_n {
                        s0[tx] = m0[tx] + m1[tx] + m2[tx];
                        s1[tx] = m1[tx] - m2[tx] - m3[tx];
                    }
                }
                for r in 0..2 {
                    let y = 2 * (ty0 + ty) + r;
                    if y >= oh {
                        break;
                    }
                    let c = |j: usize| &cols[(2 * j + r) * tx_n..(2 * j + r + 1) * tx_n];
                    let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
                    for tx in 0..tx_n {
                        out_row[2 * tx] = c0[tx] + c1[tx] + c2[tx] + b0;
                        out_row[2 * tx + 1] = c1[tx] - c2[tx] - c3[tx] + b0;
                    }
                    // SAFETY: only this task writes rows `2 ty0 ..` of image `bi`; `y < oh`
                    // and the row holds `ow` values.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out_ptr.get().add(base + y * ow), ow)
                    };
                    dst.copy_from_slice(&out_row[..ow]);
                }
            }
        }
    };
    run_tasks(tasks, run);
    out
}
