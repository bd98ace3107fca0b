//! Fused GroupNorm (+ SiLU): two read passes for the statistics of each group (mean, then the
//! centred sum of squares, in `f32` lanes folded into `f64` every block) and one pass that
//! writes `silu(x * a_c + b_c)` per channel plane with the vectorised exponential of
//! [`crate::vecmath`]; Burn's `GroupNorm` followed by `silu` walks the tensor about eight
//! times. f32 and bf16 (computed in f32, rounded once).
//!
//! LayerNorm in bf16 ([`layer_norm`]): one parallel pass over the rows, each widened to f32,
//! normalised and rounded once. Burn widens the whole tensor to f32 and narrows the result on
//! one thread around flex's f32 LayerNorm (which is already a parallel vectorised pass, kept
//! for f32).

use crate::cpu::Isa;
use crate::flex::{from_flex, host_f32, into_flex, on_plain_flex};
use crate::vecmath;
use burn::backend::flex::FlexTensor;
use burn::nn::{GroupNorm, LayerNorm};
use burn::tensor::activation::silu;
use burn::tensor::{DType, Tensor, TensorData};
use half::bf16;
use rayon::prelude::*;

/// Elements staged in `f32` at a time.
const CHUNK: usize = 2048;

/// `gn.forward(x)` for `x` `[B, C, ...]`.
pub fn group_norm<const D: usize>(gn: &GroupNorm, x: Tensor<D>) -> Tensor<D> {
    group_norm_with(Isa::selected(), gn, x, false)
}

/// `silu(gn.forward(x))` for `x` `[B, C, ...]`, in one pass over the output.
pub fn group_norm_silu<const D: usize>(gn: &GroupNorm, x: Tensor<D>) -> Tensor<D> {
    group_norm_with(Isa::selected(), gn, x, true)
}

/// The fused kernel at level `isa` where it applies (plain `flex`, f32 / bf16, rank >= 3,
/// channels divisible by the groups, matching `gn`, `norm` not in `SONIC_KERNELS_OFF`), Burn's
/// GroupNorm (and SiLU) otherwise.
pub fn group_norm_with<const D: usize>(
    isa: Isa,
    gn: &GroupNorm,
    x: Tensor<D>,
    with_silu: bool,
) -> Tensor<D> {
    let dims = x.dims();
    let fits = D >= 3
        && dims[1] == gn.num_channels
        && gn.num_groups > 0
        && dims[1].is_multiple_of(gn.num_groups)
        && dims.iter().product::<usize>() > 0
        && matches!(x.dtype(), DType::F32 | DType::BF16)
        && on_plain_flex(&x.device())
        && crate::cpu::enabled("norm")
        && (!gn.affine || (gn.gamma.is_some() && gn.beta.is_some()));
    if !fits {
        let y = gn.forward(x);
        return if with_silu { silu(y) } else { y };
    }
    let channel_values = |p: &Option<burn::module::Param<Tensor<1>>>| -> Option<Vec<f32>> {
        p.as_ref().and_then(|p| host_f32(p.val()))
    };
    let (gamma, beta) = if gn.affine {
        (channel_values(&gn.gamma), channel_values(&gn.beta))
    } else {
        (None, None)
    };
    let dtype = x.dtype();
    let Some(t) = into_flex(x) else {
        unreachable!("checked to be on plain flex")
    };
    let t = if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    };
    let p = Params {
        isa,
        b: dims[0],
        c: dims[1],
        s: dims[2..].iter().product(),
        groups: gn.num_groups,
        eps: gn.epsilon,
        gamma: gamma.as_deref(),
        beta: beta.as_deref(),
        silu: with_silu,
    };
    let out = match dtype {
        DType::BF16 => FlexTensor::from_data(TensorData::new(
            run::<bf16>(&p, &t.storage::<bf16>()[..p.b * p.c * p.s]),
            dims.to_vec(),
        )),
        _ => FlexTensor::from_data(TensorData::new(
            run::<f32>(&p, &t.storage::<f32>()[..p.b * p.c * p.s]),
            dims.to_vec(),
        )),
    };
    from_flex(out)
}

struct Params<'a> {
    isa: Isa,
    b: usize,
    c: usize,
    s: usize,
    groups: usize,
    eps: f64,
    gamma: Option<&'a [f32]>,
    beta: Option<&'a [f32]>,
    silu: bool,
}

/// An element type the kernel stages through `f32`.
trait Staged: Copy + Send + Sync + Default + burn::tensor::Element {
    fn load(src: &[Self], dst: &mut [f32]);
    fn store(src: &[f32], dst: &mut [Self]);
}

impl Staged for f32 {
    fn load(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn store(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl Staged for bf16 {
    fn load(src: &[bf16], dst: &mut [f32]) {
        crate::convert::bf16_to_f32(src, dst);
    }
    fn store(src: &[f32], dst: &mut [bf16]) {
        crate::convert::f32_to_bf16(src, dst);
    }
}

/// Sum of `f(x)` over `x` in 16 `f32` lanes, folded into `f64` once per chunk.
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 16];
    let mut it = x.chunks_exact(16);
    for c in &mut it {
        for j in 0..16 {
            acc[j] += f(c[j]);
        }
    }
    let tail: f32 = it.remainder().iter().map(|&v| f(v)).sum();
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

fn run<E: Staged>(p: &Params, x: &[E]) -> Vec<E> {
    let cg = p.c / p.groups;
    let group_len = cg * p.s;
    // Mean and 1 / std per (batch, group).
    let stats: Vec<(f32, f32)> = x
        .par_chunks(group_len)
        .map(|g| {
            let mut buf = vec![0f32; CHUNK];
            let mut sum = 0f64;
            for c in g.chunks(CHUNK) {
                E::load(c, &mut buf[..c.len()]);
                sum += lane_sum(&buf[..c.len()], |v| v);
            }
            let mean = sum / group_len as f64;
            let m = mean as f32;
            let mut sq = 0f64;
            for c in g.chunks(CHUNK) {
                E::load(c, &mut buf[..c.len()]);
                sq += lane_sum(&buf[..c.len()], |v| (v - m) * (v - m));
            }
            let var = sq / group_len as f64;
            (m, (1.0 / (var + p.eps).sqrt()) as f32)
        })
        .collect();
    let mut out = vec![E::default(); x.len()];
    out.par_chunks_mut(p.s)
        .zip(x.par_chunks(p.s))
        .enumerate()
        .for_each_init(
            || vec![0f32; CHUNK],
            |buf, (plane, (dst, src))| {
                let (bi, ch) = (plane / p.c, plane % p.c);
                let (mean, rstd) = stats[bi * p.groups + ch / cg];
                let gamma = p.gamma.map_or(1.0, |g| g[ch]);
                let beta = p.beta.map_or(0.0, |b| b[ch]);
                let a = rstd * gamma;
                for (d, s) in dst.chunks_mut(CHUNK).zip(src.chunks(CHUNK)) {
                    let buf = &mut buf[..s.len()];
                    E::load(s, buf);
                    vecmath::affine_silu(p.isa, buf, mean, a, beta, p.silu);
                    E::store(buf, d);
                }
            },
        );
    out
}

/// `ln.forward(x)` over the last dimension, where `eps` is the epsilon `ln` was built with
/// (Burn keeps it private; [`LayerNormConfig`](burn::nn::LayerNormConfig)'s default is 1e-5).
/// bf16 on plain flex: the rows in parallel, each widened to f32, its mean and (biased)
/// variance in two passes, `(x - mean) / sqrt(var + eps) * gamma + beta` rounded once. Every
/// other case (f32, other devices, `norm` in `SONIC_KERNELS_OFF`) takes `ln.forward`.
pub fn layer_norm<const D: usize>(ln: &LayerNorm, eps: f64, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let width = ln.gamma.dims()[0];
    let fits = D >= 1
        && dims[D - 1] == width
        && width > 0
        && x.dtype() == DType::BF16
        && on_plain_flex(&x.device())
        && crate::cpu::enabled("norm");
    if !fits {
        return ln.forward(x);
    }
    match layer_norm_bf16(ln, eps, x.clone()) {
        Some(y) => y,
        None => ln.forward(x),
    }
}

/// The bf16 pass of [`layer_norm`]; `None` where a tensor cannot be read (the caller then
/// takes `ln.forward`).
fn layer_norm_bf16<const D: usize>(ln: &LayerNorm, eps: f64, x: Tensor<D>) -> Option<Tensor<D>> {
    let dims = x.dims();
    let width = dims[D - 1];
    let gamma = host_f32(ln.gamma.val())?;
    let beta = match &ln.beta {
        Some(b) => Some(host_f32(b.val())?),
        None => None,
    };
    let t = crate::conv::contiguous(into_flex(x)?);
    let src = crate::conv::bf16_values(&t);
    let mut out = vec![bf16::ZERO; src.len()];
    let rows_per_task = (1 << 14) / width + 1;
    out.par_chunks_mut(rows_per_task * width)
        .zip(src.par_chunks(rows_per_task * width))
        .for_each_init(Vec::new, |row, (o, i)| {
            row.resize(width, 0f32);
            for (o, i) in o.chunks_exact_mut(width).zip(i.chunks_exact(width)) {
                bf16::load(i, row);
                let mean = (lane_sum(row, |v| v) / width as f64) as f32;
                let var = lane_sum(row, |v| (v - mean) * (v - mean)) / width as f64;
                let inv = (1.0 / (var + eps).sqrt()) as f32;
                for (j, v) in row.iter_mut().enumerate() {
                    let y = (*v - mean) * inv * gamma[j];
                    *v = match &beta {
                        Some(b) => y + b[j],
                        None => y,
                    };
                }
                bf16::store(row, o);
            }
        });
    Some(from_flex(FlexTensor::from_data(TensorData::new(
        out,
        dims.to_vec(),
    ))))
}
