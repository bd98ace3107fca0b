//! Band-limited sinc resampling equal to `torchaudio.transforms.Resample` with its defaults
//! (`sinc_interp_hann`, `lowpass_filter_width = 6`, `rolloff = 0.99`).
//!
//! torchaudio reduces the rates by their gcd to `orig` and `new`, builds `new` polyphase
//! filters of `2 * width + orig` taps (`width = ceil(lowpass_filter_width * orig / base)`,
//! `base = min(orig, new) * rolloff`), caches them as float32, zero-pads the signal by `width`
//! on the left and `width + orig` on the right, convolves with stride `orig` and keeps
//! `ceil(new * len / orig)` samples. Tap `j` of phase `i` is, with
//! `t = (-i / new + (j - width) / orig) * base` clamped to `±lowpass_filter_width`,
//! `sinc(pi t) * cos(pi t / lowpass_filter_width / 2)^2 * base / orig`.
//!
//! We evaluate the same expression in the same order (including torchaudio's float32
//! rounding of `-i / new`), round the taps to `f32`, and keep per phase only the taps inside
//! `|t| < lowpass_filter_width`: the clamped taps outside are below `1e-45` in float64 and so
//! exactly zero in float32. The convolution accumulates in `f64`.

use crate::error::{AudioError, Result};

/// torchaudio's default `lowpass_filter_width`.
pub const LOWPASS_FILTER_WIDTH: usize = 6;
/// torchaudio's default `rolloff`.
pub const ROLLOFF: f64 = 0.99;

/// Greatest common divisor.
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// A polyphase sinc resampler from one rate to another, equal to torchaudio's `Resample`
/// (Hann-windowed sinc).
#[derive(Debug, Clone)]
pub struct SincResampler {
    orig_freq: u32,
    new_freq: u32,
    /// `orig_freq / gcd`.
    orig: usize,
    /// `new_freq / gcd`.
    new: usize,
    /// torchaudio's `width` (taps of zero padding on the left).
    width: usize,
    /// Per phase: the index of its first stored tap and the stored taps.
    phases: Vec<(usize, Vec<f32>)>,
}

impl SincResampler {
    /// A resampler `orig_freq -> new_freq` with torchaudio's defaults.
    pub fn new(orig_freq: u32, new_freq: u32) -> Result<Self> {
        Self::with_params(orig_freq, new_freq, LOWPASS_FILTER_WIDTH, ROLLOFF)
    }

    /// A resampler with an explicit `lowpass_filter_width` and `rolloff`.
    pub fn with_params(
        orig_freq: u32,
        new_freq: u32,
        lowpass_filter_width: usize,
        rolloff: f64,
    ) -> Result<Self> {
        if orig_freq == 0 || new_freq == 0 {
            return Err(AudioError::bad_input(
                "resampling rates",
                format!("{orig_freq} Hz -> {new_freq} Hz: rates must be positive"),
            ));
        }
        if lowpass_filter_width == 0 || !(rolloff > 0.0 && rolloff.is_finite()) {
            return Err(AudioError::bad_input(
                "resampling parameters",
                format!("lowpass_filter_width {lowpass_filter_width}, rolloff {rolloff}"),
            ));
        }
        let g = gcd(orig_freq as u64, new_freq as u64);
        let orig = (orig_freq as u64 / g) as usize;
        let new = (new_freq as u64 / g) as usize;
        let lpw = lowpass_filter_width as f64;
        let base = orig.min(new) as f64 * rolloff;
        let width = (lpw * orig as f64 / base).ceil() as usize;
        let taps = 2 * width + orig;
        let scale = base / orig as f64;
        let mut phases = Vec::with_capacity(new);
        for i in 0..new {
            // torchaudio: arange(0, -new, -1) (int64) / new -> float32, then + idx (float64).
            let p = ((-(i as f32)) / new as f32) as f64;
            // |t| < lpw  <=>  j - width in orig * (-p ± lpw / base); widen by 2 for rounding.
            let centre = width as f64 - orig as f64 * p;
            let half = orig as f64 * lpw / base;
            let lo = ((centre - half).floor() - 2.0).max(0.0) as usize;
            let hi = (((centre + half).ceil() + 2.0).max(0.0) as usize).min(taps - 1);
            let lo = lo.min(hi + 1);
            let mut k = Vec::with_capacity(hi.saturating_sub(lo) + 1);
            for j in lo..=hi {
                k.push(tap(p, j, width, orig, base, lpw, scale));
            }
            phases.push((lo, k));
        }
        Ok(Self {
            orig_freq,
            new_freq,
            orig,
            new,
            width,
            phases,
        })
    }

    /// The source rate.
    pub fn orig_freq(&self) -> u32 {
        self.orig_freq
    }

    /// The target rate.
    pub fn new_freq(&self) -> u32 {
        self.new_freq
    }

    /// torchaudio's `width`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The dense kernel torchaudio caches, shape `[new, 1, 2 * width + orig]` flattened
    /// (for comparison against torchaudio's own). Errors when it would exceed 2^28 values
    /// (rates whose gcd is small, where torchaudio itself needs gigabytes).
    pub fn dense_kernel(&self) -> Result<(Vec<usize>, Vec<f32>)> {
        let taps = 2 * self.width + self.orig;
        let total = self
            .new
            .checked_mul(taps)
            .filter(|&n| n <= 1 << 28)
            .ok_or_else(|| {
                AudioError::bad_input(
                    "dense resampling kernel",
                    format!("{} x {taps} values is too large", self.new),
                )
            })?;
        let mut out = vec![0f32; total];
        for (i, (lo, k)) in self.phases.iter().enumerate() {
            out[i * taps + lo..i * taps + lo + k.len()].copy_from_slice(k);
        }
        Ok((vec![self.new, 1, taps], out))
    }

    /// The number of output samples for `len` input samples: `ceil(new * len / orig)`.
    pub fn output_len(&self, len: usize) -> usize {
        let num = self.new as u128 * len as u128;
        num.div_ceil(self.orig as u128) as usize
    }

    /// Resamples one channel. Equal rates return the input unchanged (as torchaudio does).
    pub fn process(&self, x: &[f32]) -> Vec<f32> {
        if self.orig_freq == self.new_freq {
            return x.to_vec();
        }
        let len = x.len();
        let out_len = self.output_len(len);
        let mut out = Vec::with_capacity(out_len);
        // Padded signal: xpad[m] = x[m - width] for width <= m < width + len, else 0.
        let frames = len / self.orig + 1;
        'outer: for n in 0..frames {
            let start = n * self.orig;
            for (lo, k) in &self.phases {
                if out.len() == out_len {
                    break 'outer;
                }
                let mut acc = 0f64;
                for (t, &w) in k.iter().enumerate() {
                    let m = start + lo + t;
                    if m >= self.width && m - self.width < len {
                        acc += x[m - self.width] as f64 * w as f64;
                    }
                }
                out.push(acc as f32);
            }
        }
        out
    }
}

fn tap(p: f64, j: usize, width: usize, orig: usize, base: f64, lpw: f64, scale: f64) -> f32 {
    let idx = (j as f64 - width as f64) / orig as f64;
    let mut t = p + idx;
    t *= base;
    t = t.clamp(-lpw, lpw);
    let window = (t * std::f64::consts::PI / lpw / 2.0).cos().powi(2);
    let tp = t * std::f64::consts::PI;
    let sinc = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
    (sinc * (window * scale)) as f32
}

/// Resamples `x` from `orig_freq` to `new_freq` (a one-off [`SincResampler`]).
pub fn resample(x: &[f32], orig_freq: u32, new_freq: u32) -> Result<Vec<f32>> {
    if orig_freq == new_freq {
        return Ok(x.to_vec());
    }
    Ok(SincResampler::new(orig_freq, new_freq)?.process(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_torchaudio() {
        let r = SincResampler::new(16000, 44100).unwrap();
        assert_eq!(r.width(), 7);
        assert_eq!(r.dense_kernel().unwrap().0, vec![441, 1, 174]);
        assert_eq!(r.output_len(40000), 110250);
        assert_eq!(r.process(&vec![0.1; 40000]).len(), 110250);
        let r = SincResampler::new(48000, 44100).unwrap();
        assert_eq!(r.output_len(1000), 919);
        assert_eq!(r.process(&[0.5; 1000]).len(), 919);
        assert_eq!(r.process(&[0.5; 1]).len(), 1);
    }

    #[test]
    fn dc_is_preserved_in_the_middle() {
        for (a, b) in [
            (22050, 44100),
            (48000, 44100),
            (32000, 44100),
            (8000, 44100),
        ] {
            let r = SincResampler::new(a, b).unwrap();
            let y = r.process(&vec![1.0; 4000]);
            let mid = y[y.len() / 2];
            assert!((mid - 0.99).abs() < 0.02, "{a}->{b}: {mid}");
        }
    }

    #[test]
    fn coprime_rates_stay_small() {
        // 44099 -> 44100 would be a 44100 x 44113 dense kernel; the sparse phases are small.
        let r = SincResampler::new(44099, 44100).unwrap();
        let stored: usize = r.phases.iter().map(|(_, k)| k.len()).sum();
        assert!(r.dense_kernel().is_err());
        assert!(stored < 44100 * 20, "{stored}");
        assert_eq!(r.process(&[0.0; 10]).len(), 11);
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(SincResampler::new(0, 44100).is_err());
    }
}
