//! The audio front-end settings of a CLAP audio encoder (sample rate, clip length, STFT and
//! mel parameters). Network sizes are not here: they are read from the weights
//! ([`crate::model::ClapSizes`]).

use crate::error::{AudioError, Result};
use serde::Deserialize;
use std::path::Path;

/// The longest clip the encoder accepts: 2^27 samples (about 50 minutes at 44.1 kHz).
pub const MAX_CLIP_SAMPLES: usize = 1 << 27;

/// Front-end settings; [`Default`] is MS-CLAP 2022 as used by SonicDiffusion.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClapAudioConfig {
    /// The rate every clip is resampled to (44100).
    #[serde(alias = "sampling_rate")]
    pub sample_rate: u32,
    /// Samples per clip after fitting (441000 = 10 s at 44100 Hz).
    pub clip_samples: usize,
    /// STFT window and FFT size (1024).
    pub window_size: usize,
    /// STFT hop (320).
    pub hop_size: usize,
    /// Mel bins (64).
    pub mel_bins: usize,
    /// Lowest mel frequency in Hz (50).
    pub fmin: f64,
    /// Highest mel frequency in Hz (14000).
    pub fmax: f64,
}

impl Default for ClapAudioConfig {
    fn default() -> Self {
        Self {
            sample_rate: 44100,
            clip_samples: 441_000,
            window_size: 1024,
            hop_size: 320,
            mel_bins: 64,
            fmin: 50.0,
            fmax: 14000.0,
        }
    }
}

#[derive(Deserialize)]
struct Wrapper {
    clap: Option<serde_json::Value>,
    duration: Option<f64>,
}

impl ClapAudioConfig {
    /// Reads a JSON config: either these fields at the top level or under a `clap` object
    /// (as the sonic fixtures' `config.json`). Missing fields keep their defaults; a
    /// `duration` in seconds without `clip_samples` gives `clip_samples = duration * rate`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let value: serde_json::Value = sonic_core::config::read_json_lenient(path)?;
        let wrapper: Wrapper = sonic_core::config::from_value(&value, path)?;
        let inner = wrapper.clap.unwrap_or(value);
        let mut cfg: ClapAudioConfig = sonic_core::config::from_value(&inner, path)?;
        let has_clip = inner.get("clip_samples").is_some();
        let duration = inner
            .get("duration")
            .and_then(|d| d.as_f64())
            .or(wrapper.duration);
        if let (false, Some(d)) = (has_clip, duration) {
            cfg.clip_samples = (d * cfg.sample_rate as f64).round() as usize;
        }
        cfg.validate().map_err(|reason| AudioError::BadInput {
            what: format!("config {}", path.display()),
            reason,
        })?;
        Ok(cfg)
    }

    /// Checks that the settings describe a computable front end.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.sample_rate == 0 || self.window_size < 2 || self.hop_size == 0 || self.mel_bins == 0
        {
            return Err(format!("sizes must be positive: {self:?}"));
        }
        if self.clip_samples > MAX_CLIP_SAMPLES {
            return Err(format!(
                "clip_samples {} exceeds {MAX_CLIP_SAMPLES}",
                self.clip_samples
            ));
        }
        if self.clip_samples <= self.window_size / 2 {
            return Err(format!(
                "clip_samples {} must exceed window_size / 2 = {} (reflect padding)",
                self.clip_samples,
                self.window_size / 2
            ));
        }
        if !(self.fmin >= 0.0 && self.fmax > self.fmin) {
            return Err(format!(
                "need 0 <= fmin < fmax, got {} / {}",
                self.fmin, self.fmax
            ));
        }
        Ok(())
    }
}
