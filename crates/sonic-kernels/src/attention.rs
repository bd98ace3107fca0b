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
//! heads back afterwards costs nothing. `bf16` tensors are widened to `f32` once, computed in
//! `f32` and rounded once at the end.

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
struct Operand<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [usize; 3],
}

impl Operand<'_> {
    fn ptr(&self, b: usize, h: usize, row: usize) -> *const f32 {
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
        let strides = layout.strides();
        let usable = strides.iter().all(|&s| s >= 0) && strides.last() == Some(&1);
        if t.dtype() == DType::F32 && usable {
            return F32Source::Borrowed(t);
        }
        let dims: [usize; 4] = std::array::from_fn(|i| layout.shape()[i]);
        let c = t.to_contiguous();
        let values: Vec<f32> = match c.dtype() {
            DType::BF16 => c.storage::<bf16>()[c.layout().start_offset()..]
                [..dims.iter().product::<usize>()]
                .par_iter()
                .map(|v| v.to_f32())
                .collect(),
            _ => c.storage::<f32>()[c.layout().start_offset()..][..dims.iter().product::<usize>()]
                .to_vec(),
        };
        F32Source::Owned(values, dims)
    }

    fn operand(&self) -> Operand<'_> {
        match self {
            F32Source::Borrowed(t) => {
                let l = t.layout();
                let s = l.strides();
                Operand {
                    data: t.storage::<f32>(),
                    offset: l.start_offset(),
                    strides: [s[0] as usize, s[1] as usize, s[2] as usize],
                }
            }
            F32Source::Owned(v, d) => Operand {
                data: v,
                offset: 0,
                strides: [d[1] * d[2] * d[3], d[2] * d[3], d[3]],
            },
        }
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
    let (qs, ks, vs) = (F32Source::new(qf), F32Source::new(kf), F32Source::new(vf));
    let mut out = vec![0f32; b * n * h * dv];
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
        let out: Vec<bf16> = out.par_iter().map(|&x| bf16::from_f32(x)).collect();
        from_vec_permuted(out, &shape, &perm)
    } else {
        from_vec_permuted(out, &shape, &perm)
    };
    from_flex(t)
}

struct Scratch {
    scores: Vec<f32>,
    acc: Vec<f32>,
    row_max: Vec<f32>,
    row_sum: Vec<f32>,
}

/// The kernel on `f32` operands; `out` is `[B, N, H, dv]` row-major.
fn attention_f32(
    isa: Isa,
    q: &Operand,
    k: &Operand,
    v: &Operand,
    [b, h, n, m, d, dv]: [usize; 6],
    out: &mut [f32],
) {
    assert_eq!(out.len(), b * n * h * dv);
    let bk = block_k(d.max(dv));
    let q_blocks = n.div_ceil(BLOCK_Q);
    let scale = 1.0 / (d as f32).sqrt();
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..b * h * q_blocks).into_par_iter().for_each_init(
        || Scratch {
            scores: vec![0.0; BLOCK_Q * bk],
            acc: vec![0.0; BLOCK_Q * dv],
            row_max: vec![0.0; BLOCK_Q],
            row_sum: vec![0.0; BLOCK_Q],
        },
        |s, task| {
            let (bh, qb) = (task / q_blocks, task % q_blocks);
            let (bi, hi) = (bh / h, bh % h);
            let r0 = qb * BLOCK_Q;
            let rows = BLOCK_Q.min(n - r0);
            let acc = &mut s.acc[..rows * dv];
            acc.fill(0.0);
            s.row_max[..rows].fill(f32::NEG_INFINITY);
            s.row_sum[..rows].fill(0.0);
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
                for r in 0..rows {
                    let row = &mut scores[r * cols..(r + 1) * cols];
                    let old = s.row_max[r];
                    let new = old.max(vecmath::max(isa, row));
                    let sum = vecmath::exp_shift_sum(isa, row, new, scale);
                    if old != f32::NEG_INFINITY && old != new {
                        let c = vecmath::exp((old - new) * scale);
                        s.row_sum[r] *= c;
                        acc[r * dv..(r + 1) * dv].iter_mut().for_each(|x| *x *= c);
                    }
                    s.row_sum[r] += sum;
                    s.row_max[r] = new;
                }
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
            for r in 0..rows {
                let inv = 1.0 / s.row_sum[r];
                let o = ((bi * n + r0 + r) * h + hi) * dv;
                // SAFETY: row `(bi, r0 + r, hi)` of `out` is written by this task only, and
                // `o + dv <= out.len()`.
                let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(o), dv) };
                for (y, &a) in dst.iter_mut().zip(&acc[r * dv..(r + 1) * dv]) {
                    *y = a * inv;
                }
            }
        },
    );
}
