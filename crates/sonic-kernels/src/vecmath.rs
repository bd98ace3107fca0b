//! Vectorised row operations on `f32` slices: maximum, the shifted exponential of a softmax
//! (with its sum) and scaling, each with a portable, an AVX2 and an AVX-512 path.
//!
//! The exponential is Cephes' `expf` (range reduction by `ln 2` in two parts, a degree-5
//! polynomial, the exponent built in the float's bits): about 1 ulp in the normal range and
//! exactly `0` below `-87.3`, the same polynomial on every path.
//!
//! GELU (`0.5 x (1 + erf(x / sqrt 2))`) takes `erf` from Abramowitz and Stegun's 7.1.26 with
//! that exponential (`1 - t p(t) e^(-z^2)`, `t = 1 / (1 + 0.3275911 |z|)`, the sign put back):
//! at most 1.5e-7 from the true `erf`, the formula PyTorch's vectorised CPU `erf` uses.

use crate::cpu::Isa;

const EXP_HI: f32 = 88.376_26;
const EXP_LO: f32 = -88.376_26;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P0: f32 = 1.987_569_1e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 1.666_666_5e-1;
const P5: f32 = 0.5;

/// `e^x` with the kernels' polynomial (scalar; the SIMD paths compute the same thing).
#[inline]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let fx = (x * LOG2E + 0.5).floor();
    let r = x - fx * LN2_HI - fx * LN2_LO;
    let mut y = P0;
    y = y * r + P1;
    y = y * r + P2;
    y = y * r + P3;
    y = y * r + P4;
    y = y * r + P5;
    y = y * (r * r) + r + 1.0;
    let pow2n = f32::from_bits((((fx as i32) + 127) as u32) << 23);
    y * pow2n
}

const ERF_P: f32 = 0.327_591_1;
const ERF_A1: f32 = 0.254_829_6;
const ERF_A2: f32 = -0.284_496_74;
const ERF_A3: f32 = 1.421_413_7;
const ERF_A4: f32 = -1.453_152;
const ERF_A5: f32 = 1.061_405_4;

/// GELU with the kernels' `erf` (scalar; the SIMD paths compute the same thing with fused
/// multiply-adds).
#[inline]
pub fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let poly = ((((ERF_A5 * t + ERF_A4) * t + ERF_A3) * t + ERF_A2) * t + ERF_A1) * t;
    let erf = (1.0 - poly * exp(-a * a)).copysign(z);
    0.5 * x * (1.0 + erf)
}

/// `out[i] = hidden[i] * gelu(gate[i])` (GEGLU), or `gelu(gate[i])` without `hidden`, over the
/// shortest of the slices.
pub fn gelu_mul(isa: Isa, hidden: Option<&[f32]>, gate: &[f32], out: &mut [f32]) {
    let n = out
        .len()
        .min(gate.len())
        .min(hidden.map_or(usize::MAX, <[f32]>::len));
    let (hidden, gate, out) = (hidden.map(|h| &h[..n]), &gate[..n], &mut out[..n]);
    match isa.clamp() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` only returns levels the CPU supports.
        Isa::Avx512 => unsafe { x86::gelu_mul_avx512(hidden, gate, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::gelu_mul_avx2(hidden, gate, out) },
        _ => gelu_mul_portable(hidden, gate, out),
    }
}

fn gelu_mul_portable(hidden: Option<&[f32]>, gate: &[f32], out: &mut [f32]) {
    match hidden {
        Some(hidden) => {
            for ((o, &h), &g) in out.iter_mut().zip(hidden).zip(gate) {
                *o = h * gelu(g);
            }
        }
        None => {
            for (o, &g) in out.iter_mut().zip(gate) {
                *o = gelu(g);
            }
        }
    }
}

/// The largest value of `x` (`-inf` for an empty slice).
pub fn max(isa: Isa, x: &[f32]) -> f32 {
    match isa.clamp() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` only returns levels the CPU supports.
        Isa::Avx512 => unsafe { x86::max_avx512(x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::max_avx2(x) },
        _ => x.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    }
}

/// Replaces each `x[i]` by `exp((x[i] - shift) * scale)` and returns their sum.
pub fn exp_shift_sum(isa: Isa, x: &mut [f32], shift: f32, scale: f32) -> f32 {
    match isa.clamp() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` only returns levels the CPU supports.
        Isa::Avx512 => unsafe { x86::exp_shift_sum_avx512(x, shift, scale) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::exp_shift_sum_avx2(x, shift, scale) },
        _ => exp_shift_sum_portable(x, shift, scale),
    }
}

/// `x[i] = (x[i] - shift) * a + b`, then SiLU (`y / (1 + e^-y)`) when `silu`.
pub fn affine_silu(isa: Isa, x: &mut [f32], shift: f32, a: f32, b: f32, silu: bool) {
    match isa.clamp() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `clamp` only returns levels the CPU supports.
        Isa::Avx512 => unsafe { x86::affine_silu_avx512(x, shift, a, b, silu) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::affine_silu_avx2(x, shift, a, b, silu) },
        _ => affine_silu_portable(x, shift, a, b, silu),
    }
}

fn affine_silu_portable(x: &mut [f32], shift: f32, a: f32, b: f32, silu: bool) {
    for v in x.iter_mut() {
        let y = (*v - shift) * a + b;
        *v = if silu { y / (1.0 + exp(-y)) } else { y };
    }
}

fn exp_shift_sum_portable(x: &mut [f32], shift: f32, scale: f32) -> f32 {
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = exp((*v - shift) * scale);
        sum += *v;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    fn exp16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(
            _mm512_min_ps(x, _mm512_set1_ps(EXP_HI)),
            _mm512_set1_ps(EXP_LO),
        );
        let fx = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5));
        let fx = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(fx);
        let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_LO), r);
        let mut y = _mm512_set1_ps(P0);
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P1));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P2));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P3));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P4));
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P5));
        y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r);
        y = _mm512_add_ps(y, _mm512_set1_ps(1.0));
        let n = _mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127));
        _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(n)))
    }

    #[target_feature(enable = "avx512f")]
    fn affine16(v: __m512, va: __m512, vb: __m512, one: __m512, silu: bool) -> __m512 {
        let y = _mm512_fmadd_ps(v, va, vb);
        if silu {
            let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), y));
            _mm512_div_ps(y, _mm512_add_ps(one, e))
        } else {
            y
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn exp8(x: __m256) -> __m256 {
        let x = _mm256_max_ps(
            _mm256_min_ps(x, _mm256_set1_ps(EXP_HI)),
            _mm256_set1_ps(EXP_LO),
        );
        let fx = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5));
        let fx = _mm256_floor_ps(fx);
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_LO), r);
        let mut y = _mm256_set1_ps(P0);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P5));
        y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
        y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
        let n = _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127));
        _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n)))
    }

    #[target_feature(enable = "avx512f")]
    fn gelu16(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let z = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm512_abs_ps(z);
        let t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), a, one));
        let mut poly = _mm512_set1_ps(ERF_A5);
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(ERF_A4));
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(ERF_A3));
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(ERF_A2));
        poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(ERF_A1));
        poly = _mm512_mul_ps(poly, t);
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
        let erf_abs = _mm512_fnmadd_ps(poly, e, one);
        let sign = _mm512_and_si512(_mm512_castps_si512(z), _mm512_set1_epi32(i32::MIN));
        let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(erf_abs), sign));
        _mm512_mul_ps(
            _mm512_mul_ps(_mm512_set1_ps(0.5), x),
            _mm512_add_ps(one, erf),
        )
    }

    #[target_feature(enable = "avx2,fma")]
    fn gelu8(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let z = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let sign_mask = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign_mask, z);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), a, one));
        let mut poly = _mm256_set1_ps(ERF_A5);
        poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(ERF_A4));
        poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(ERF_A3));
        poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(ERF_A2));
        poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(ERF_A1));
        poly = _mm256_mul_ps(poly, t);
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
        let erf_abs = _mm256_fnmadd_ps(poly, e, one);
        let erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign_mask, z));
        _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(0.5), x),
            _mm256_add_ps(one, erf),
        )
    }

    /// # Safety
    /// The CPU must support AVX-512 F; the slices have one length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_mul_avx512(hidden: Option<&[f32]>, gate: &[f32], out: &mut [f32]) {
        let n = out.len();
        let (h, g, o) = (hidden.map(<[f32]>::as_ptr), gate.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        // SAFETY: loads and stores stay inside the slices of length `n` (full vectors below
        // `n`, a masked tail).
        unsafe {
            while i + 16 <= n {
                let mut y = gelu16(_mm512_loadu_ps(g.add(i)));
                if let Some(h) = h {
                    y = _mm512_mul_ps(_mm512_loadu_ps(h.add(i)), y);
                }
                _mm512_storeu_ps(o.add(i), y);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
                let mut y = gelu16(_mm512_maskz_loadu_ps(mask, g.add(i)));
                if let Some(h) = h {
                    y = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, h.add(i)), y);
                }
                _mm512_mask_storeu_ps(o.add(i), mask, y);
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; the slices have one length.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_mul_avx2(hidden: Option<&[f32]>, gate: &[f32], out: &mut [f32]) {
        let n = out.len();
        let (h, g, o) = (hidden.map(<[f32]>::as_ptr), gate.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        // SAFETY: full vectors only below `n`.
        unsafe {
            while i + 8 <= n {
                let mut y = gelu8(_mm256_loadu_ps(g.add(i)));
                if let Some(h) = h {
                    y = _mm256_mul_ps(_mm256_loadu_ps(h.add(i)), y);
                }
                _mm256_storeu_ps(o.add(i), y);
                i += 8;
            }
        }
        gelu_mul_portable(hidden.map(|h| &h[i..]), &gate[i..], &mut out[i..]);
    }

    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn affine_silu_avx512(x: &mut [f32], shift: f32, a: f32, b: f32, silu: bool) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let (va, vb, one) = (_mm512_set1_ps(a), _mm512_set1_ps(b), _mm512_set1_ps(1.0));
        let vs = _mm512_set1_ps(shift);
        let mut i = 0;
        // SAFETY: loads and stores stay inside `x` (full vectors below `n`, a masked tail).
        unsafe {
            while i + 16 <= n {
                _mm512_storeu_ps(
                    p.add(i),
                    affine16(
                        _mm512_sub_ps(_mm512_loadu_ps(p.add(i)), vs),
                        va,
                        vb,
                        one,
                        silu,
                    ),
                );
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
                let v = _mm512_maskz_loadu_ps(mask, p.add(i));
                _mm512_mask_storeu_ps(
                    p.add(i),
                    mask,
                    affine16(_mm512_sub_ps(v, vs), va, vb, one, silu),
                );
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn affine_silu_avx2(x: &mut [f32], shift: f32, a: f32, b: f32, silu: bool) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let (va, vb, one) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_set1_ps(1.0));
        let vs = _mm256_set1_ps(shift);
        let mut i = 0;
        // SAFETY: full vectors only below `n`.
        unsafe {
            while i + 8 <= n {
                let y = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vs), va, vb);
                let y = if silu {
                    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), y));
                    _mm256_div_ps(y, _mm256_add_ps(one, e))
                } else {
                    y
                };
                _mm256_storeu_ps(p.add(i), y);
                i += 8;
            }
        }
        affine_silu_portable(&mut x[i..], shift, a, b, silu);
    }

    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn max_avx512(x: &[f32]) -> f32 {
        let n = x.len();
        let p = x.as_ptr();
        let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        // SAFETY: every load stays inside `x` (full vectors below `n`, a masked tail).
        unsafe {
            while i + 16 <= n {
                acc = _mm512_max_ps(acc, _mm512_loadu_ps(p.add(i)));
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
                acc = _mm512_max_ps(acc, _mm512_mask_loadu_ps(acc, mask, p.add(i)));
            }
        }
        _mm512_reduce_max_ps(acc)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn max_avx2(x: &[f32]) -> f32 {
        let n = x.len();
        let p = x.as_ptr();
        let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        // SAFETY: full vectors only below `n`.
        unsafe {
            while i + 8 <= n {
                acc = _mm256_max_ps(acc, _mm256_loadu_ps(p.add(i)));
                i += 8;
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut m = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for &v in &x[i..] {
            m = m.max(v);
        }
        m
    }

    /// # Safety
    /// The CPU must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shift_sum_avx512(x: &mut [f32], shift: f32, scale: f32) -> f32 {
        let n = x.len();
        let p = x.as_mut_ptr();
        let vs = _mm512_set1_ps(shift);
        let vk = _mm512_set1_ps(scale);
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: loads and stores stay inside `x` (full vectors below `n`, a masked tail).
        unsafe {
            while i + 16 <= n {
                let v = _mm512_loadu_ps(p.add(i));
                let e = exp16(_mm512_mul_ps(_mm512_sub_ps(v, vs), vk));
                _mm512_storeu_ps(p.add(i), e);
                acc = _mm512_add_ps(acc, e);
                i += 16;
            }
            if i < n {
                let mask: __mmask16 = (1u32 << (n - i)).wrapping_sub(1) as __mmask16;
                let v = _mm512_maskz_loadu_ps(mask, p.add(i));
                let e = exp16(_mm512_mul_ps(_mm512_sub_ps(v, vs), vk));
                _mm512_mask_storeu_ps(p.add(i), mask, e);
                acc = _mm512_mask_add_ps(acc, mask, acc, e);
            }
        }
        _mm512_reduce_add_ps(acc)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shift_sum_avx2(x: &mut [f32], shift: f32, scale: f32) -> f32 {
        let n = x.len();
        let p = x.as_mut_ptr();
        let vs = _mm256_set1_ps(shift);
        let vk = _mm256_set1_ps(scale);
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: full vectors only below `n`.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_loadu_ps(p.add(i));
                let e = exp8(_mm256_mul_ps(_mm256_sub_ps(v, vs), vk));
                _mm256_storeu_ps(p.add(i), e);
                acc = _mm256_add_ps(acc, e);
                i += 8;
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum: f32 = lanes.iter().sum();
        for v in &mut x[i..] {
            *v = exp((*v - shift) * scale);
            sum += *v;
        }
        sum
    }
}

#[cfg(test)]
mod tests_affine {
    use super::*;

    #[test]
    fn affine_silu_agrees_on_every_isa() {
        for n in [0usize, 1, 7, 8, 15, 16, 17, 100] {
            let row: Vec<f32> = (0..n).map(|i| (i as f32 - 50.0) * 0.37).collect();
            for silu in [false, true] {
                let want: Vec<f32> = row
                    .iter()
                    .map(|&v| {
                        let y = (v as f64 - 0.5) * 1.5 - 0.25;
                        if silu { y / (1.0 + (-y).exp()) } else { y }
                    } as f32)
                    .collect();
                for isa in Isa::all_supported() {
                    let mut got = row.clone();
                    affine_silu(isa, &mut got, 0.5, 1.5, -0.25, silu);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-3), "{isa:?} {g} {w}");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<f32>> {
        // Lengths around the vector widths; values over the whole useful range.
        [0usize, 1, 7, 8, 15, 16, 17, 77, 256, 301]
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 60.0)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs() as f32;
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn every_isa_agrees_with_the_scalar_definition() {
        for isa in Isa::all_supported() {
            for row in rows() {
                let want_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(max(isa, &row), want_max, "{isa:?} max, n = {}", row.len());
                let shift = want_max.max(0.0);
                let want: Vec<f32> = row.iter().map(|&v| exp((v - shift) * 0.3)).collect();
                let want_sum: f64 = want.iter().map(|&v| v as f64).sum();
                let mut got = row.clone();
                let sum = exp_shift_sum(isa, &mut got, shift, 0.3);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-6 * w.abs(), "{isa:?}: {g} vs {w}");
                }
                assert!(
                    (sum as f64 - want_sum).abs() <= 1e-5 * want_sum.max(1e-30),
                    "{isa:?} sum {sum} vs {want_sum}"
                );
            }
        }
    }
}
