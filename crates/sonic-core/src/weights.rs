//! Loading `*.safetensors` weights into Burn modules.
//!
//! Module field names mirror the PyTorch (diffusers / transformers) parameter names, so a
//! file key maps to a module path one to one; where a model needs it, a list of regex
//! [`Remap`] rules rewrites file keys first. Before any tensor is applied, the file's header is
//! checked against the module: every missing tensor, unexpected tensor and shape mismatch is
//! reported in the file's own naming (PyTorch names and shapes: `weight`/`bias` for norms,
//! `[out, in]` for linear weights) with the file path. Half-precision files
//! (`*.fp16.safetensors`) are cast to the run dtype (`f32`) on load.

use crate::error::{CoreError, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{
    ChainAdapter, FloatCastAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::DType;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A key rewrite rule applied to file keys before they are matched to module paths:
/// a regex and its replacement (`$1` for capture groups).
#[derive(Debug, Clone)]
pub struct Remap {
    /// The regex matched against each file key.
    pub pattern: String,
    /// The replacement.
    pub replacement: String,
}

impl Remap {
    /// A rule rewriting `pattern` to `replacement`.
    pub fn new(pattern: impl Into<String>, replacement: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            replacement: replacement.into(),
        }
    }
}

/// Options for [`load_safetensors`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Key rewrites, applied in order to every file key.
    pub remaps: Vec<Remap>,
    /// Regexes of file keys that are known to be unused and are skipped silently
    /// (e.g. `position_ids` buffers of older transformers checkpoints).
    pub ignore: Vec<String>,
    /// When set, only the module tensors whose path matches this regex are expected and
    /// loaded (e.g. the adapters of a UNet from an adapter-only file); the rest of the module
    /// keeps its weights.
    pub subset: Option<String>,
    /// Skip the check that every loaded tensor is finite (on by default: a NaN or an infinity
    /// in a weight is a [`CoreError::NonFiniteWeight`] naming the tensor).
    pub allow_non_finite: bool,
}

/// Where weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightSource {
    /// A `*.safetensors` file.
    Safetensors(PathBuf),
    /// A PyTorch pickle (`*.pt`, `*.pth`, `*.bin`), read without executing anything; tensors
    /// may sit under a top-level key of the pickled dict (e.g. `model`, `state_dict`).
    Pytorch {
        /// The file.
        path: PathBuf,
        /// The key of the state dict inside the pickle, if any.
        top_level_key: Option<String>,
    },
}

impl WeightSource {
    /// Picks the format from the extension: `.safetensors` or a PyTorch pickle.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => WeightSource::Safetensors(path.to_path_buf()),
            _ => WeightSource::Pytorch {
                path: path.to_path_buf(),
                top_level_key: None,
            },
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            WeightSource::Safetensors(p) => p,
            WeightSource::Pytorch { path, .. } => path,
        }
    }

    /// Lists the tensors of the source (name -> dtype, shape) without reading their data.
    pub fn list(&self) -> Result<BTreeMap<String, HeaderEntry>> {
        match self {
            WeightSource::Safetensors(p) => read_safetensors_header(p),
            WeightSource::Pytorch {
                path,
                top_level_key,
            } => {
                if path.is_dir() {
                    return Err(CoreError::Io {
                        path: path.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::IsADirectory,
                            "is a directory",
                        ),
                    });
                }
                if !path.exists() {
                    return Err(CoreError::Io {
                        path: path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                    });
                }
                let reader = match top_level_key {
                    Some(k) => {
                        burn::store::pytorch_reader::PytorchReader::with_top_level_key(path, k)
                    }
                    None => burn::store::pytorch_reader::PytorchReader::new(path),
                }
                .map_err(|e| CoreError::WeightsFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Ok(reader
                    .tensors()
                    .iter()
                    .map(|(k, t)| {
                        use burn::store::pytorch_reader::DType as PtDType;
                        let dtype = match t.dtype() {
                            PtDType::F32 => "F32".to_string(),
                            PtDType::F16 => "F16".to_string(),
                            PtDType::BF16 => "BF16".to_string(),
                            PtDType::F64 => "F64".to_string(),
                            other => format!("{other:?}"),
                        };
                        (
                            k.clone(),
                            HeaderEntry {
                                dtype,
                                shape: t.shape().to_vec(),
                            },
                        )
                    })
                    .collect())
            }
        }
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

/// Reads only the JSON header of a safetensors file (name -> dtype, shape), validating the
/// declared offsets against the file size so a truncated file is caught up front.
pub fn read_safetensors_header(path: &Path) -> Result<BTreeMap<String, HeaderEntry>> {
    let bad = |message: String| CoreError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    if path.is_dir() {
        return Err(CoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        });
    }
    let mut file = std::fs::File::open(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
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
    let mut out = BTreeMap::new();
    for (name, entry) in obj {
        if name == "__metadata__" {
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
            .map(|v| v.as_u64().map(|x| x as usize))
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
        out.insert(name.clone(), HeaderEntry { dtype, shape });
    }
    Ok(out)
}

/// Where a module traversal stands: the module path (enum variants skipped, as the stores
/// do) and the container types, so a parameter gets its PyTorch name and layout.
#[derive(Default)]
struct ParamPath {
    path: Vec<String>,
    containers: Vec<String>,
}

impl ParamPath {
    fn enter(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit(&mut self, container_type: &str) {
        self.containers.pop();
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    /// The innermost user-defined module holding the parameter (`Struct:Linear`, ...).
    fn module_type(&self) -> Option<&str> {
        self.containers
            .iter()
            .rev()
            .find(|c| c.starts_with("Struct:") || c.starts_with("Enum:"))
            .map(String::as_str)
    }

    /// The parameter's PyTorch name and shape given its Burn shape: norms' `gamma` / `beta`
    /// are `weight` / `bias`, linear weights are `[out, in]` (burn-store's
    /// `BurnToPyTorchAdapter`, without touching the data).
    fn pytorch(&self, shape: &[usize]) -> (String, Vec<usize>) {
        let module = self.module_type().unwrap_or_default();
        let mut path = self.path.clone();
        let mut shape = shape.to_vec();
        if let Some(last) = path.last_mut() {
            let norm = matches!(
                module,
                "Struct:BatchNorm" | "Struct:LayerNorm" | "Struct:GroupNorm" | "Struct:RmsNorm"
            );
            if module == "Struct:Linear" && last == "weight" && shape.len() == 2 {
                shape.swap(0, 1);
            } else if norm && last == "gamma" {
                *last = "weight".into();
            } else if norm && last == "beta" {
                *last = "bias".into();
            }
        }
        (path.join("."), shape)
    }
}

/// Collects parameter shapes without initialising lazily created parameters.
#[derive(Default)]
struct ShapeCollector {
    at: ParamPath,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ShapeCollector {
    fn add(&mut self, shape: burn::tensor::Shape) {
        let (name, shape) = self.at.pytorch(&shape.to_vec());
        self.shapes.insert(name, shape);
    }
}

impl ModuleVisitor for ShapeCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.add(param.lazy_shape());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.add(param.lazy_shape());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.add(param.lazy_shape());
    }
}

/// The tensors a module expects, in PyTorch naming and layout: path -> shape.
///
/// Reads each parameter's shape without initialising it: a module built from a config is not
/// allocated until its weights are applied, so a config that disagrees with a weights file
/// (or implies terabytes) is caught by [`check_tensors`] before any memory is taken.
pub fn expected_tensors<M: Module>(module: &M) -> BTreeMap<String, Vec<usize>> {
    let mut collector = ShapeCollector::default();
    module.visit(&mut collector);
    collector.shapes
}

/// For each float parameter whose PyTorch name `select` accepts, a one-element tensor that is
/// 0 when the parameter is finite and NaN when it holds a NaN or an infinity.
struct FiniteProbe<'a> {
    at: ParamPath,
    select: &'a dyn Fn(&str) -> bool,
    probes: Vec<(String, Tensor<1>)>,
}

impl ModuleVisitor for FiniteProbe<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, _) = self.at.pytorch(&param.lazy_shape().to_vec());
        if !param.is_initialized() || !(self.select)(&name) {
            return;
        }
        let value = param.val();
        let probe = match sonic_kernels::reduce::all_finite(&value) {
            // Read in place on flex: no copy of the weight.
            Some(finite) => {
                let v = if finite { 0.0 } else { f32::NAN };
                Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &value.device())
            }
            // x * 0 is exactly 0 for finite x and NaN for NaN or ±inf; the sum keeps any NaN.
            None => value.mul_scalar(0.0).sum(),
        };
        self.probes.push((name, probe));
    }
}

/// Checks that every loaded float parameter of `module` that `select` accepts (by PyTorch
/// name) is finite: one elementwise pass and one reduction per tensor, read back together. The
/// first non-finite tensor is a [`CoreError::NonFiniteWeight`] naming `path` and its key
/// (`file_key` maps a module name back to the file's name).
pub fn check_finite<M: Module>(
    module: &M,
    path: &Path,
    select: &dyn Fn(&str) -> bool,
    file_key: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mut probe = FiniteProbe {
        at: ParamPath::default(),
        select,
        probes: Vec::new(),
    };
    module.visit(&mut probe);
    if probe.probes.is_empty() {
        return Ok(());
    }
    let (names, probes): (Vec<String>, Vec<Tensor<1>>) = probe.probes.into_iter().unzip();
    let values = Tensor::cat(probes, 0)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::Readback(format!("{e:?}")))?;
    let Some(bad) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let name = &names[bad];
    let mut count = 0;
    let mut numel = 0;
    let mut counter = NonFiniteCounter {
        at: ParamPath::default(),
        name,
        count: &mut count,
        numel: &mut numel,
    };
    module.visit(&mut counter);
    Err(CoreError::NonFiniteWeight {
        path: path.to_path_buf(),
        key: file_key(name),
        count,
        numel,
    })
}

/// Counts the non-finite values of the one parameter named `name`.
struct NonFiniteCounter<'a> {
    at: ParamPath,
    name: &'a str,
    count: &'a mut usize,
    numel: &'a mut usize,
}

impl ModuleVisitor for NonFiniteCounter<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, shape) = self.at.pytorch(&param.lazy_shape().to_vec());
        if name != self.name {
            return;
        }
        *self.numel = shape.iter().product();
        let finite = param.val().is_finite().int().sum().into_scalar::<i64>();
        let finite = usize::try_from(finite).unwrap_or(0);
        *self.count = self.numel.saturating_sub(finite);
    }
}

fn compile_remaps(remaps: &[Remap], origin: &Path) -> Result<Vec<(regex::Regex, String)>> {
    remaps
        .iter()
        .map(|r| {
            regex::Regex::new(&r.pattern)
                .map(|re| (re, r.replacement.clone()))
                .map_err(|e| CoreError::WeightsFile {
                    path: origin.to_path_buf(),
                    message: format!("bad remap pattern `{}`: {e}", r.pattern),
                })
        })
        .collect()
}

fn apply_remaps(key: &str, remaps: &[(regex::Regex, String)]) -> String {
    let mut k = key.to_string();
    for (re, rep) in remaps {
        k = re.replace_all(&k, rep.as_str()).into_owned();
    }
    k
}

/// Checks a file's tensors (name -> shape, already remapped to module paths) against a module's
/// expected tensors. One problem is reported as its own variant ([`CoreError::ShapeMismatch`],
/// [`CoreError::MissingTensor`], [`CoreError::UnexpectedTensor`]); several as
/// [`CoreError::WeightsMismatch`] listing the first eight (shape mismatches, then missing, then
/// unexpected tensors).
pub fn check_tensors(
    path: &Path,
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, Vec<usize>>,
) -> Result<()> {
    let mut problems = Vec::new();
    for (key, exp) in expected {
        if let Some(f) = found.get(key)
            && f != exp
        {
            problems.push(CoreError::ShapeMismatch {
                path: path.to_path_buf(),
                key: key.clone(),
                expected: exp.clone(),
                found: f.clone(),
            });
        }
    }
    for (key, exp) in expected.iter().filter(|(k, _)| !found.contains_key(*k)) {
        problems.push(CoreError::MissingTensor {
            path: path.to_path_buf(),
            key: key.clone(),
            expected: exp.clone(),
        });
    }
    for (key, f) in found.iter().filter(|(k, _)| !expected.contains_key(*k)) {
        problems.push(CoreError::UnexpectedTensor {
            path: path.to_path_buf(),
            key: key.clone(),
            found: f.clone(),
        });
    }
    let total = problems.len();
    match total {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(CoreError::WeightsMismatch {
            path: path.to_path_buf(),
            total,
            first: problems
                .iter()
                .take(8)
                .map(|p| match p {
                    CoreError::ShapeMismatch {
                        key,
                        expected,
                        found,
                        ..
                    } => {
                        format!("`{key}` has shape {found:?}, model expects {expected:?}")
                    }
                    CoreError::MissingTensor { key, expected, .. } => {
                        format!("`{key}` {expected:?} is missing")
                    }
                    CoreError::UnexpectedTensor { key, found, .. } => {
                        format!("`{key}` {found:?} is not used by the model")
                    }
                    other => other.to_string(),
                })
                .collect(),
        }),
    }
}

/// Loads a safetensors file into `module` (which must mirror the file's PyTorch names), after
/// checking names and shapes; float tensors of any precision are cast to `f32`.
pub fn load_safetensors<M>(module: M, path: &Path, options: &LoadOptions) -> Result<M>
where
    M: Module + ModuleSnapshot,
{
    load_weights(
        module,
        &WeightSource::Safetensors(path.to_path_buf()),
        options,
    )
}

/// Loads weights from any [`WeightSource`] into `module`. Before anything is applied, the
/// source's tensor list (after [`LoadOptions::remaps`], without [`LoadOptions::ignore`]d keys)
/// is checked against the module's expected tensors (restricted to
/// [`LoadOptions::subset`]): the first shape mismatch, missing or unexpected tensor is a typed
/// error naming the file and key.
pub fn load_weights<M>(module: M, source: &WeightSource, options: &LoadOptions) -> Result<M>
where
    M: Module + ModuleSnapshot,
{
    let path = source.path();
    let listing = source.list()?;
    let remaps = compile_remaps(&options.remaps, path)?;
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
    let mut found = BTreeMap::new();
    let mut file_keys = BTreeMap::new();
    for (key, entry) in &listing {
        if ignore.iter().any(|re| re.is_match(key)) {
            continue;
        }
        if !matches!(entry.dtype.as_str(), "F32" | "F16" | "BF16" | "F64") {
            return Err(CoreError::UnsupportedDtype {
                path: path.to_path_buf(),
                key: key.clone(),
                dtype: entry.dtype.clone(),
            });
        }
        let module_key = apply_remaps(key, &remaps);
        found.insert(module_key.clone(), entry.shape.clone());
        file_keys.insert(module_key, key.clone());
    }
    let mut expected = expected_tensors(&module);
    if let Some(re) = &subset {
        expected.retain(|k, _| re.is_match(k));
    }
    check_tensors(path, &expected, &found)?;

    let mut remapper = KeyRemapper::new();
    for r in &options.remaps {
        remapper = remapper
            .add_pattern(&r.pattern, r.replacement.clone())
            .map_err(|e| CoreError::WeightsFile {
                path: path.to_path_buf(),
                message: format!("bad remap pattern `{}`: {e}", r.pattern),
            })?;
    }
    let mut module = module;
    let result = match source {
        WeightSource::Safetensors(p) => {
            let mut store = SafetensorsStore::from_file(p)
                .remap(remapper)
                .with_from_adapter(ChainAdapter::new(
                    PyTorchToBurnAdapter,
                    FloatCastAdapter::to(DType::F32),
                ))
                .allow_partial(true)
                .skip_enum_variants(true)
                .map_indices_contiguous(false)
                .validate(false);
            if let Some(sub) = &options.subset {
                store = store.with_regex(sub);
            }
            module
                .load_from(&mut store)
                .map_err(|e| CoreError::WeightsFile {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
        }
        WeightSource::Pytorch {
            path: p,
            top_level_key,
        } => {
            let mut store = PytorchStore::from_file(p)
                .remap(remapper)
                .allow_partial(true)
                .skip_enum_variants(true)
                .map_indices_contiguous(false)
                .validate(false);
            if let Some(k) = top_level_key {
                store = store.with_top_level_key(k.clone());
            }
            if let Some(sub) = &options.subset {
                store = store.with_regex(sub);
            }
            module
                .load_from(&mut store)
                .map_err(|e| CoreError::WeightsFile {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
        }
    };
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
            key: missing.clone(),
            expected: expected.get(missing).cloned().unwrap_or_default(),
        });
    }
    if !options.allow_non_finite {
        check_finite(
            &module,
            path,
            &|name| expected.contains_key(name),
            &|name| {
                file_keys
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.to_string())
            },
        )?;
    }
    tracing::debug!(
        file = %path.display(),
        applied = result.applied.len(),
        "loaded weights"
    );
    Ok(module)
}

/// Picks the weights file of a diffusers component folder: `<stem>.safetensors`, or the
/// `<stem>.fp16.safetensors` variant when `prefer_fp16` is set or the full-precision file is
/// absent.
pub fn find_weights(dir: &Path, stem: &str, prefer_fp16: bool) -> Result<PathBuf> {
    let full = dir.join(format!("{stem}.safetensors"));
    let half = dir.join(format!("{stem}.fp16.safetensors"));
    let order = if prefer_fp16 {
        [&half, &full]
    } else {
        [&full, &half]
    };
    for p in order {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(CoreError::Io {
        path: full,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {stem}.safetensors or {stem}.fp16.safetensors in this folder"),
        ),
    })
}

/// One named float32 tensor on the host, for writing safetensors files.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// The key.
    pub name: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Reads every tensor of a safetensors file as float32 (f16 / bf16 / f64 converted).
pub fn read_safetensors_f32(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = crate::config::read_file(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CoreError::WeightsFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let data = view_to_f32(&view).ok_or_else(|| CoreError::UnsupportedDtype {
            path: path.to_path_buf(),
            key: name.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Writes float32 tensors as a safetensors file, atomically (a temporary file in the same
/// folder, renamed into place), with optional `__metadata__` entries.
pub fn write_safetensors_f32(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let err = |message: String| CoreError::WeightsFile {
        path: path.to_path_buf(),
        message,
    };
    let mut views = Vec::with_capacity(tensors.len());
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    for (t, b) in tensors.iter().zip(&bytes) {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(err(format!(
                "tensor `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b)
                .map_err(|e| err(e.to_string()))?;
        views.push((t.name.clone(), view));
    }
    let out = safetensors::serialize(views, metadata).map_err(|e| err(e.to_string()))?;
    crate::config::write_atomic(path, &out)
}

/// Converts a safetensors tensor view of a float or integer dtype to `f32` values
/// (`None` for dtypes that are not numbers).
pub fn view_to_f32(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    let b = view.data();
    let v = match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        _ => return None,
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_mismatch_missing_unexpected() {
        let p = Path::new("m.safetensors");
        let exp: BTreeMap<_, _> = [("a.weight".to_string(), vec![2, 3])].into();
        let bad_shape: BTreeMap<_, _> = [("a.weight".to_string(), vec![3, 2])].into();
        let e = check_tensors(p, &exp, &bad_shape).unwrap_err();
        assert!(matches!(e, CoreError::ShapeMismatch { .. }));
        let msg = e.to_string();
        assert!(msg.contains("a.weight") && msg.contains("[2, 3]") && msg.contains("[3, 2]"));
        let e = check_tensors(p, &exp, &BTreeMap::new()).unwrap_err();
        assert!(matches!(e, CoreError::MissingTensor { .. }), "{e}");
        let extra: BTreeMap<_, _> = [
            ("a.weight".to_string(), vec![2, 3]),
            ("b".to_string(), vec![1]),
        ]
        .into();
        let e = check_tensors(p, &exp, &extra).unwrap_err();
        assert!(matches!(e, CoreError::UnexpectedTensor { ref key, .. } if key == "b"));
        let several: BTreeMap<_, _> = [
            ("a.weight".to_string(), vec![3, 2]),
            ("c".to_string(), vec![1]),
        ]
        .into();
        let e = check_tensors(p, &exp, &several).unwrap_err();
        match &e {
            CoreError::WeightsMismatch { total, first, .. } => {
                assert_eq!(*total, 2);
                assert!(
                    first[0].contains("a.weight") && first[1].contains("`c`"),
                    "{first:?}"
                );
            }
            other => panic!("wrong error {other:?}"),
        }
        assert!(e.to_string().contains("m.safetensors"));
    }

    #[test]
    fn remaps_apply_in_order() {
        let r = compile_remaps(
            &[
                Remap::new(r"^text_model\.", ""),
                Remap::new(r"\.fc1\.", ".mlp_in."),
            ],
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(
            apply_remaps("text_model.a.fc1.weight", &r),
            "a.mlp_in.weight"
        );
    }

    #[test]
    fn truncated_header_is_reported() {
        let dir = std::env::temp_dir().join(format!("sonic-core-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("trunc.safetensors");
        let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&p, &bytes).unwrap();
        let e = read_safetensors_header(&p).unwrap_err();
        assert!(matches!(e, CoreError::WeightsFile { .. }));
        assert!(e.to_string().contains("trunc.safetensors"), "{e}");
        std::fs::write(&p, b"abc").unwrap();
        assert!(read_safetensors_header(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
