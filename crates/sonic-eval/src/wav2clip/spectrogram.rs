//! The front end inside Wav2CLIP's `ResNet.forward`, computed on the host in `f64`:
//!
//! 1. `torchaudio.transforms.Spectrogram(n_fft, hop_length)` with its defaults: window
//!    `torch.hann_window(n_fft)` (periodic; the checkpoint's `spectrogram.window` buffer when
//!    it has one), `win_length = n_fft`, `center=True` with `reflect` padding of `n_fft / 2` on
//!    both sides, one-sided, `power=2` (`|STFT|^2`), not normalised: `[N, 1, n_fft/2+1, F]`
//!    (frequency rows, time columns), `F = 1 + (T + 2 (n_fft/2) - n_fft) / hop`;
//! 2. `x = log(x + 1e-7)`;
//! 3. `x = (x - mean(x)) / (std(x) + 1e-9)` with the mean and the unbiased standard deviation
//!    over the **whole** tensor: every clip (and frame) of the batch shares one mean and one
//!    deviation, so a clip's embedding depends on the clips embedded with it.
//!
//! The transform is a direct DFT with `f64` accumulators (cosine / sine tables indexed by
//! `k n mod N`), exact where PyTorch's `float32` FFT rounds; its cost is small next to the
//! ResNet's (about 2% of the multiply-adds at the package's sizes).
//!
//! [`frames`] is `librosa.util.frame` as the package's frame-level mode uses it.

use crate::error::EvalError;

/// `log(x + LOG_OFFSET)` of the power spectrogram.
pub const LOG_OFFSET: f64 = 1e-7;
/// `(x - mean) / (std + STD_OFFSET)`.
pub const STD_OFFSET: f64 = 1e-9;

/// The periodic Hann window of length `n` (`torch.hann_window(n)`, in `f64`:
/// `sin^2(pi i / n)`).
pub fn hann_window(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let s = (std::f64::consts::PI * i as f64 / n as f64).sin();
            s * s
        })
        .collect()
}

/// The short-time power spectrum of Wav2CLIP's front end (see the module docs).
#[derive(Debug, Clone)]
pub struct PowerSpectrogram {
    n_fft: usize,
    hop: usize,
    window: Vec<f64>,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl PowerSpectrogram {
    /// A spectrogram of `n_fft` (>= 2) and `hop` (>= 1) with `window` (`n_fft` values, e.g.
    /// the checkpoint's) or the periodic Hann window.
    pub fn new(n_fft: usize, hop: usize, window: Option<&[f32]>) -> Result<Self, EvalError> {
        if n_fft < 2 || hop == 0 {
            return Err(EvalError::input(
                "Wav2CLIP spectrogram",
                format!("n_fft {n_fft} and hop {hop}: needs n_fft >= 2 and hop >= 1"),
            ));
        }
        let window = match window {
            Some(w) if w.len() != n_fft => {
                return Err(EvalError::input(
                    "Wav2CLIP spectrogram",
                    format!("a window of {} values for n_fft {n_fft}", w.len()),
                ));
            }
            Some(w) if w.iter().any(|v| !v.is_finite()) => {
                return Err(EvalError::input(
                    "Wav2CLIP spectrogram",
                    "the window holds NaN or infinite values",
                ));
            }
            Some(w) => w.iter().map(|&v| f64::from(v)).collect(),
            None => hann_window(n_fft),
        };
        let angle = |m: usize| 2.0 * std::f64::consts::PI * m as f64 / n_fft as f64;
        Ok(Self {
            n_fft,
            hop,
            window,
            cos: (0..n_fft).map(|m| angle(m).cos()).collect(),
            sin: (0..n_fft).map(|m| angle(m).sin()).collect(),
        })
    }

    /// Frequency bins (`n_fft / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames for `samples` input samples (`samples > n_fft / 2`).
    pub fn frames(&self, samples: usize) -> usize {
        (samples + 2 * (self.n_fft / 2) - self.n_fft) / self.hop + 1
    }

    /// The window in use.
    pub fn window(&self) -> &[f64] {
        &self.window
    }

    /// `|STFT|^2` of one clip of more than `n_fft / 2` samples, `[bins, frames]` row-major,
    /// written to `out` (its length must be `bins * frames`).
    fn power_into(&self, x: &[f32], out: &mut [f64]) {
        let n = self.n_fft;
        let pad = n / 2;
        let len = x.len() as isize;
        let frames = self.frames(x.len());
        let mut seg = vec![0f64; n];
        for t in 0..frames {
            for (i, s) in seg.iter_mut().enumerate() {
                // Reflect padding (no edge repeat): index j of the clip for position i.
                let mut j = (t * self.hop + i) as isize - pad as isize;
                if j < 0 {
                    j = -j;
                }
                if j >= len {
                    j = 2 * (len - 1) - j;
                }
                *s = f64::from(x[j.clamp(0, len - 1) as usize]) * self.window[i];
            }
            for k in 0..self.bins() {
                let (mut re, mut im) = (0f64, 0f64);
                let mut m = 0usize;
                for &v in &seg {
                    re += v * self.cos[m];
                    im += v * self.sin[m];
                    m += k;
                    if m >= n {
                        m -= n;
                    }
                }
                out[k * frames + t] = re * re + im * im;
            }
        }
    }

    /// The normalised log power spectrogram of `clips` (all of one length `T > n_fft / 2`,
    /// finite), `[N, 1, bins, frames]` row-major as `f32`: the input of the ResNet's `conv1`.
    /// The caller checks lengths and values.
    pub fn normalised(&self, clips: &[&[f32]]) -> Vec<f32> {
        let samples = clips.first().map_or(0, |c| c.len());
        let per_clip = self.bins() * self.frames(samples);
        let mut v = vec![0f64; clips.len() * per_clip];
        for (clip, out) in clips.iter().zip(v.chunks_exact_mut(per_clip)) {
            self.power_into(clip, out);
        }
        v.iter_mut().for_each(|p| *p = (*p + LOG_OFFSET).ln());
        let count = v.len() as f64;
        // Two passes (the second corrects the first's rounding), so a constant input
        // normalises to exact zeros.
        let mean = v.iter().sum::<f64>() / count;
        let mean = mean + v.iter().map(|x| x - mean).sum::<f64>() / count;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (count - 1.0).max(1.0);
        let denom = var.sqrt() + STD_OFFSET;
        v.iter().map(|x| ((x - mean) / denom) as f32).collect()
    }
}

/// `librosa.util.frame(x, frame_length, hop_length)` of one clip, frames in order: frame `j`
/// is `x[j hop .. j hop + frame_length]`, `1 + (T - frame_length) / hop` of them (`None` when
/// the clip is shorter than a frame or a size is zero).
pub fn frames(x: &[f32], frame_length: usize, hop_length: usize) -> Option<Vec<&[f32]>> {
    if frame_length == 0 || hop_length == 0 || x.len() < frame_length {
        return None;
    }
    let n = (x.len() - frame_length) / hop_length + 1;
    Some(
        (0..n)
            .map(|j| &x[j * hop_length..j * hop_length + frame_length])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dft_matches_the_definition_with_reflect_padding() {
        // n_fft 8, hop 3, 10 samples: torch.stft(center=True, pad_mode="reflect").
        let x: Vec<f32> = (0..10).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3).collect();
        let s = PowerSpectrogram::new(8, 3, None).unwrap();
        assert_eq!((s.bins(), s.frames(10)), (5, 4));
        let mut out = vec![0f64; 5 * 4];
        s.power_into(&x, &mut out);
        // Reflect padding by 4: x[4], x[3], x[2], x[1], x[0], ..., x[9], x[8], ..., x[5].
        let padded: Vec<f64> = (0..18)
            .map(|i: i32| {
                let j = (i - 4).abs();
                let j = if j > 9 { 18 - j } else { j };
                f64::from(x[j as usize])
            })
            .collect();
        let w = hann_window(8);
        for t in 0..4 {
            for k in 0..5 {
                let (mut re, mut im) = (0f64, 0f64);
                for n in 0..8 {
                    let a = -2.0 * std::f64::consts::PI * (k * n) as f64 / 8.0;
                    re += padded[t * 3 + n] * w[n] * a.cos();
                    im += padded[t * 3 + n] * w[n] * a.sin();
                }
                let want = re * re + im * im;
                assert!((out[k * 4 + t] - want).abs() < 1e-12, "{k},{t}");
            }
        }
    }

    #[test]
    fn normalised_has_zero_mean_and_unit_deviation() {
        let a: Vec<f32> = (0..600).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..600).map(|i| (i as f32 * 0.011).cos() * 0.2).collect();
        let s = PowerSpectrogram::new(64, 17, None).unwrap();
        let v = s.normalised(&[&a, &b]);
        assert_eq!(v.len(), 2 * 33 * s.frames(600));
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
        // Silence: every value equal, normalised to zeros (no division by zero).
        assert!(s.normalised(&[&[0.0; 100]]).iter().all(|&x| x == 0.0));
    }

    #[test]
    fn frames_follow_librosa() {
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let f = frames(&x, 4, 3).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[2], &[6.0, 7.0, 8.0, 9.0]);
        assert!(frames(&x, 11, 1).is_none() && frames(&x, 4, 0).is_none());
        assert_eq!(frames(&x, 10, 5).unwrap().len(), 1);
    }

    #[test]
    fn bad_windows_are_errors() {
        assert!(PowerSpectrogram::new(8, 2, Some(&[1.0; 7])).is_err());
        assert!(PowerSpectrogram::new(8, 2, Some(&[f32::NAN; 8])).is_err());
        assert!(PowerSpectrogram::new(1, 2, None).is_err());
        assert!(PowerSpectrogram::new(8, 0, None).is_err());
    }
}
