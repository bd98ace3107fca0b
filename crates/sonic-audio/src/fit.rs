//! Fitting a waveform to the encoder's fixed length (10 s = 441000 samples for CLAP 2022).
//!
//! As msclap's `load_audio_into_tensor`: a clip no longer than the target is tile-repeated
//! `ceil(target / len)` times and truncated; a longer clip is cropped to `target` samples at a
//! start the caller chooses ([`CropStart`]). The original draws the start with Python's
//! `random.randrange(len - target)`, i.e. uniformly in `[0, len - target)`; we default to a
//! seeded draw from the same range so that runs are reproducible.

use crate::error::{AudioError, Result};
use rand::{Rng, SeedableRng};

/// Where a clip longer than the target length is cropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CropStart {
    /// A start drawn uniformly from `[0, len - target)` by a ChaCha8 generator seeded with
    /// this value (the same seed and length always give the same start).
    Random {
        /// The seed.
        seed: u64,
    },
    /// Start at this many seconds (at the encoder's sample rate), clamped so the crop fits.
    Seconds(f64),
    /// Start at this sample index, clamped so the crop fits.
    Sample(usize),
    /// The centred crop: `(len - target) / 2`.
    Centre,
}

impl Default for CropStart {
    /// A seeded random start with seed 0.
    fn default() -> Self {
        CropStart::Random { seed: 0 }
    }
}

/// How a clip was fitted (for logs and the parity checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fitted {
    /// Tile-repeated `repeat_factor` times, then truncated.
    Repeat {
        /// `ceil(target / len)`.
        repeat_factor: usize,
    },
    /// Cropped at `start`.
    Crop {
        /// The first kept sample.
        start: usize,
    },
}

/// The start index that `crop` selects for a clip of `len > target` samples at `sample_rate`.
pub fn crop_start(len: usize, target: usize, sample_rate: u32, crop: CropStart) -> usize {
    let room = len.saturating_sub(target);
    if room == 0 {
        return 0;
    }
    match crop {
        CropStart::Random { seed } => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rng.random_range(0..room)
        }
        CropStart::Seconds(s) => {
            let idx = (s.max(0.0) * sample_rate as f64).round();
            if idx.is_finite() {
                (idx as usize).min(room)
            } else {
                0
            }
        }
        CropStart::Sample(i) => i.min(room),
        CropStart::Centre => room / 2,
    }
}

/// Fits `x` to exactly `target` samples (see the module docs); errors on an empty input or a
/// zero target.
pub fn fit_to_length(
    x: &[f32],
    target: usize,
    sample_rate: u32,
    crop: CropStart,
) -> Result<(Vec<f32>, Fitted)> {
    if x.is_empty() {
        return Err(AudioError::bad_input("waveform", "has no samples"));
    }
    if target == 0 {
        return Err(AudioError::bad_input("target length", "is 0"));
    }
    if target >= x.len() {
        let repeat_factor = target.div_ceil(x.len());
        let out: Vec<f32> = x.iter().copied().cycle().take(target).collect();
        Ok((out, Fitted::Repeat { repeat_factor }))
    } else {
        let start = crop_start(x.len(), target, sample_rate, crop);
        Ok((x[start..start + target].to_vec(), Fitted::Crop { start }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_then_truncate() {
        let (y, f) = fit_to_length(&[1.0, 2.0, 3.0], 7, 10, CropStart::default()).unwrap();
        assert_eq!(y, vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
        assert_eq!(f, Fitted::Repeat { repeat_factor: 3 });
        let (y, f) = fit_to_length(&[1.0, 2.0], 2, 10, CropStart::default()).unwrap();
        assert_eq!(y, vec![1.0, 2.0]);
        assert_eq!(f, Fitted::Repeat { repeat_factor: 1 });
    }

    #[test]
    fn crops_where_asked() {
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let (y, _) = fit_to_length(&x, 4, 2, CropStart::Centre).unwrap();
        assert_eq!(y, vec![3.0, 4.0, 5.0, 6.0]);
        let (y, _) = fit_to_length(&x, 4, 2, CropStart::Seconds(1.0)).unwrap();
        assert_eq!(y[0], 2.0);
        let (y, _) = fit_to_length(&x, 4, 2, CropStart::Sample(100)).unwrap();
        assert_eq!(y[0], 6.0);
        let (a, fa) = fit_to_length(&x, 4, 2, CropStart::Random { seed: 7 }).unwrap();
        let (b, fb) = fit_to_length(&x, 4, 2, CropStart::Random { seed: 7 }).unwrap();
        assert_eq!((a, fa), (b, fb));
        let Fitted::Crop { start } = fa else { panic!() };
        assert!(start < 6);
    }

    #[test]
    fn empty_is_an_error() {
        assert!(fit_to_length(&[], 4, 2, CropStart::Centre).is_err());
    }
}
