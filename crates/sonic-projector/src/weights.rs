//! Reading projector weights: the official `audio_projector_*.pth` (a torch state-dict
//! pickle, read by burn-store's PyTorch reader, which parses and never executes it) or a
//! safetensors file with the same keys.
//!
//! The file's keys are the official `Adapter`'s: `audio_emb_projection.<i>.*` (an
//! `nn.Sequential` whose indices mix convolutions, GELUs and LayerNorms),
//! `cross_attention.<i>.to_{q,k,v}_adapter.weight`, `between_attention.<i>.{0,2}.*` and
//! `to_out_adapter.0.*`. [`crate::Projector`]'s fields mirror them one to one except where Rust
//! cannot spell a name (a field cannot be called `0`): [`remaps`] rewrites those (and
//! [`module_to_file_key`] is its inverse, so that errors name keys as the file spells them).
//! A state dict nested under one key (`state_dict`, `model`, `module`, ...) is found by its
//! `to_out_adapter.0.weight` entry; tensors outside it are ignored.
//!
//! Before anything is applied, every key and shape is compared with the projector (see
//! [`WeightsFile::check`]); a file that does not fit gives
//! [`ProjectorError::WeightsMismatch`] listing the first mismatches.

use crate::config::ProjectorConfig;
use crate::error::{MAX_LISTED_MISMATCHES, ProjectorError, Result, WeightMismatch};
use burn::module::Module;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{
    ChainAdapter, FloatCastAdapter, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, bridge,
};
use burn::tensor::DType;
use sonic_core::CoreError;
use sonic_core::weights::{LoadOptions, Remap, check_tensors, expected_tensors};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The on-disk format of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A torch pickle (`torch.save`: ZIP, legacy or plain pickle).
    Pytorch,
}

/// The `nn.Sequential` indices of `audio_emb_projection` that hold weights, and the
/// [`crate::model::AudioEmbProjection`] field of each.
pub const PROJECTION_FIELDS: [(usize, &str); 8] = [
    (0, "conv_0"),
    (2, "conv_2"),
    (4, "norm_4"),
    (5, "conv_5"),
    (7, "norm_7"),
    (8, "conv_transpose_8"),
    (10, "norm_10"),
    (12, "conv_12"),
];

/// The rewrites from the official state-dict keys to [`crate::Projector`]'s module paths
/// (Sequential indices to field names); applied in order to every file key.
pub fn remaps() -> Vec<Remap> {
    let mut r: Vec<Remap> = PROJECTION_FIELDS
        .iter()
        .map(|(i, f)| {
            Remap::new(
                format!(r"^audio_emb_projection\.{i}\."),
                format!("audio_emb_projection.{f}."),
            )
        })
        .collect();
    r.push(Remap::new(
        r"^between_attention\.(\d+)\.0\.",
        "between_attention.$1.linear_0.",
    ));
    r.push(Remap::new(
        r"^between_attention\.(\d+)\.2\.",
        "between_attention.$1.linear_2.",
    ));
    r
}

/// The official state-dict key of a [`crate::Projector`] module path (the inverse of
/// [`remaps`]); paths that need no rewrite are returned unchanged.
pub fn module_to_file_key(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("audio_emb_projection.") {
        for (i, f) in PROJECTION_FIELDS {
            if let Some(tail) = rest.strip_prefix(f).and_then(|t| t.strip_prefix('.')) {
                return format!("audio_emb_projection.{i}.{tail}");
            }
        }
    }
    if let Some(rest) = path.strip_prefix("between_attention.")
        && let Some((idx, tail)) = rest.split_once('.')
    {
        if let Some(t) = tail.strip_prefix("linear_0.") {
            return format!("between_attention.{idx}.0.{t}");
        }
        if let Some(t) = tail.strip_prefix("linear_2.") {
            return format!("between_attention.{idx}.2.{t}");
        }
    }
    path.to_string()
}

/// Reads the string entries of a safetensors file's `__metadata__` (empty when absent).
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    // Validates the header (offsets against the file size) first.
    sonic_core::weights::read_safetensors_header(path)?;
    let bad = |message: String| CoreError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(io)?;
    let n = usize::try_from(u64::from_le_bytes(len)).map_err(|e| bad(e.to_string()))?;
    let mut header = vec![0u8; n];
    file.read_exact(&mut header).map_err(io)?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let mut out = BTreeMap::new();
    if let Some(meta) = json.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in meta {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

/// Detects the format from the first bytes: safetensors starts with a little-endian header
/// length followed by `{`; anything else is treated as a torch pickle.
pub fn detect_format(path: &Path) -> Result<WeightsFormat> {
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ))
        .into());
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
        return Err(CoreError::WeightsFile {
            path: path.to_path_buf(),
            message: "file is empty".into(),
        }
        .into());
    }
    Ok(if got == 9 && head[8] == b'{' {
        WeightsFormat::Safetensors
    } else {
        WeightsFormat::Pytorch
    })
}

/// The key whose position in a nested state dict tells the prefix.
const ANCHOR_KEY: &str = "to_out_adapter.0.weight";

/// A projector weights file, indexed (names, shapes, dtypes) but not yet read.
#[derive(Debug, Clone)]
pub struct WeightsFile {
    path: PathBuf,
    format: WeightsFormat,
    /// The prefix of a nested state dict (`state_dict.`), or empty.
    prefix: String,
    /// Keys (without the prefix) -> shape.
    shapes: BTreeMap<String, Vec<usize>>,
    /// Keys (without the prefix) -> dtype.
    dtypes: BTreeMap<String, DType>,
    /// Full keys outside the prefix (ignored).
    outside: Vec<String>,
}

fn safetensors_dtype(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        _ => return None,
    })
}

impl WeightsFile {
    /// Indexes `path` (format detected from the bytes). No tensor data is read.
    pub fn open(path: &Path) -> Result<Self> {
        let format = detect_format(path)?;
        // full key -> (shape, dtype or the dtype's name when it is not a float)
        let mut all: BTreeMap<String, (Vec<usize>, std::result::Result<DType, String>)> =
            BTreeMap::new();
        match format {
            WeightsFormat::Safetensors => {
                for (k, e) in sonic_core::weights::read_safetensors_header(path)? {
                    let dt = safetensors_dtype(&e.dtype).ok_or(e.dtype.clone());
                    all.insert(k, (e.shape, dt));
                }
            }
            WeightsFormat::Pytorch => {
                let reader = PytorchReader::new(path).map_err(|e| CoreError::WeightsFile {
                    path: path.to_path_buf(),
                    message: format!("torch pickle: {e}"),
                })?;
                for (k, t) in reader.tensors() {
                    let pack = bridge::from_pytorch(t.clone());
                    let dt = if pack.dtype.is_float() {
                        Ok(pack.dtype)
                    } else {
                        Err(format!("{:?}", pack.dtype))
                    };
                    all.insert(k.clone(), (pack.shape.to_vec(), dt));
                }
            }
        }
        let prefix = all
            .keys()
            .filter_map(|k| k.strip_suffix(ANCHOR_KEY))
            .filter(|p| p.is_empty() || p.ends_with('.'))
            .min_by_key(|p| p.len())
            .unwrap_or("")
            .to_string();
        let mut shapes = BTreeMap::new();
        let mut dtypes = BTreeMap::new();
        let mut outside = Vec::new();
        for (key, (shape, dt)) in all {
            let Some(k) = key.strip_prefix(prefix.as_str()) else {
                outside.push(key);
                continue;
            };
            let dt = dt.map_err(|dtype| CoreError::UnsupportedDtype {
                path: path.to_path_buf(),
                key: key.clone(),
                dtype,
            })?;
            shapes.insert(k.to_string(), shape);
            dtypes.insert(k.to_string(), dt);
        }
        if !outside.is_empty() {
            tracing::debug!(
                file = %path.display(),
                prefix = %prefix,
                ignored = outside.len(),
                "tensors outside the projector's state dict are ignored"
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            prefix,
            shapes,
            dtypes,
            outside,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected format.
    pub fn format(&self) -> WeightsFormat {
        self.format
    }

    /// The prefix of a nested state dict (e.g. `state_dict.`), or empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The tensors (keys without the prefix, official naming) and their shapes.
    pub fn shapes(&self) -> &BTreeMap<String, Vec<usize>> {
        &self.shapes
    }

    /// Whether every tensor is float32 (no cast needed).
    pub fn is_f32(&self) -> bool {
        self.dtypes.values().all(|d| *d == DType::F32)
    }

    /// Compares the file's keys and shapes with `expected` (official naming, without the
    /// prefix), e.g. [`ProjectorConfig::expected_shapes`]. Every mismatch is collected (shape
    /// mismatches first, then missing tensors, then unexpected ones, each sorted by key) and
    /// the first [`MAX_LISTED_MISMATCHES`] are returned in
    /// [`ProjectorError::WeightsMismatch`], keys spelt as in the file.
    pub fn check(&self, expected: &BTreeMap<String, Vec<usize>>) -> Result<()> {
        if check_tensors(&self.path, expected, &self.shapes).is_ok() {
            return Ok(());
        }
        let full = |k: &str| format!("{}{k}", self.prefix);
        let mut problems = Vec::new();
        for (k, e) in expected {
            if let Some(f) = self.shapes.get(k)
                && f != e
            {
                problems.push(WeightMismatch {
                    key: full(k),
                    expected: Some(e.clone()),
                    found: Some(f.clone()),
                });
            }
        }
        for (k, e) in expected {
            if !self.shapes.contains_key(k) {
                problems.push(WeightMismatch {
                    key: full(k),
                    expected: Some(e.clone()),
                    found: None,
                });
            }
        }
        for (k, f) in &self.shapes {
            if !expected.contains_key(k) {
                problems.push(WeightMismatch {
                    key: full(k),
                    expected: None,
                    found: Some(f.clone()),
                });
            }
        }
        let total = problems.len();
        problems.truncate(MAX_LISTED_MISMATCHES);
        Err(ProjectorError::WeightsMismatch {
            path: self.path.clone(),
            total,
            first: problems,
        })
    }

    /// Checks the file against `config`'s tensors (before any memory is allocated for the
    /// model).
    pub fn check_config(&self, config: &ProjectorConfig) -> Result<()> {
        self.check(&config.expected_shapes())
    }

    /// The remaps for this file: strip the prefix, then [`remaps`].
    fn all_remaps(&self) -> Vec<Remap> {
        let mut r = Vec::new();
        if !self.prefix.is_empty() {
            r.push(Remap::new(format!("^{}", regex::escape(&self.prefix)), ""));
        }
        r.extend(remaps());
        r
    }

    fn weights_error(&self, message: impl Into<String>) -> ProjectorError {
        CoreError::WeightsFile {
            path: self.path.clone(),
            message: message.into(),
        }
        .into()
    }

    /// Checks names and shapes against `module` and loads every tensor into it (any float
    /// precision is cast to `f32`).
    pub fn load_into<M>(&self, module: M) -> Result<M>
    where
        M: Module + ModuleSnapshot,
    {
        // The module's tensors in the file's naming.
        let expected: BTreeMap<String, Vec<usize>> = expected_tensors(&module)
            .into_iter()
            .map(|(k, s)| (module_to_file_key(&k), s))
            .collect();
        self.check(&expected)?;
        match self.format {
            WeightsFormat::Safetensors => {
                let ignore = self
                    .outside
                    .iter()
                    .map(|k| format!("^{}$", regex::escape(k)))
                    .collect();
                let options = LoadOptions {
                    remaps: self.all_remaps(),
                    ignore,
                    ..Default::default()
                };
                Ok(sonic_core::weights::load_safetensors(
                    module, &self.path, &options,
                )?)
            }
            WeightsFormat::Pytorch => self.load_pytorch(module),
        }
    }

    fn load_pytorch<M>(&self, module: M) -> Result<M>
    where
        M: Module + ModuleSnapshot,
    {
        let mut remapper = KeyRemapper::new();
        for r in self.all_remaps() {
            remapper = remapper
                .add_pattern(&r.pattern, r.replacement.clone())
                .map_err(|e| self.weights_error(format!("bad remap `{}`: {e}", r.pattern)))?;
        }
        let mut module = module;
        let result = if self.is_f32() {
            // The released files: burn-store's PyTorch store does it all.
            let mut store = PytorchStore::from_file(&self.path)
                .remap(remapper)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(false);
            store
                .apply_to(&mut module)
                .map_err(|e| self.weights_error(e.to_string()))?
        } else {
            // Half precision: the same reader and adapter, plus a cast to f32.
            let reader = PytorchReader::new(&self.path)
                .map_err(|e| self.weights_error(format!("torch pickle: {e}")))?;
            let tensors: Vec<_> = reader
                .into_tensors()
                .into_values()
                .map(bridge::from_pytorch)
                .filter(|t| t.name.starts_with(self.prefix.as_str()))
                .collect();
            let (tensors, _) = remapper.remap(tensors);
            module.apply(
                tensors,
                None,
                Some(Box::new(ChainAdapter::new(
                    PyTorchToBurnAdapter,
                    FloatCastAdapter::to(DType::F32),
                ))),
                true,
            )
        };
        if let Some(err) = result.errors.first() {
            return Err(self.weights_error(err.to_string()));
        }
        if let Some((missing, _)) = result.missing.first() {
            let key = format!("{}{}", self.prefix, module_to_file_key(missing));
            return Err(CoreError::MissingTensor {
                path: self.path.clone(),
                expected: self
                    .shapes
                    .get(&module_to_file_key(missing))
                    .cloned()
                    .unwrap_or_default(),
                key,
            }
            .into());
        }
        tracing::debug!(
            file = %self.path.display(),
            applied = result.applied.len(),
            "loaded projector weights (torch pickle)"
        );
        Ok(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(key: &str) -> String {
        let mut k = key.to_string();
        for r in remaps() {
            let re = regex::Regex::new(&r.pattern).unwrap();
            k = re.replace_all(&k, r.replacement.as_str()).into_owned();
        }
        k
    }

    #[test]
    fn remaps_and_inverse_agree_on_every_official_key() {
        for key in ProjectorConfig::official().expected_shapes().keys() {
            let module_path = apply(key);
            assert_eq!(&module_to_file_key(&module_path), key, "{module_path}");
        }
        assert_eq!(
            apply("audio_emb_projection.10.weight"),
            "audio_emb_projection.norm_10.weight"
        );
        assert_eq!(
            apply("audio_emb_projection.1.weight"),
            "audio_emb_projection.1.weight"
        );
        assert_eq!(
            apply("between_attention.3.2.bias"),
            "between_attention.3.linear_2.bias"
        );
        assert_eq!(apply("to_out_adapter.0.bias"), "to_out_adapter.0.bias");
        assert_eq!(
            apply("cross_attention.2.to_k_adapter.weight"),
            "cross_attention.2.to_k_adapter.weight"
        );
    }

    #[test]
    fn mismatch_display_lists_keys_and_shapes() {
        let m = WeightMismatch {
            key: "a".into(),
            expected: Some(vec![2]),
            found: Some(vec![3]),
        };
        assert_eq!(m.to_string(), "`a`: expected [2], file has [3]");
        let e = ProjectorError::WeightsMismatch {
            path: "w.pth".into(),
            total: 2,
            first: vec![
                m,
                WeightMismatch {
                    key: "b".into(),
                    expected: None,
                    found: Some(vec![1]),
                },
            ],
        };
        let s = e.to_string();
        assert!(
            s.contains("w.pth") && s.contains("2 mismatch") && s.contains("`b`: unexpected"),
            "{s}"
        );
    }
}
