//! The hyper-parameters of Wav2CLIP's audio encoder. The `wav2clip` package hard-codes them
//! (`ResNet`: `Spectrogram(n_fft=512, hop_length=353)`, `BasicBlock` `[2, 2, 2, 2]`;
//! `ResNetExtractor`: `mlp_layers_units=[512, 512, 512]`; 16 kHz input, the rate it was trained
//! on), so the released checkpoint has no config file: [`Wav2ClipConfig::default`] is that
//! model. A `config.json` with the same keys describes variants.

use crate::error::EvalError;
use serde::{Deserialize, Serialize};
use sonic_core::config::{check_limit, check_limits, limits, unsupported};
use std::path::Path;

/// The width of the ResNet's output (its last stage), fixed by the package's `ResNet` class.
pub const RESNET_WIDTH: usize = 512;
/// The channels of the ResNet's four stages (64, 128, 256, 512), fixed by the package.
pub const STAGE_WIDTHS: [usize; 4] = [64, 128, 256, RESNET_WIDTH];
/// The largest FFT size accepted (the package uses 512).
pub const MAX_N_FFT: usize = 1 << 14;
/// The highest sample rate accepted.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Wav2CLIP's hyper-parameters (`config.json`; every key optional, defaults = the package).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wav2ClipConfig {
    /// Sample rate the model expects, in Hz (16000).
    #[serde(default = "sample_rate")]
    pub sample_rate: u32,
    /// FFT size = window length of the spectrogram (512).
    #[serde(default = "n_fft")]
    pub n_fft: usize,
    /// Hop between spectrogram frames (353).
    #[serde(default = "hop_length")]
    pub hop_length: usize,
    /// `BasicBlock`s per ResNet stage (`[2, 2, 2, 2]`, ResNet-18).
    #[serde(default = "layers")]
    pub layers: Vec<usize>,
    /// Widths of `audio_transform` (`MLPLayers(units)`): its first entry is the ResNet's
    /// width (512), its last the embedding's (`[512, 512, 512]`).
    #[serde(default = "mlp_units")]
    pub mlp_units: Vec<usize>,
}

fn sample_rate() -> u32 {
    16_000
}
fn n_fft() -> usize {
    512
}
fn hop_length() -> usize {
    353
}
fn layers() -> Vec<usize> {
    vec![2; 4]
}
fn mlp_units() -> Vec<usize> {
    vec![RESNET_WIDTH; 3]
}

impl Default for Wav2ClipConfig {
    fn default() -> Self {
        Self {
            sample_rate: sample_rate(),
            n_fft: n_fft(),
            hop_length: hop_length(),
            layers: layers(),
            mlp_units: mlp_units(),
        }
    }
}

impl Wav2ClipConfig {
    /// Reads and validates a `config.json` (unknown keys are ignored).
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let config: Self = sonic_core::config::read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects what the model cannot be (errors name `origin`, the key and the value).
    pub fn validate(&self, origin: &Path) -> Result<(), EvalError> {
        let bad = |key: &str, value: &dyn erased::Value, reason: &str| -> EvalError {
            unsupported(origin, key, value.json(), reason).into()
        };
        if self.sample_rate == 0 || self.sample_rate > MAX_SAMPLE_RATE {
            return Err(bad(
                "sample_rate",
                &self.sample_rate,
                &format!("must be 1..={MAX_SAMPLE_RATE} Hz"),
            ));
        }
        if !(2..=MAX_N_FFT).contains(&self.n_fft) {
            return Err(bad(
                "n_fft",
                &self.n_fft,
                &format!("must be 2..={MAX_N_FFT}"),
            ));
        }
        if self.hop_length == 0 {
            return Err(bad("hop_length", &self.hop_length, "must be positive"));
        }
        check_limit(origin, "hop_length", self.hop_length, limits::MAX_WIDTH)?;
        if self.layers.len() != STAGE_WIDTHS.len() || self.layers.contains(&0) {
            return Err(bad(
                "layers",
                &self.layers,
                "needs 4 stages of at least one BasicBlock",
            ));
        }
        check_limits(origin, "layers", &self.layers, limits::MAX_LAYERS)?;
        if self.mlp_units.first() != Some(&RESNET_WIDTH) || self.mlp_units.len() > 64 {
            return Err(bad(
                "mlp_units",
                &self.mlp_units,
                &format!("needs 1 to 64 widths starting with the ResNet's {RESNET_WIDTH}"),
            ));
        }
        if self.mlp_units.contains(&0) {
            return Err(bad("mlp_units", &self.mlp_units, "widths must be positive"));
        }
        check_limits(origin, "mlp_units", &self.mlp_units, limits::MAX_WIDTH)?;
        Ok(())
    }

    /// The embedding width (the last of [`Self::mlp_units`]; 512).
    pub fn embedding_dim(&self) -> usize {
        self.mlp_units.last().copied().unwrap_or(RESNET_WIDTH)
    }

    /// Frequency bins of the spectrogram (`n_fft / 2 + 1`; 257).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// The fewest samples one clip (or frame) may have: torch's reflect padding of
    /// `n_fft / 2` needs more samples than that (257).
    pub fn min_samples(&self) -> usize {
        self.n_fft / 2 + 1
    }
}

/// Values that serialise to JSON for error messages.
mod erased {
    /// A config value, shown as JSON in an error.
    pub trait Value {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Value for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_package() {
        let c: Wav2ClipConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Wav2ClipConfig::default());
        c.validate(Path::new("config.json")).unwrap();
        assert_eq!(
            (c.bins(), c.min_samples(), c.embedding_dim()),
            (257, 257, 512)
        );
    }

    #[test]
    fn bad_values_name_file_and_key() {
        let cases = [
            (serde_json::json!({"sample_rate": 0}), "sample_rate"),
            (serde_json::json!({"n_fft": 1}), "n_fft"),
            (serde_json::json!({"hop_length": 0}), "hop_length"),
            (serde_json::json!({"layers": [2, 2, 2]}), "layers"),
            (serde_json::json!({"layers": [2, 0, 2, 2]}), "layers"),
            (serde_json::json!({"layers": [2, 2, 2, 100000]}), "layers"),
            (serde_json::json!({"mlp_units": [256, 512]}), "mlp_units"),
            (serde_json::json!({"mlp_units": [512, 0]}), "mlp_units"),
            (serde_json::json!({"mlp_units": []}), "mlp_units"),
        ];
        for (json, key) in cases {
            let c: Wav2ClipConfig = serde_json::from_value(json).unwrap();
            let msg = c
                .validate(Path::new("w/config.json"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key) && msg.contains("w/config.json"), "{msg}");
        }
    }
}
