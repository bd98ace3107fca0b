//! Reading CLAP checkpoints: the official `CLAP_weights_2022.pth` torch pickle (tensors under
//! its `model` dict) or a safetensors file with the same keys.
//!
//! Only keys under `audio_encoder.` are looked at (`caption_encoder.*` and `logit_scale` are
//! dropped before any byte of them is read: both readers are lazy). Of those,
//! `*.num_batches_tracked` are unused at inference, the torchlibrosa constants
//! (`base.spectrogram_extractor.stft.conv_{real,imag}.weight`, `base.logmel_extractor.melW`)
//! feed the front end, and everything else must match [`ClapAudioModel`] name for name and
//! shape for shape; mismatches are [`sonic_core::CoreError`]s naming the file and key.

use crate::error::{AudioError, Result};
use crate::model::{ClapAudioModel, ClapSizes};
use burn::store::pytorch_reader::{PytorchError, PytorchReader};
use burn::store::{
    ChainAdapter, FloatCastAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    SafetensorsStore, bridge,
};
use burn::tensor::DType;
use sonic_core::CoreError;
use sonic_core::weights::{check_finite, check_tensors, expected_tensors};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

type PackTensor = burn::store::burn_pack::Tensor;

/// The prefix of the audio tower in a full CLAP state dict.
pub const AUDIO_PREFIX: &str = "audio_encoder.";
/// Key of the STFT real kernel (under [`AUDIO_PREFIX`]).
pub const KEY_STFT_REAL: &str = "base.spectrogram_extractor.stft.conv_real.weight";
/// Key of the STFT imaginary kernel (under [`AUDIO_PREFIX`]).
pub const KEY_STFT_IMAG: &str = "base.spectrogram_extractor.stft.conv_imag.weight";
/// Key of the mel filter bank (under [`AUDIO_PREFIX`]).
pub const KEY_MEL_W: &str = "base.logmel_extractor.melW";

/// The on-disk format of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A torch pickle (`torch.save`: ZIP, legacy or plain pickle), read by burn-store's
    /// PyTorch reader without executing it.
    Pytorch,
}

/// The audio-encoder tensors of a checkpoint, indexed but not yet read.
pub struct ClapCheckpoint {
    path: PathBuf,
    format: CheckpointFormat,
    /// The prefix the file's keys carry (`audio_encoder.` or nothing).
    prefix: &'static str,
    /// Keys without the prefix.
    tensors: BTreeMap<String, PackTensor>,
}

impl std::fmt::Debug for ClapCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClapCheckpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn weights_error(path: &Path, message: impl Into<String>) -> AudioError {
    AudioError::Core(CoreError::WeightsFile {
        path: path.to_path_buf(),
        message: message.into(),
    })
}

/// Detects the format from the first bytes: safetensors starts with a little-endian header
/// length followed by `{`; anything else is treated as a torch pickle.
fn detect_format(path: &Path) -> Result<CheckpointFormat> {
    let io = |source| {
        AudioError::Core(CoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    if path.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        )));
    }
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; 9];
    let mut got = 0;
    while got < head.len() {
        let n = f.read(&mut head[got..]).map_err(io)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got == 0 {
        return Err(weights_error(path, "file is empty"));
    }
    if got == 9 && head[8] == b'{' {
        Ok(CheckpointFormat::Safetensors)
    } else {
        Ok(CheckpointFormat::Pytorch)
    }
}

fn is_frontend_key(k: &str) -> bool {
    k == KEY_STFT_REAL || k == KEY_STFT_IMAG || k == KEY_MEL_W
}

impl ClapCheckpoint {
    /// Indexes the audio-encoder tensors of `path` (safetensors or torch pickle, detected from
    /// the bytes). For pickles, the tensors are taken from the top-level `model` dict when
    /// there is one (the official checkpoint), else from the root dict.
    pub fn open(path: &Path) -> Result<Self> {
        let format = detect_format(path)?;
        let all: Vec<(String, PackTensor)> = match format {
            CheckpointFormat::Safetensors => {
                sonic_core::weights::read_safetensors_header(path)?;
                let mut store = SafetensorsStore::from_file(path);
                let map = store
                    .get_all_tensors()
                    .map_err(|e| weights_error(path, e.to_string()))?;
                map.iter()
                    .filter(|(k, _)| k.starts_with(AUDIO_PREFIX) || !k.contains("encoder"))
                    .map(|(k, t)| (k.clone(), t.clone()))
                    .collect()
            }
            CheckpointFormat::Pytorch => {
                let reader = match PytorchReader::with_top_level_key(path, "model") {
                    Ok(r) => r,
                    Err(PytorchError::KeyNotFound(_)) | Err(PytorchError::InvalidFormat(_)) => {
                        PytorchReader::new(path)
                            .map_err(|e| weights_error(path, format!("torch pickle: {e}")))?
                    }
                    Err(e) => return Err(weights_error(path, format!("torch pickle: {e}"))),
                };
                reader
                    .into_tensors()
                    .into_iter()
                    // Drop the text tower and everything else before any byte is read.
                    .filter(|(k, _)| k.starts_with(AUDIO_PREFIX) || !k.contains("encoder"))
                    .map(|(k, t)| (k, bridge::from_pytorch(t)))
                    .collect()
            }
        };
        let has_prefix = all.iter().any(|(k, _)| k.starts_with(AUDIO_PREFIX));
        let mut tensors = BTreeMap::new();
        for (key, mut t) in all {
            let stripped = if has_prefix {
                match key.strip_prefix(AUDIO_PREFIX) {
                    Some(s) => s.to_string(),
                    None => continue, // logit_scale and other non-audio entries
                }
            } else if key.starts_with("base.") || key.starts_with("projection.") {
                key.clone()
            } else {
                continue;
            };
            t.name = stripped.clone();
            tensors.insert(stripped, t);
        }
        if tensors.is_empty() {
            return Err(AudioError::Checkpoint {
                path: path.to_path_buf(),
                message: "no `audio_encoder.*` tensors (is this a CLAP checkpoint?)".into(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            prefix: if has_prefix { AUDIO_PREFIX } else { "" },
            tensors,
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected format.
    pub fn format(&self) -> CheckpointFormat {
        self.format
    }

    /// The shape of `key` (without the `audio_encoder.` prefix), if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.tensors.get(key).map(|t| t.shape.to_vec())
    }

    fn require_dim(&self, key: &str, dim: usize) -> Result<usize> {
        let shape = self.shape(key).ok_or_else(|| CoreError::MissingTensor {
            path: self.path.clone(),
            key: self.full_key(key),
            expected: vec![],
        })?;
        shape
            .get(dim)
            .copied()
            .ok_or_else(|| AudioError::Checkpoint {
                path: self.path.clone(),
                message: format!("`{}{key}` has shape {shape:?}", self.prefix),
            })
    }

    /// The network sizes, read from the tensor shapes.
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
        if all.iter().chain(&widths).any(|&d| d == 0) {
            return Err(AudioError::Checkpoint {
                path: self.path.clone(),
                message: format!("zero-sized layer in {sizes:?}"),
            });
        }
        // Check every model tensor against the file before anything is allocated, so that a
        // file declaring absurd sizes is refused instead of exhausting memory.
        let mut found = BTreeMap::new();
        for (key, t) in &self.tensors {
            if !key.ends_with("num_batches_tracked") && !is_frontend_key(key) {
                found.insert(key.clone(), t.shape.to_vec());
            }
        }
        check_tensors(&self.path, &expected_shapes(&sizes), &found)
            .map_err(|e| prefix_key(e, self.prefix))?;
        Ok(sizes)
    }

    /// Reads a front-end constant (`KEY_STFT_REAL`, `KEY_STFT_IMAG`, `KEY_MEL_W`) as `f32`
    /// with its shape; `None` when the checkpoint does not store it.
    pub fn read_f32(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.tensors.get(key) else {
            return Ok(None);
        };
        let data = bridge::to_data(t).map_err(|e| {
            weights_error(
                &self.path,
                format!("cannot read `{}{key}`: {e}", self.prefix),
            )
        })?;
        let shape = data.shape().to_vec();
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| weights_error(&self.path, format!("`{}{key}`: {e:?}", self.prefix)))?;
        Ok(Some((shape, values)))
    }

    /// Checks names and shapes against `model` and loads every model tensor into it (cast to
    /// `f32`).
    pub fn load_into(&self, model: ClapAudioModel) -> Result<ClapAudioModel> {
        let mut found = BTreeMap::new();
        let mut apply = Vec::new();
        for (key, t) in &self.tensors {
            if key.ends_with("num_batches_tracked") || is_frontend_key(key) {
                continue;
            }
            if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
                return Err(CoreError::UnsupportedDtype {
                    path: self.path.clone(),
                    key: self.full_key(key),
                    dtype: format!("{:?}", t.dtype),
                }
                .into());
            }
            found.insert(key.clone(), t.shape.to_vec());
            apply.push(t.clone());
        }
        let expected = expected_tensors(&model);
        check_tensors(&self.path, &expected, &found).map_err(|e| prefix_key(e, self.prefix))?;
        let mut model = model;
        let result = model.apply(
            apply,
            None,
            Some(Box::new(ChainAdapter::new(
                PyTorchToBurnAdapter,
                FloatCastAdapter::to(DType::F32),
            ))),
            true,
        );
        if let Some(err) = result.errors.first() {
            return Err(weights_error(&self.path, err.to_string()));
        }
        if let Some((missing, _)) = result.missing.first() {
            return Err(CoreError::MissingTensor {
                path: self.path.clone(),
                key: self.full_key(missing),
                expected: expected.get(missing).cloned().unwrap_or_default(),
            }
            .into());
        }
        check_finite(
            &model,
            &self.path,
            &|name| expected.contains_key(name),
            &|name| self.full_key(name),
        )?;
        tracing::debug!(
            file = %self.path.display(),
            applied = result.applied.len(),
            "loaded CLAP audio encoder weights"
        );
        Ok(model)
    }
}

/// The tensors (PyTorch names and shapes) of a CLAP audio encoder of the given sizes.
pub fn expected_shapes(sizes: &ClapSizes) -> BTreeMap<String, Vec<usize>> {
    let mut m = BTreeMap::new();
    let bn = |m: &mut BTreeMap<String, Vec<usize>>, prefix: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            m.insert(format!("{prefix}.{p}"), vec![c]);
        }
    };
    bn(&mut m, "base.bn0", sizes.mel_bins);
    let mut c_in = 1;
    for (i, &w) in sizes.widths.iter().enumerate() {
        let b = format!("base.conv_block{}", i + 1);
        m.insert(format!("{b}.conv1.weight"), vec![w, c_in, 3, 3]);
        m.insert(format!("{b}.conv2.weight"), vec![w, w, 3, 3]);
        bn(&mut m, &format!("{b}.bn1"), w);
        bn(&mut m, &format!("{b}.bn2"), w);
        c_in = w;
    }
    m.insert("base.fc1.weight".into(), vec![sizes.out_emb, c_in]);
    m.insert("base.fc1.bias".into(), vec![sizes.out_emb]);
    if let Some(c) = sizes.classes {
        m.insert("base.fc_audioset.weight".into(), vec![c, sizes.out_emb]);
        m.insert("base.fc_audioset.bias".into(), vec![c]);
    }
    m.insert(
        "projection.linear1.weight".into(),
        vec![sizes.d_proj, sizes.out_emb],
    );
    m.insert(
        "projection.linear2.weight".into(),
        vec![sizes.d_proj, sizes.d_proj],
    );
    m.insert("projection.layer_norm.weight".into(), vec![sizes.d_proj]);
    m.insert("projection.layer_norm.bias".into(), vec![sizes.d_proj]);
    m
}

/// Puts the `audio_encoder.` prefix back on the key of a name/shape error, so that it names
/// the key as the file spells it.
fn prefix_key(e: CoreError, prefix: &str) -> CoreError {
    match e {
        CoreError::MissingTensor {
            path,
            key,
            expected,
        } => CoreError::MissingTensor {
            path,
            key: format!("{prefix}{key}"),
            expected,
        },
        CoreError::UnexpectedTensor { path, key, found } => CoreError::UnexpectedTensor {
            path,
            key: format!("{prefix}{key}"),
            found,
        },
        CoreError::ShapeMismatch {
            path,
            key,
            expected,
            found,
        } => CoreError::ShapeMismatch {
            path,
            key: format!("{prefix}{key}"),
            expected,
            found,
        },
        other => other,
    }
}
