//! One reader for every weights file of the workspace: [`Checkpoint`].
//!
//! The SD parts (`*.safetensors` of a diffusers folder), CLAP (`CLAP_weights_2022.pth`, tensors
//! under `model.audio_encoder.`), the projector (`audio_projector_*.pth`, sometimes nested under
//! `state_dict.`) and the adapters (`landscape.pt`, keys under `unet.`) all go through it:
//!
//! - the format is detected from the bytes ([`CheckpointFormat::detect`]), not the extension;
//! - tensors are indexed (name, dtype, shape) without reading their data: burn-store's lazy
//!   snapshots for both formats, so an unused text tower costs nothing; a safetensors file is
//!   memory-mapped and its tensors handed to Burn without a copy;
//! - a state dict nested under a prefix is found by an anchor key ([`Checkpoint::open_anchored`]);
//! - names and shapes are checked against a module before anything is applied
//!   ([`Checkpoint::load_into`], [`Checkpoint::check`]); every error names the file and the key
//!   as the file spells it;
//! - a safetensors file's `__metadata__` is read ([`Checkpoint::metadata`]).
//!
//! Why one file of over 700 lines: the code is about 610 lines; the rest are its unit tests.

use crate::config::open_file;
use crate::error::{CoreError, Result};
use crate::weights::adapter::PyTorchToBurn;
use crate::weights::mapping::MappedFile;
use crate::weights::{
    LoadOptions, check_finite, check_tensors_named, expected_tensors, remap::CompiledRemaps,
};
use burn::module::Module;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{ChainAdapter, FloatCastAdapter, ModuleSnapshot, PathFilter, bridge};
use burn::tensor::DType;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A lazily read tensor of a checkpoint (burn-store's snapshot: name, dtype, shape, and a way
/// to read the data).
type Snapshot = burn::store::burn_pack::Tensor;

/// The on-disk format of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A torch pickle (`torch.save`: ZIP, legacy or plain pickle), read by burn-store's
    /// PyTorch reader, which parses and never executes it.
    Pytorch,
}

impl CheckpointFormat {
    /// Detects the format from the first bytes: safetensors starts with a little-endian header
    /// length followed by `{`; anything else is treated as a torch pickle (whose reader then
    /// says what is wrong with it). An empty file, a folder or a missing file is an error.
    pub fn detect(path: &Path) -> Result<Self> {
        let io = |source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut head = Vec::with_capacity(9);
        open_file(path)?
            .take(9)
            .read_to_end(&mut head)
            .map_err(io)?;
        let got = head.len();
        if got == 0 {
            return Err(CoreError::WeightsFile {
                path: path.to_path_buf(),
                message: "file is empty".into(),
            });
        }
        Ok(if got == 9 && head[8] == b'{' {
            Self::Safetensors
        } else {
            Self::Pytorch
        })
    }
}

/// One entry of a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderEntry {
    /// The dtype string (`F32`, `F16`, `BF16`, ...).
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
}

/// The bytes per element of a safetensors dtype (`None` for a dtype this check does not know).
fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// A safetensors header, validated.
struct Header {
    /// Each tensor with its data's byte range, relative to `data_start`.
    tensors: BTreeMap<String, (HeaderEntry, (u64, u64))>,
    /// The `__metadata__` strings.
    metadata: BTreeMap<String, String>,
    /// Where the data section starts in the file (8 + the header length).
    data_start: u64,
}

/// Reads and validates a safetensors header: the declared offsets against the file size (a
/// truncated file is caught up front) and each tensor's byte length against its shape.
fn read_header(path: &Path) -> Result<Header> {
    let bad = |message: String| CoreError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    let mut file = open_file(path)?;
    let file_len = file
        .metadata()
        .map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("file is shorter than the 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > 100_000_000 || header_len + 8 > file_len {
        return Err(bad(format!(
            "header length {header_len} does not fit a file of {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read header: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    let data_len = file_len - 8 - header_len;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, entry) in obj {
        if name == "__metadata__" {
            if let Some(meta) = entry.as_object() {
                for (k, v) in meta {
                    if let Some(s) = v.as_str() {
                        metadata.insert(k.clone(), s.to_string());
                    }
                }
            }
            continue;
        }
        let dtype = entry
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("tensor `{name}` has no dtype")))?
            .to_string();
        let shape: Vec<usize> = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad(format!("tensor `{name}` has no shape")))?
            .iter()
            .map(|v| v.as_u64().and_then(|x| usize::try_from(x).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(format!("tensor `{name}` has a bad shape")))?;
        let offsets = entry
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
            .ok_or_else(|| bad(format!("tensor `{name}` has no data_offsets")))?;
        if offsets.1 < offsets.0 || offsets.1 > data_len {
            return Err(bad(format!(
                "tensor `{name}` data [{}, {}) lies outside the {data_len} data bytes (truncated file?)",
                offsets.0, offsets.1
            )));
        }
        if let Some(size) = dtype_bytes(&dtype) {
            let bytes = shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d as u64));
            if bytes != Some(offsets.1 - offsets.0) {
                return Err(bad(format!(
                    "tensor `{name}` of shape {shape:?} and dtype {dtype} declares {} data bytes",
                    offsets.1 - offsets.0
                )));
            }
        }
        tensors.insert(name.clone(), (HeaderEntry { dtype, shape }, offsets));
    }
    Ok(Header {
        tensors,
        metadata,
        data_start: 8 + header_len,
    })
}

/// Reads only the JSON header of a safetensors file (name -> dtype, shape), validating the
/// declared offsets against the file size and each tensor's byte length against its shape.
pub fn read_safetensors_header(path: &Path) -> Result<BTreeMap<String, HeaderEntry>> {
    Ok(read_header(path)?
        .tensors
        .into_iter()
        .map(|(k, (e, _))| (k, e))
        .collect())
}

/// The Burn dtype of a safetensors dtype string (`None` for one Burn has no type for).
fn safetensors_dtype(dtype: &str) -> Option<DType> {
    Some(match dtype {
        "F64" => DType::F64,
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "I8" => DType::I8,
        "U64" => DType::U64,
        "U32" => DType::U32,
        "U8" => DType::U8,
        "BOOL" => DType::Bool(burn::tensor::BoolStore::Native),
        _ => return None,
    })
}

/// Maps a safetensors file ([`MappedFile`]) and makes a lazily read snapshot of each tensor.
fn mapped_tensors(path: &Path, header: &Header) -> Result<(MappedFile, Vec<Snapshot>)> {
    let mut tensors = Vec::with_capacity(header.tensors.len());
    for (name, (entry, (start, end))) in &header.tensors {
        let dtype = safetensors_dtype(&entry.dtype).ok_or_else(|| CoreError::UnsupportedDtype {
            path: path.to_path_buf(),
            key: name.clone(),
            dtype: entry.dtype.clone(),
        })?;
        let range = header.data_start + start..header.data_start + end;
        tensors.push((name.clone(), dtype, entry.shape.clone(), range));
    }
    MappedFile::open(path, tensors)
}

/// The name of a dtype as safetensors spells it (`F32`, `BF16`, `I64`, ...).
fn dtype_name(dtype: DType) -> String {
    format!("{dtype:?}").to_uppercase()
}

/// A weights file, indexed (names, dtypes, shapes) but not yet read. See the module docs.
pub struct Checkpoint {
    path: PathBuf,
    format: CheckpointFormat,
    /// The prefix of a nested state dict (`state_dict.`, `model.audio_encoder.`), or empty.
    prefix: String,
    /// Keys without the prefix -> lazily read tensor (named by that key).
    tensors: BTreeMap<String, Snapshot>,
    /// A safetensors file's `__metadata__` strings (empty for pickles).
    metadata: BTreeMap<String, String>,
    /// A safetensors file's mapping (`None` for pickles).
    mapped: Option<MappedFile>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("prefix", &self.prefix)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Indexes every tensor of `path` (safetensors or torch pickle, detected from the bytes),
    /// keys as the file spells them (a pickle's nested dicts joined with `.`).
    pub fn open(path: &Path) -> Result<Self> {
        Self::index(path, None)
    }

    /// Indexes the state dict of `path` that holds a key matching `anchor` (a regex matched
    /// against whole trailing segments of each key, e.g. `to_out_adapter\.0\.weight`): the
    /// shortest prefix before such a key is the state dict's, its keys are kept without it and
    /// every other tensor is ignored. Without a match the prefix is empty and every tensor is
    /// kept (name checks then say what is missing).
    pub fn open_anchored(path: &Path, anchor: &str) -> Result<Self> {
        let re =
            regex::Regex::new(&format!("^(?:{anchor})$")).map_err(|e| CoreError::WeightsFile {
                path: path.to_path_buf(),
                message: format!("bad anchor pattern `{anchor}`: {e}"),
            })?;
        Self::index(path, Some(&re))
    }

    fn index(path: &Path, anchor: Option<&regex::Regex>) -> Result<Self> {
        let format = CheckpointFormat::detect(path)?;
        let bad = |message: String| CoreError::WeightsFile {
            path: path.to_path_buf(),
            message,
        };
        let (all, metadata, mapped): (Vec<Snapshot>, _, _) = match format {
            CheckpointFormat::Safetensors => {
                let header = read_header(path)?;
                let (mapped, all) = mapped_tensors(path, &header)?;
                (all, header.metadata, Some(mapped))
            }
            CheckpointFormat::Pytorch => {
                let reader =
                    PytorchReader::new(path).map_err(|e| bad(format!("torch pickle: {e}")))?;
                let all = reader
                    .into_tensors()
                    .into_values()
                    .map(bridge::from_pytorch)
                    .collect();
                (all, BTreeMap::new(), None)
            }
        };
        let prefix = anchor
            .and_then(|re| {
                all.iter()
                    .filter_map(|t| anchored_prefix(&t.name, re))
                    .min_by_key(|p| p.len())
            })
            .unwrap_or_default();
        let mut tensors = BTreeMap::new();
        let mut outside = 0;
        for mut t in all {
            let Some(key) = t.name.strip_prefix(prefix.as_str()).map(str::to_string) else {
                outside += 1;
                continue;
            };
            t.name = key.clone();
            tensors.insert(key, t);
        }
        if outside > 0 {
            tracing::debug!(
                file = %path.display(),
                prefix = %prefix,
                ignored = outside,
                "tensors outside the state dict are ignored"
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            prefix,
            tensors,
            metadata,
            mapped,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detected format.
    pub fn format(&self) -> CheckpointFormat {
        self.format
    }

    /// The prefix of the state dict found by the anchor (e.g. `state_dict.`), or empty.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A safetensors file's `__metadata__` strings (empty for pickles and files without any).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// How many tensors are indexed.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensor is indexed.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The keys (without the prefix), in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape of `key` (without the prefix), if present.
    pub fn shape(&self, key: &str) -> Option<Vec<usize>> {
        self.tensors.get(key).map(|t| t.shape.to_vec())
    }

    /// The dtype of `key` (without the prefix), if present.
    pub fn dtype(&self, key: &str) -> Option<DType> {
        self.tensors.get(key).map(|t| t.dtype)
    }

    /// Every key (without the prefix) and its shape.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.to_vec()))
            .collect()
    }

    /// Whether every tensor is float32 (no cast needed).
    pub fn is_f32(&self) -> bool {
        self.tensors.values().all(|t| t.dtype == DType::F32)
    }

    /// The key as the file spells it (the prefix put back).
    pub fn file_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Keeps only the tensors whose key (without the prefix) `keep` accepts; the others are
    /// neither checked nor loaded.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.tensors.retain(|k, _| keep(k));
    }

    /// Reads one tensor as `f32` with its shape; `None` when the file does not hold `key`.
    pub fn read_f32(&self, key: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.tensors.get(key) else {
            return Ok(None);
        };
        let bad = |message: String| CoreError::WeightsFile {
            path: self.path.clone(),
            message,
        };
        let data = bridge::to_data(t)
            .map_err(|e| bad(format!("cannot read `{}`: {e}", self.file_key(key))))?;
        let shape = data.shape().to_vec();
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| bad(format!("`{}`: {e:?}", self.file_key(key))))?;
        Ok(Some((shape, values)))
    }

    /// Compares the file's keys and shapes with `expected` (keys without the prefix), e.g.
    /// before a model of some config is allocated. Errors name the keys as the file spells
    /// them.
    pub fn check(&self, expected: &BTreeMap<String, Vec<usize>>) -> Result<()> {
        check_tensors_named(&self.path, expected, &self.shapes(), &|k| self.file_key(k))
    }

    /// Checks names and shapes against `module` and loads every tensor into it (any float
    /// precision cast to `f32`), with `options`' key rewrites, ignored keys and subset. Before
    /// anything is applied, the tensors (after [`LoadOptions::remaps`], without
    /// [`LoadOptions::ignore`]d keys) are compared with the module's (restricted to
    /// [`LoadOptions::subset`]); after, every loaded tensor is checked to be finite unless
    /// [`LoadOptions::allow_non_finite`].
    pub fn load_into<M>(&self, module: M, options: &LoadOptions) -> Result<M>
    where
        M: Module + ModuleSnapshot,
    {
        let path = &self.path;
        let remaps = CompiledRemaps::new(&options.remaps, path)?;
        let bad_pattern = |e: regex::Error| CoreError::WeightsFile {
            path: path.to_path_buf(),
            message: format!("bad pattern: {e}"),
        };
        let ignore: Vec<regex::Regex> = options
            .ignore
            .iter()
            .map(|p| regex::Regex::new(p))
            .collect::<std::result::Result<_, _>>()
            .map_err(bad_pattern)?;
        let subset = options
            .subset
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(bad_pattern)?;
        // Module path -> (shape, key as the file spells it), and the tensors to apply.
        let mut found = BTreeMap::new();
        let mut file_keys = BTreeMap::new();
        let mut apply = Vec::new();
        for (key, t) in &self.tensors {
            if ignore.iter().any(|re| re.is_match(key)) {
                continue;
            }
            if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
                return Err(CoreError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    key: self.file_key(key),
                    dtype: dtype_name(t.dtype),
                });
            }
            let module_key = remaps.apply(key);
            found.insert(module_key.clone(), t.shape.to_vec());
            file_keys.insert(module_key.clone(), self.file_key(key));
            let mut t = t.clone();
            t.name = module_key;
            apply.push(t);
        }
        let mut expected = expected_tensors(&module);
        if let Some(re) = &subset {
            expected.retain(|k, _| re.is_match(k));
        }
        let file_key = |module_key: &str| -> String {
            file_keys.get(module_key).cloned().unwrap_or_else(|| {
                let key = options
                    .file_key
                    .map_or_else(|| module_key.to_string(), |f| f(module_key));
                self.file_key(&key)
            })
        };
        check_tensors_named(path, &expected, &found, &file_key)?;
        let checked = if options.allow_non_finite {
            HashSet::new()
        } else {
            self.check_finite_mapped(&apply, &file_key)?
        };

        let mut module = module;
        // On plain flex the loaded tensors stay on the mapped file; linear weights are then
        // transposed at first use instead of now.
        let adapter = if module
            .devices()
            .first()
            .is_some_and(sonic_kernels::flex::on_plain_flex)
        {
            PyTorchToBurn::deferred()
        } else {
            PyTorchToBurn::default()
        };
        let filter = options
            .subset
            .as_ref()
            .map(|sub| PathFilter::new().with_regex(sub));
        let result = module.apply(
            apply,
            filter,
            Some(Box::new(ChainAdapter::new(
                adapter.clone(),
                FloatCastAdapter::to(DType::F32),
            ))),
            true,
        );
        if let Some(err) = result.errors.first() {
            return Err(CoreError::WeightsFile {
                path: path.to_path_buf(),
                message: err.to_string(),
            });
        }
        if let Some((missing, _)) = result
            .missing
            .iter()
            .find(|(m, _)| subset.as_ref().is_none_or(|re| re.is_match(m)))
        {
            return Err(CoreError::MissingTensor {
                path: path.to_path_buf(),
                key: file_key(missing),
                expected: expected.get(missing).cloned().unwrap_or_default(),
            });
        }
        if !options.allow_non_finite {
            // What the mapping could not check (pickles, f64 files), before the linear weights
            // become lazy (a lazy parameter is not read here).
            check_finite(
                &module,
                path,
                &|name| expected.contains_key(name) && !checked.contains(name),
                &file_key,
            )?;
        }
        let module = adapter.finish(module);
        tracing::debug!(
            file = %path.display(),
            applied = result.applied.len(),
            "loaded weights"
        );
        Ok(module)
    }

    /// Checks that every tensor of `apply` (named by module path) that the file's
    /// [`MappedFile`] can read is finite (read from the file, not through the mapping);
    /// returns the module paths checked. The first non-finite tensor is a [`CoreError::NonFiniteWeight`].
    fn check_finite_mapped(
        &self,
        apply: &[Snapshot],
        file_key: &dyn Fn(&str) -> String,
    ) -> Result<HashSet<String>> {
        let mut checked = HashSet::new();
        let Some(mapped) = &self.mapped else {
            return Ok(checked);
        };
        for t in apply {
            let key = file_key(&t.name);
            match mapped.check_finite(&key) {
                Some(true) => {
                    checked.insert(t.name.clone());
                }
                Some(false) => {
                    return Err(CoreError::NonFiniteWeight {
                        path: self.path.clone(),
                        count: mapped.count_non_finite(&key).unwrap_or(0),
                        numel: t.shape.iter().product(),
                        key,
                    });
                }
                None => {}
            }
        }
        Ok(checked)
    }
}

/// The prefix before the first trailing run of whole segments of `key` that `anchor` matches.
fn anchored_prefix(key: &str, anchor: &regex::Regex) -> Option<String> {
    std::iter::once(0)
        .chain(key.match_indices('.').map(|(i, _)| i + 1))
        .find(|&start| anchor.is_match(&key[start..]))
        .map(|start| key[..start].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_prefix_is_cut_at_a_segment() {
        let re = regex::Regex::new(r"^(?:to_out_adapter\.0\.weight)$").unwrap();
        assert_eq!(
            anchored_prefix("state_dict.to_out_adapter.0.weight", &re).as_deref(),
            Some("state_dict.")
        );
        assert_eq!(
            anchored_prefix("to_out_adapter.0.weight", &re).as_deref(),
            Some("")
        );
        assert_eq!(anchored_prefix("xto_out_adapter.0.weight", &re), None);
        assert_eq!(anchored_prefix("to_out_adapter.0.weight.x", &re), None);
    }

    fn write(dir: &Path, name: &str, header: &[u8], data: usize) -> PathBuf {
        let p = dir.join(name);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend(std::iter::repeat_n(0u8, data));
        std::fs::write(&p, &bytes).unwrap();
        p
    }

    #[test]
    fn bad_headers_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "trunc.safetensors",
            br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
        );
        let e = read_safetensors_header(&p).unwrap_err();
        assert!(matches!(e, CoreError::WeightsFile { .. }));
        assert!(e.to_string().contains("trunc.safetensors"), "{e}");
        // A shape that claims more than its bytes (a file declaring absurd sizes).
        let p = write(
            dir.path(),
            "big.safetensors",
            br#"{"a":{"dtype":"F32","shape":[1000000000,1000],"data_offsets":[0,16]}}"#,
            16,
        );
        let e = read_safetensors_header(&p).unwrap_err();
        assert!(e.to_string().contains("declares 16 data bytes"), "{e}");
        std::fs::write(&p, b"abc").unwrap();
        assert!(read_safetensors_header(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        let e = Checkpoint::open(&p).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn metadata_and_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "m.safetensors",
            br#"{"__metadata__":{"k":"v"},"sd.w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"opt.x":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}"#,
            16,
        );
        let c = Checkpoint::open_anchored(&p, r"w").unwrap();
        assert_eq!(c.prefix(), "sd.");
        assert_eq!(c.metadata().get("k").map(String::as_str), Some("v"));
        assert_eq!(c.keys().collect::<Vec<_>>(), ["w"]);
        assert_eq!(c.shape("w"), Some(vec![2]));
        assert_eq!(c.file_key("w"), "sd.w");
        assert_eq!(c.read_f32("w").unwrap(), Some((vec![2], vec![0.0, 0.0])));
        let all = Checkpoint::open(&p).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all.dtype("opt.x"), Some(DType::I64));
        let e = all
            .check(&[("sd.w".to_string(), vec![3])].into())
            .unwrap_err();
        assert!(
            matches!(e, CoreError::WeightsMismatch { total: 2, .. }),
            "{e}"
        );
    }

    /// A module loaded from a mapped file keeps working when the file is gone, and a weight
    /// written in place is copied first: the file never changes.
    #[test]
    fn mapped_weights_are_shared_and_copied_on_write() {
        use burn::nn::{Linear, LinearConfig};
        let device = crate::device::parse_device("flex").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lin.safetensors");
        let w: Vec<f32> = (0..6).map(|i| i as f32).collect();
        crate::weights::write_safetensors_f32(
            &p,
            &[
                crate::weights::NamedTensor {
                    name: "weight".into(),
                    shape: vec![3, 2],
                    data: w.clone(),
                },
                crate::weights::NamedTensor {
                    name: "bias".into(),
                    shape: vec![3],
                    data: vec![1.0, 2.0, 3.0],
                },
            ],
            None,
        )
        .unwrap();
        let before = std::fs::read(&p).unwrap();
        let load = || {
            let lin: Linear = LinearConfig::new(2, 3).init(&device);
            Checkpoint::open(&p)
                .unwrap()
                .load_into(lin, &LoadOptions::default())
                .unwrap()
        };
        let values = |t: burn::tensor::Tensor<1>| t.into_data().try_into_vec::<f32>().unwrap();
        let lin = load();
        let bias = lin.bias.as_ref().unwrap().val();
        drop(lin);
        // The only handle on the mapped bias: an in-place add may write, and must copy first.
        assert_eq!(values(bias.add_scalar(1.0)), vec![2.0, 3.0, 4.0]);
        assert_eq!(std::fs::read(&p).unwrap(), before, "the file was written");
        // The mapping outlives the file's name.
        let lin = load();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(
            values(lin.bias.as_ref().unwrap().val()),
            vec![1.0, 2.0, 3.0]
        );
    }
}
