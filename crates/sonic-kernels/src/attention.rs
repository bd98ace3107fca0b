//! Fused (flash-style) scaled dot-product attention.
//!
//! For each batch, head and block of [`BLOCK_Q`] queries, the keys are walked in blocks: the
//! scores `Q_blk K_blk^T` and the update `P V_blk` are packed matrix products (the `gemm`
//! crate, single-threaded inside a block, its AVX-512 / AVX2 micro-kernels chosen at run
//! time), and the softmax is online (running maximum and sum per query, the partial output
//! rescaled when the maximum grows) with the vectorised exponential of [`crate::vecmath`]. The
//! blocks run in parallel on rayon. Scores never leave a `BLOCK_Q x block_k` scratch buffer.
//!
//! Inputs are read in place through their strides (the `[B, N, heads, d]` memory that
//! diffusers' head split produces is used as is), and the output is written in
//! `[B, N, heads, d]` order and returned as a `[B, heads, N, d]` view of it, so merging the
//! heads back afterwards costs nothing. `bf16` tensors run on the AVX512-BF16 products of
//! [`crate::gemm_bf16`] where the CPU has them (keys and values packed once per head);
//! elsewhere they are widened to `f32` once, computed in `f32` and rounded once at the end.

use crate::cpu::Isa;
use crate::flex::{OutPtr, all_flex_float, from_flex, from_vec_permuted, into_flex};
use crate::vecmath;
use burn::backend::flex::FlexTensor;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

/// Queries per block (rows of the score tile).
pub const BLOCK_Q: usize = 64;

/// Keys per block for head width `d`: about 64 KiB of keys per block, 64 to 512 keys.
pub fn block_k(d: usize) -> usize {
    ((16 * 1024) / d.max(1)).clamp(64, 512) / 16 * 16
}

/// `softmax(q k^T / sqrt(d)) v` for `q` `[B, H, N, d]`, `k` `[B, H, M, d]`, `v` `[B, H, M, dv]`:
/// the fused kernel on the plain `flex` device (f32 or bf16), Burn's `attention` elsewhere or
/// for shapes it does not take.
pub fn scaled_dot_product(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    if fits(&q, &k, &v) {
        fused(Isa::selected(), q, k, v)
    } else {
        scaled_dot_product_burn(q, k, v)
    }
}

/// Burn's own attention (no mask, `1 / sqrt(d)` scale): the fallback, and the reference the
/// kernel is tested against.
pub fn scaled_dot_product_burn(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    attention(
        q,
        k,
        v,
        None,
        None,
        AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        },
    )
}

/// Whether the fused kernel takes these tensors: all on plain `flex`, same float dtype
/// (f32 / bf16), consistent non-empty shapes, `attention` not in `SONIC_KERNELS_OFF`.
pub fn fits(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> bool {
    let [b, h, n, d] = q.dims();
    let [kb, kh, m, kd] = k.dims();
    let [vb, vh, vm, dv] = v.dims();
    let shapes = b == kb && b == vb && h == kh && h == vh && m == vm && d == kd;
    let nonempty = b * h * n * m * d * dv > 0;
    shapes && nonempty && all_flex_float(&[q, k, v]) && crate::cpu::enabled("attention")
}

/// A strided `[B, H, rows, d]` operand with a unit stride along `d`.
struct Operand<'a, T> {
    data: &'a [T],
    offset: usize,
    strides: [usize; 3],
}

impl<T> Operand<'_, T> {
    fn ptr(&self, b: usize, h: usize, row: usize) -> *const T {
        let i = self.offset + b * self.strides[0] + h * self.strides[1] + row * self.strides[2];
        self.data[i..].as_ptr()
    }
}

/// `f32` storage of a flex tensor readable through non-negative strides with a unit last
/// stride: borrowed as is for f32 in such a layout, else copied (bf16 widened) contiguously.
enum F32Source {
    Borrowed(FlexTensor),
    Owned(Vec<f32>, [usize; 4]),
}

impl F32Source {
    fn new(t: FlexTensor) -> Self {
        let layout = t.layout();
        if t.dtype() == DType::F32 && usable(&t) {
            return F32Source::Borrowed(t);
        }
        let dims: [usize; 4] = std::array::from_fn(|i| layout.shape()[i]);
        let c = t.to_contiguous();
        let values: Vec<f32> = match c.dtype() {
            DType::BF16 => crate::convert::to_f32_vec(
                &c.storage::<bf16>()[c.layout().start_offset()..][..dims.iter().product::<usize>()],
            ),
            _ => c.storage::<f32>()[c.layout().start_offset()..][..dims.iter().product::<usize>()]
                .to_vec(),
        };
        F32Source::Owned(values, dims)
    }

    fn operand(&self) -> Operand<'_, f32> {
        match self {
            F32Source::Borrowed(t) => operand_of(t),
            F32Source::Owned(v, d) => Operand {
                data: v,
                offset: 0,
                strides: [d[1] * d[2] * d[3], d[2] * d[3], d[3]],
            },
        }
    }
}

/// Whether a flex tensor's layout reads as an [`Operand`]: non-negative strides, unit last.
fn usable(t: &FlexTensor) -> bool {
    let strides = t.layout().strides();
    strides.iter().all(|&s| s >= 0) && strides.last() == Some(&1)
}

/// The [`Operand`] view of a flex tensor that [`usable`] accepted.
fn operand_of<T: burn::tensor::Element + bytemuck::Pod>(t: &FlexTensor) -> Operand<'_, T> {
    let l = t.layout();
    let s = l.strides();
    Operand {
        data: t.storage::<T>(),
        offset: l.start_offset(),
        strides: [s[0] as usize, s[1] as usize, s[2] as usize],
    }
}

/// The fused kernel at instruction-set level `isa` (lowered to what the CPU has), or `None`
/// where [`fits`] refuses the tensors. For tests and benches; [`scaled_dot_product`] is the
/// entry point.
pub fn scaled_dot_product_fused(
    isa: Isa,
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
) -> Option<Tensor<4>> {
    fits(&q, &k, &v).then(|| fused(isa, q, k, v))
}

fn fused(isa: Isa, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [b, h, n, d] = q.dims();
    let m = k.dims()[2];
    let dv = v.dims()[3];
    let dtype = q.dtype();
    let (Some(qf), Some(kf), Some(vf)) = (into_flex(q), into_flex(k), into_flex(v)) else {
        unreachable!("`fits` checked that all three tensors are plain flex tensors")
    };
    let mut out = vec![0f32; b * n * h * dv];
    if dtype == DType::BF16 && crate::gemm_bf16::available() {
        // bf16 products on the bf16 values in place (strided views copied contiguously).
        let view = |t: FlexTensor| if usable(&t) { t } else { t.to_contiguous() };
        let (qf, kf, vf) = (view(qf), view(kf), view(vf));
        attention_bf16(
            isa,
            &operand_of(&qf),
            &operand_of(&kf),
            &operand_of(&vf),
            [b, h, n, m, d, dv],
            &mut out,
        );
        let out: Vec<bf16> = crate::convert::to_bf16_vec(&out);
        return from_flex(from_vec_permuted(out, &[b, h, n, dv], &[0, 2, 1, 3]));
    }
    let (qs, ks, vs) = (F32Source::new(qf), F32Source::new(kf), F32Source::new(vf));
    attention_f32(
        isa,
        &qs.operand(),
        &ks.operand(),
        &vs.operand(),
        [b, h, n, m, d, dv],
        &mut out,
    );
    let shape = [b, h, n, dv];
    let perm = [0, 2, 1, 3];
    let t = if dtype == DType::BF16 {
        let out: Vec<bf16> = crate::convert::to_bf16_vec(&out);
        from_vec_permuted(out, &shape, &perm)
    } else {
        from_vec_permuted(out, &shape, &perm)
    };
    from_flex(t)
}

/// One task's buffers: a block of scores, the running output and the softmax state per query.
struct Scratch {
    scores: Vec<f32>,
    acc: Vec<f32>,
    row_max: Vec<f32>,
    row_sum: Vec<f32>,
}

impl Scratch {
    /// Buffers for [`BLOCK_Q`] queries, key blocks of `bk` and output width `dv`.
    fn new(bk: usize, dv: usize) -> Self {
        Scratch {
            scores: vec![0.0; BLOCK_Q * bk],
            acc: vec![0.0; BLOCK_Q * dv],
            row_max: vec![0.0; BLOCK_Q],
            row_sum: vec![0.0; BLOCK_Q],
        }
    }

    /// Clears the running output and softmax state of the first `rows` queries.
    fn start(&mut self, rows: usize, dv: usize) {
        self.acc[..rows * dv].fill(0.0);
        self.row_max[..rows].fill(f32::NEG_INFINITY);
        self.row_sum[..rows].fill(0.0);
    }
}

/// The kernel on `f32` operands; `out` is `[B, N, H, dv]` row-major.
fn attention_f32(
    isa: Isa,
    q: &Operand<f32>,
    k: &Operand<f32>,
    v: &Operand<f32>,
    [b, h, n, m, d, dv]: [usize; 6],
    out: &mut [f32],
) {
    assert_eq!(out.len(), b * n * h * dv);
    let bk = block_k(d.max(dv));
    let q_blocks = n.div_ceil(BLOCK_Q);
    let scale = 1.0 / (d as f32).sqrt();
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..b * h * q_blocks).into_par_iter().for_each_init(
        || Scratch::new(bk, dv),
        |s, task| {
            let (bh, qb) = (task / q_blocks, task % q_blocks);
            let (bi, hi) = (bh / h, bh % h);
            let r0 = qb * BLOCK_Q;
            let rows = BLOCK_Q.min(n - r0);
            s.start(rows, dv);
            let acc = &mut s.acc[..rows * dv];
            let q_ptr = q.ptr(bi, hi, r0);
            let mut c0 = 0;
            while c0 < m {
                let cols = bk.min(m - c0);
                let scores = &mut s.scores[..rows * cols];
                // SAFETY: the operands cover `rows x d` queries from `q_ptr` (row stride
                // `q.strides[2]`), `cols x d` keys and `cols x dv` values from `c0`; `scores` is
                // `rows x cols` and `acc` `rows x dv`, both row-major.
                unsafe {
                    gemm::gemm(
                        rows,
                        cols,
                        d,
                        scores.as_mut_ptr(),
                        1,
                        cols as isize,
                        false,
                        q_ptr,
                        1,
                        q.strides[2] as isize,
                        k.ptr(bi, hi, c0),
                        k.strides[2] as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                online_softmax(
                    isa,
                    scores,
                    cols,
                    scale,
                    acc,
                    dv,
                    &mut s.row_max,
                    &mut s.row_sum,
                );
                // SAFETY: as above.
                unsafe {
                    gemm::gemm(
                        rows,
                        dv,
                        cols,
                        acc.as_mut_ptr(),
                        1,
                        dv as isize,
                        true,
                        scores.as_ptr(),
                        1,
                        cols as isize,
                        v.ptr(bi, hi, c0),
                        1,
                        v.strides[2] as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                c0 += cols;
            }
            // SAFETY: rows `(bi, r0 .. r0 + rows, hi)` of `out` are written by this task only.
            unsafe { write_rows(out_ptr, acc, &s.row_sum, [bi, hi, r0], [n, h, dv]) };
        },
    );
}

/// One block of scores `rows x cols` (row-major, in `scores`) into the running softmax: each
/// row's maximum and sum are updated, the row turned into `exp((s - max) * scale)` in place,
/// and the row's partial output in `acc` (`rows x dv`) rescaled when its maximum grew.
#[allow(clippy::too_many_arguments)]
fn online_softmax(
    isa: Isa,
    scores: &mut [f32],
    cols: usize,
    scale: f32,
    acc: &mut [f32],
    dv: usize,
    row_max: &mut [f32],
    row_sum: &mut [f32],
) {
    for (r, row) in scores.chunks_exact_mut(cols).enumerate() {
        let old = row_max[r];
        let new = old.max(vecmath::max(isa, row));
        let sum = vecmath::exp_shift_sum(isa, row, new, scale);
        if old != f32::NEG_INFINITY && old != new {
            let c = vecmath::exp((old - new) * scale);
            row_sum[r] *= c;
            acc[r * dv..(r + 1) * dv].iter_mut().for_each(|x| *x *= c);
        }
        row_sum[r] += sum;
        row_max[r] = new;
    }
}

/// Writes the finished rows of one query block, `acc / row_sum`, to `out` `[B, N, H, dv]`:
/// rows `r0 ..` of image `bi`, head `hi`.
///
/// # Safety
/// `out` must hold `[B, n, h, dv]` values and no other task may write these rows.
unsafe fn write_rows(
    out: OutPtr,
    acc: &[f32],
    row_sum: &[f32],
    [bi, hi, r0]: [usize; 3],
    [n, h, dv]: [usize; 3],
) {
    for (r, a) in acc.chunks_exact(dv).enumerate() {
        let inv = 1.0 / row_sum[r];
        let o = ((bi * n + r0 + r) * h + hi) * dv;
        // SAFETY: the caller's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(o), dv) };
        for (y, &a) in dst.iter_mut().zip(a) {
            *y = a * inv;
        }
    }
}

/// The kernel on bf16 operands with the AVX512-BF16 products of [`crate::gemm_bf16`]: the keys
/// (transposed) and values of each head are packed once for all its query blocks; scores and
/// the running output stay in f32, the probabilities are rounded to bf16 for `P V` (as
/// PyTorch's bf16 flash attention does). `out` is `[B, N, H, dv]` row-major.
fn attention_bf16(
    isa: Isa,
    q: &Operand<bf16>,
    k: &Operand<bf16>,
    v: &Operand<bf16>,
    [b, h, n, m, d, dv]: [usize; 6],
    out: &mut [f32],
) {
    use crate::gemm_bf16::{MR, NR, pack_b, pack_bt, tile};
    assert_eq!(out.len(), b * n * h * dv);
    // Key blocks in whole panels of NR keys.
    let bk = (block_k(d.max(dv)) / NR * NR).max(NR);
    let (d_pairs, m_pairs) = (d.div_ceil(2), m.div_ceil(2));
    let k_size = m.div_ceil(NR) * d_pairs * 2 * NR;
    let v_size = dv.div_ceil(NR) * m_pairs * 2 * NR;
    let mut packed_k = vec![0u16; b * h * k_size];
    let mut packed_v = vec![0u16; b * h * v_size];
    packed_k
        .par_chunks_mut(k_size)
        .zip(packed_v.par_chunks_mut(v_size))
        .enumerate()
        .for_each(|(bh, (pk, pv))| {
            let (bi, hi) = (bh / h, bh % h);
            // SAFETY: head `(bi, hi)` holds `m` keys of `d` and `m` values of `dv` values at
            // the operands' row strides; the buffers have the packed sizes.
            unsafe {
                pack_bt(k.ptr(bi, hi, 0), k.strides[2], m, d, pk);
                pack_b(v.ptr(bi, hi, 0), v.strides[2], m, dv, m_pairs, pv);
            }
        });
    let q_blocks = n.div_ceil(BLOCK_Q);
    let scale = 1.0 / (d as f32).sqrt();
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..b * h * q_blocks).into_par_iter().for_each_init(
        || (Scratch::new(bk, dv), vec![bf16::ZERO; BLOCK_Q * bk]),
        |(s, probs), task| {
            let (bh, qb) = (task / q_blocks, task % q_blocks);
            let (bi, hi) = (bh / h, bh % h);
            let (pk, pv) = (&packed_k[bh * k_size..], &packed_v[bh * v_size..]);
            let r0 = qb * BLOCK_Q;
            let rows = BLOCK_Q.min(n - r0);
            s.start(rows, dv);
            let acc = &mut s.acc[..rows * dv];
            let mut c0 = 0;
            while c0 < m {
                let cols = bk.min(m - c0);
                let scores = &mut s.scores[..rows * cols];
                for i0 in (0..rows).step_by(MR) {
                    let r = MR.min(rows - i0);
                    for p in 0..cols.div_ceil(NR) {
                        let panel = (c0 / NR + p) * d_pairs * 2 * NR;
                        // SAFETY: queries `r0 + i0 ..` hold `d` values at their row stride;
                        // the panel holds `d_pairs` packed pairs; the score tile `r x
                        // min(NR, cols - p NR)` lies inside `scores` (row stride `cols`).
                        unsafe {
                            tile(
                                r,
                                d_pairs,
                                d % 2 == 1,
                                q.ptr(bi, hi, r0 + i0) as *const u16,
                                q.strides[2],
                                pk[panel..].as_ptr(),
                                scores.as_mut_ptr().add(i0 * cols + p * NR),
                                cols,
                                NR.min(cols - p * NR),
                                false,
                            )
                        };
                    }
                }
                online_softmax(
                    isa,
                    scores,
                    cols,
                    scale,
                    acc,
                    dv,
                    &mut s.row_max,
                    &mut s.row_sum,
                );
                let probs = &mut probs[..rows * cols];
                crate::convert::f32_to_bf16(scores, probs);
                let pairs = cols.div_ceil(2);
                for i0 in (0..rows).step_by(MR) {
                    let r = MR.min(rows - i0);
                    for p in 0..dv.div_ceil(NR) {
                        let panel = (p * m_pairs + c0 / 2) * 2 * NR;
                        // SAFETY: the probabilities are `rows x cols` row-major; the value
                        // panel holds pairs `c0 / 2 ..` of keys (`c0` is even); the output
                        // tile `r x min(NR, dv - p NR)` lies inside `acc` (row stride `dv`).
                        unsafe {
                            tile(
                                r,
                                pairs,
                                cols % 2 == 1,
                                probs.as_ptr().add(i0 * cols) as *const u16,
                                cols,
                                pv[panel..].as_ptr(),
                                acc.as_mut_ptr().add(i0 * dv + p * NR),
                                dv,
                                NR.min(dv - p * NR),
                                true,
                            )
                        };
                    }
                }
                c0 += cols;
            }
            // SAFETY: rows `(bi, r0 .. r0 + rows, hi)` of `out` are written by this task only.
            unsafe { write_rows(out_ptr, acc, &s.row_sum, [bi, hi, r0], [n, h, dv]) };
        },
    );
}
