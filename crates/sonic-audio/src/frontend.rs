//! The torchlibrosa front end of msclap's Cnn14: STFT power spectrogram as a strided
//! convolution with DFT kernels, slaney mel filter bank, and decibels.
//!
//! - `Spectrogram(n_fft, hop, window='hann', center=True, pad_mode='reflect')`: the input is
//!   reflect-padded by `n_fft / 2` on both sides and convolved (stride `hop`) with
//!   `conv_real.weight[k, 0, n] = cos(2 pi k n / N) w[n]` and
//!   `conv_imag.weight[k, 0, n] = -sin(2 pi k n / N) w[n]`, `w` the periodic Hann window
//!   (scipy's `get_window('hann', N, fftbins=True)`); power = real² + imag².
//! - `LogmelFilterBank`: `spec @ melW` with `melW = librosa.filters.mel(sr, n_fft, n_mels,
//!   fmin, fmax).T` (slaney scale and norm), then `10 log10(max(x, 1e-10))` (ref 1, no top_db).
//!
//! Checkpoints normally store the kernels and `melW`; when they do not, [`stft_kernels`] and
//! [`mel_filter_bank`] compute them as torchlibrosa/librosa do (in float64, rounded to float32
//! the way numpy does).

use crate::error::{AudioError, Result};
use burn::tensor::module::conv1d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData};

/// `amin` of torchlibrosa's `power_to_db`.
pub const AMIN: f64 = 1e-10;

/// numpy's `linspace(start, stop, num)` (endpoint included).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return vec![];
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// scipy's periodic Hann window of length `n` (`get_window('hann', n, fftbins=True)`).
pub fn hann_periodic(n: usize) -> Vec<f64> {
    let fac = linspace(-std::f64::consts::PI, std::f64::consts::PI, n + 1);
    fac[..n].iter().map(|f| 0.5 + 0.5 * f.cos()).collect()
}

/// torchlibrosa's STFT kernels for `n_fft`: `(real, imag)`, each `[n_fft / 2 + 1, n_fft]`
/// row-major (PyTorch's `[out, 1, n_fft]` without the unit axis), rounded to `f32`.
pub fn stft_kernels(n_fft: usize) -> (Vec<f32>, Vec<f32>) {
    let bins = n_fft / 2 + 1;
    let w = hann_periodic(n_fft);
    let mut re = Vec::with_capacity(bins * n_fft);
    let mut im = Vec::with_capacity(bins * n_fft);
    for k in 0..bins {
        for (n, wn) in w.iter().enumerate() {
            let phase = ((k * n) % n_fft) as f64 / n_fft as f64;
            let theta = -2.0 * std::f64::consts::PI * phase;
            re.push((theta.cos() * wn) as f32);
            im.push((theta.sin() * wn) as f32);
        }
    }
    (re, im)
}

fn hz_to_mel_slaney(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz_slaney(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa's `filters.mel(sr, n_fft, n_mels, fmin, fmax)` (slaney scale, slaney norm,
/// float32 output), transposed as torchlibrosa stores it: `[n_fft / 2 + 1, n_mels]`
/// row-major.
pub fn mel_filter_bank(sr: f64, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    // np.fft.rfftfreq(n_fft, d=1/sr)
    let val = 1.0 / (n_fft as f64 * (1.0 / sr));
    let fftfreqs: Vec<f64> = (0..bins).map(|i| i as f64 * val).collect();
    let mels = linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2);
    let mel_f: Vec<f64> = mels.iter().map(|&m| mel_to_hz_slaney(m)).collect();
    let fdiff: Vec<f64> = mel_f.windows(2).map(|w| w[1] - w[0]).collect();
    let mut out = vec![0f32; bins * n_mels];
    for i in 0..n_mels {
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[i] - f) / fdiff[i];
            let upper = (mel_f[i + 2] - f) / fdiff[i + 1];
            // numpy: the row is stored as float32, then multiplied by enorm in float64.
            let w = (lower.min(upper)).max(0.0) as f32;
            out[k * n_mels + i] = (w as f64 * enorm) as f32;
        }
    }
    out
}

/// The log-mel front end on a device: STFT kernels `[2F, 1, n_fft]` (real rows, then
/// imaginary rows) and `melW` `[F, M]`.
#[derive(Debug, Clone)]
pub struct LogMelFrontEnd {
    /// FFT size (= window size).
    pub n_fft: usize,
    /// Hop between frames.
    pub hop: usize,
    kernel: Tensor<3>,
    mel_w: Tensor<2>,
}

impl LogMelFrontEnd {
    /// A front end from host constants: `real`/`imag` `[n_fft/2+1, n_fft]` and
    /// `mel_w` `[n_fft/2+1, mel_bins]`, all row-major. Errors when a size is zero or a slice
    /// does not have the length its shape needs.
    pub fn new(
        n_fft: usize,
        hop: usize,
        real: &[f32],
        imag: &[f32],
        mel_w: &[f32],
        mel_bins: usize,
        device: &Device,
    ) -> Result<Self> {
        let bins = n_fft / 2 + 1;
        if n_fft < 2 || hop == 0 || mel_bins == 0 {
            return Err(AudioError::bad_input(
                "front end",
                format!("n_fft {n_fft}, hop {hop}, mel bins {mel_bins}"),
            ));
        }
        if real.len() != bins * n_fft
            || imag.len() != bins * n_fft
            || mel_w.len() != bins * mel_bins
        {
            return Err(AudioError::bad_input(
                "front end",
                format!(
                    "constants of {} / {} / {} values do not fit n_fft {n_fft} and {mel_bins} mel bins",
                    real.len(),
                    imag.len(),
                    mel_w.len()
                ),
            ));
        }
        let mut k = Vec::with_capacity(2 * bins * n_fft);
        k.extend_from_slice(real);
        k.extend_from_slice(imag);
        let kernel = Tensor::from_data(TensorData::new(k, [2 * bins, 1, n_fft]), device);
        let mel_w = Tensor::from_data(TensorData::new(mel_w.to_vec(), [bins, mel_bins]), device);
        Ok(Self {
            n_fft,
            hop,
            kernel,
            mel_w,
        })
    }

    /// The number of frames for `samples` input samples: `samples / hop + 1`.
    pub fn frames(&self, samples: usize) -> usize {
        samples / self.hop + 1
    }

    /// Power spectrogram `[B, 1, T, n_fft/2+1]` of waveforms `[B, N]` (`N > n_fft / 2`).
    pub fn spectrogram(&self, x: Tensor<2>) -> Tensor<4> {
        let [b, n] = x.dims();
        let pad = self.n_fft / 2;
        let bins = self.n_fft / 2 + 1;
        let x = x
            .reshape([b, 1, n])
            .pad([(0, 0), (0, 0), (pad, pad)], PadMode::Reflect);
        let y = conv1d(
            x,
            self.kernel.clone(),
            None,
            ConvOptions::new([self.hop], [0], [1], 1),
        ); // [B, 2F, T]
        let real = y.clone().narrow(1, 0, bins);
        let imag = y.narrow(1, bins, bins);
        let power = real.square() + imag.square();
        let [_, _, t] = power.dims();
        power.swap_dims(1, 2).reshape([b, 1, t, bins])
    }

    /// `10 log10(max(spec @ melW, 1e-10))`: `[B, 1, T, F] -> [B, 1, T, M]`.
    pub fn logmel(&self, spec: Tensor<4>) -> Tensor<4> {
        let [b, _, t, f] = spec.dims();
        let [_, m] = self.mel_w.dims();
        let mel = spec.reshape([b * t, f]).matmul(self.mel_w.clone());
        let db = mel.clamp_min(AMIN).log() * (10.0 / std::f64::consts::LN_10);
        db.reshape([b, 1, t, m])
    }

    /// Spectrogram then log-mel.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<4> {
        self.logmel(self.spectrogram(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hann_is_periodic() {
        let w = hann_periodic(8);
        assert_eq!(w.len(), 8);
        assert!(w[0].abs() < 1e-15);
        assert!((w[4] - 1.0).abs() < 1e-15);
        assert!((w[2] - 0.5).abs() < 1e-15);
    }

    #[test]
    fn mel_filters_are_slaney_normalised_triangles() {
        let m = mel_filter_bank(44100.0, 1024, 64, 50.0, 14000.0);
        assert_eq!(m.len(), 513 * 64);
        // Every filter has some support and no filter reaches above fmax.
        for i in 0..64 {
            let col: Vec<f32> = (0..513).map(|k| m[k * 64 + i]).collect();
            assert!(col.iter().any(|&v| v > 0.0), "filter {i} is empty");
        }
        let top_bin = (14000.0f64 / (44100.0 / 1024.0)).ceil() as usize + 1;
        for k in top_bin..513 {
            assert!((0..64).all(|i| m[k * 64 + i] == 0.0));
        }
    }
}
