//! f32 <-> bf16 conversion of slices, 16 lanes at a time on AVX-512.
//!
//! Rounding to bf16 is to nearest, ties to even, with NaN kept a (quiet) NaN: bit for bit what
//! `half::bf16::from_f32` gives (tested against it), but without its scalar branches. Widening
//! is exact (the bf16 bits become the f32's high half; a signalling NaN stays signalling,
//! where `half` quiets it).

use crate::cpu::Isa;
use half::bf16;
use rayon::prelude::*;

/// Values per parallel task of [`to_bf16_vec`].
const TASK: usize = 1 << 14;

/// `dst[i] = bf16::from_f32(src[i])` for the common length.
pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) {
    let n = src.len().min(dst.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if Isa::selected() == Isa::Avx512 {
        done = n / 16 * 16;
        // SAFETY: AVX-512 is available (`Isa::selected` never exceeds the CPU); both slices
        // hold `done` values.
        unsafe { x86::f32_to_bf16(src.as_ptr(), dst.as_mut_ptr(), done) };
    }
    for (d, &s) in dst[done..n].iter_mut().zip(&src[done..n]) {
        *d = bf16::from_f32(s);
    }
}

/// `dst[i] = src[i].to_f32()` for the common length.
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if Isa::selected() == Isa::Avx512 {
        done = n / 16 * 16;
        // SAFETY: as in `f32_to_bf16`.
        unsafe { x86::bf16_to_f32(src.as_ptr(), dst.as_mut_ptr(), done) };
    }
    for (d, s) in dst[done..n].iter_mut().zip(&src[done..n]) {
        *d = s.to_f32();
    }
}

/// `src` rounded to bf16, in parallel.
pub fn to_bf16_vec(src: &[f32]) -> Vec<bf16> {
    let mut out = vec![bf16::ZERO; src.len()];
    out.par_chunks_mut(TASK)
        .zip(src.par_chunks(TASK))
        .for_each(|(d, s)| f32_to_bf16(s, d));
    out
}

/// `src` widened to f32, in parallel.
pub fn to_f32_vec(src: &[bf16]) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(TASK)
        .zip(src.par_chunks(TASK))
        .for_each(|(d, s)| bf16_to_f32(s, d));
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::bf16;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512 F / BW; `src` and `dst` hold `n` values, `n` a multiple of 16.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn f32_to_bf16(src: *const f32, dst: *mut bf16, n: usize) {
        let one = _mm512_set1_epi32(1);
        let half_ulp = _mm512_set1_epi32(0x7fff);
        let abs = _mm512_set1_epi32(0x7fff_ffff);
        let inf = _mm512_set1_epi32(0x7f80_0000);
        let quiet = _mm512_set1_epi32(0x40);
        for i in (0..n).step_by(16) {
            // SAFETY: the caller's contract.
            unsafe {
                let x = _mm512_loadu_si512(src.add(i) as *const _);
                let high = _mm512_srli_epi32(x, 16);
                // Ties to even: add 0x7fff plus the lowest kept bit, keep the high half.
                let bias = _mm512_add_epi32(half_ulp, _mm512_and_si512(high, one));
                let rounded = _mm512_srli_epi32(_mm512_add_epi32(x, bias), 16);
                let nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs), inf);
                let r = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, quiet));
                _mm256_storeu_si256(dst.add(i) as *mut _, _mm512_cvtepi32_epi16(r));
            }
        }
    }

    /// # Safety
    /// AVX-512 F; `src` and `dst` hold `n` values, `n` a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn bf16_to_f32(src: *const bf16, dst: *mut f32, n: usize) {
        for i in (0..n).step_by(16) {
            // SAFETY: the caller's contract.
            unsafe {
                let h = _mm256_loadu_si256(src.add(i) as *const _);
                let x = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
                _mm512_storeu_si512(dst.add(i) as *mut _, x);
            }
        }
    }
}
