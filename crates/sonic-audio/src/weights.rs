//! Reading CLAP checkpoints: the official `CLAP_weights_2022.pth` torch pickle (tensors under
//! its `model` dict) or a safetensors file with the same keys, through
//! [`sonic_core::checkpoint::Checkpoint`].
//!
//! The audio tower's state dict is found by its first convolution
//! (`base.conv_block1.conv1.weight`): its prefix (`model.audio_encoder.`, `audio_encoder.` or
//! nothing) is cut, and `caption_encoder.*` and `logit_scale` lie outside it, ignored before any
//! byte of them is read. Of the audio tower's keys, `*.num_batches_tracked` are unused at
//! inference, the torchlibrosa constants (`base.spectrogram_extractor.stft.conv_{real,imag}.weight`,
//! `base.logmel_extractor.melW`) feed the front end, and everything else must match
//! [`ClapAudioModel`] name for name and shape for shape; mismatches are
//! [`sonic_core::CoreError`]s naming the file and key as the file spells it.

use crate::error::{AudioError, Result};
use crate::model::{ClapAudioModel, ClapSizes};
use sonic_core::CoreError;
use sonic_core::checkpoint::{Checkpoint, CheckpointFormat};
use sonic_core::weights::LoadOptions;
use std::path::Path;

/// The prefix of the audio tower in a full CLAP state dict.
pub const AUDIO_PREFIX: &str = "audio_encoder.";
/// Key of the STFT real kernel (under [`AUDIO_PREFIX`]).
pub const KEY_STFT_REAL: &str = "base.spectrogram_extractor.stft.conv_real.weight";
/// Key of the STFT imaginary kernel (under [`AUDIO_PREFIX`]).
pub const KEY_STFT_IMAG: &str = "base.spectrogram_extractor.stft.conv_imag.weight";
/// Key of the mel filter bank (under [`AUDIO_PREFIX`]).
pub const KEY_MEL_W: &str = "base.logmel_extractor.melW";
/// The anchor of the audio tower's state dict (see [`Checkpoint::open_anchored`]).
const ANCHOR: &str = r"base\.conv_block1\.conv1\.weight";
/// The largest layer width accepted from a file's shapes (Cnn14's widest is 2048): the model is
/// built from them before its weights are checked, and batch-norm statistics are allocated.
const MAX_WIDTH: usize = 1 << 16;

/// The audio-encoder tensors of a checkpoint, indexed but not yet read.
#[derive(Debug)]
pub struct ClapCheckpoint {
    file: Checkpoint,
}

impl ClapCheckpoint {
    /// Indexes the audio-encoder tensors of `path` (safetensors or torch pickle, detected from
    /// the bytes), wherever the audio tower's state dict sits in it.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = Checkpoint::open_anchored(path, ANCHOR)?;
        file.retain(|k| k.starts_with("base.") || k.starts_with("projection."));
        let prefix = file.prefix();
        if !(prefix.is_empty() || prefix.ends_with(AUDIO_PREFIX)) {
            return Err(AudioError::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "the Cnn14 tensors sit under `{prefix}`, not under `{AUDIO_PREFIX}` (is this a CLAP checkpoint?)"
                ),
            });
        }
        if file.shape("base.conv_block1.conv1.weight").is_none() {
            return Err(AudioError::Checkpoint {
                path: path.to_path_buf(),
                message: "no `audio_encoder.base.conv_block1.conv1.weight` under any prefix (is this a CLAP checkpoint?)".into(),
            });
        }
        Ok(Self { file })
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The detected format.
    pub fn format(&self) -> CheckpointFormat {
        self.file.format()
    }

    /// The shape of `key` (without the audio tower's prefix), if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.file.shape(key)
    }

    fn require_dim(&self, key: &str, dim: usize) -> Result<usize> {
        let shape = self.shape(key).ok_or_else(|| CoreError::MissingTensor {
            path: self.path().to_path_buf(),
            key: self.file.file_key(key),
            expected: vec![],
        })?;
        shape
            .get(dim)
            .copied()
            .ok_or_else(|| AudioError::Checkpoint {
                path: self.path().to_path_buf(),
                message: format!("`{}` has shape {shape:?}", self.file.file_key(key)),
            })
    }

    /// The network sizes, read from the tensor shapes (every shape is checked when the
    /// weights are loaded, before any weight is allocated).
    pub fn sizes(&self) -> Result<ClapSizes> {
        let mut widths = [0usize; 6];
        for (i, w) in widths.iter_mut().enumerate() {
            *w = self.require_dim(&format!("base.conv_block{}.conv1.weight", i + 1), 0)?;
        }
        let classes = match self.shape("base.fc_audioset.weight") {
            Some(_) => Some(self.require_dim("base.fc_audioset.weight", 0)?),
            None => None,
        };
        let sizes = ClapSizes {
            mel_bins: self.require_dim("base.bn0.weight", 0)?,
            widths,
            out_emb: self.require_dim("base.fc1.weight", 0)?,
            classes,
            d_proj: self.require_dim("projection.linear1.weight", 0)?,
        };
        let all = [
            sizes.mel_bins,
            sizes.out_emb,
            sizes.d_proj,
            classes.unwrap_or(1),
        ];
        if all.iter().chain(&widths).any(|&d| d == 0 || d > MAX_WIDTH) {
            return Err(AudioError::Checkpoint {
                path: self.path().to_path_buf(),
                message: format!("layer sizes out of range (1..={MAX_WIDTH}) in {sizes:?}"),
            });
        }
        Ok(sizes)
    }

    /// Reads a front-end constant (`KEY_STFT_REAL`, `KEY_STFT_IMAG`, `KEY_MEL_W`) as `f32`
    /// with its shape; `None` when the checkpoint does not store it.
    pub fn read_f32(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        Ok(self.file.read_f32(key)?)
    }

    /// Checks names and shapes against `model` and loads every model tensor into it (cast to
    /// `f32`).
    pub fn load_into(&self, model: ClapAudioModel) -> Result<ClapAudioModel> {
        let exact = |k: &str| format!("^{}$", k.replace('.', r"\."));
        let options = LoadOptions {
            ignore: vec![
                r"num_batches_tracked$".into(),
                exact(KEY_STFT_REAL),
                exact(KEY_STFT_IMAG),
                exact(KEY_MEL_W),
            ],
            ..Default::default()
        };
        Ok(self.file.load_into(model, &options)?)
    }
}
