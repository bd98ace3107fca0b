//! The PyTorch reference fixtures (`../shared/fixtures`) and tensor comparison.
//!
//! Each fixture folder has `reference/cases.json` (an index naming every tensor) and
//! `reference/tensors.safetensors`. Tensors are compared as
//! `max |ours - ref| / max |ref|` ([`compare`]).

use crate::error::{CoreError, Result};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Locates the fixtures root: `$SONIC_FIXTURES` if set, else `../shared/fixtures` next to the
/// workspace root (found by walking up from `start` until a folder holds `shared/fixtures`
/// one level above it).
pub fn fixtures_root(start: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SONIC_FIXTURES") {
        return Some(PathBuf::from(p));
    }
    let mut dir = Some(start);
    while let Some(d) = dir {
        let cand = d.join("..").join("shared").join("fixtures");
        if cand.is_dir() {
            return Some(cand);
        }
        dir = d.parent();
    }
    None
}

/// A tensor read from a reference file, kept on the host as `f32` (or `i64` for ids).
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, converted to `f32`.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Uploads to `device` as a `D`-dimensional float tensor.
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Result<Tensor<D>> {
        if self.shape.len() != D {
            return Err(CoreError::Readback(format!(
                "expected a rank-{D} tensor, found shape {:?}",
                self.shape
            )));
        }
        Ok(Tensor::from_data(
            TensorData::new(self.data.clone(), self.shape.clone()),
            device,
        ))
    }
}

/// All tensors of one `tensors.safetensors` file, converted to `f32` on the host.
pub struct TensorFile {
    path: PathBuf,
    tensors: HashMap<String, HostTensor>,
}

impl TensorFile {
    /// Reads every tensor of a safetensors file (f32, f16, bf16, f64, i64, i32 are converted).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = crate::config::read_file(path)?;
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CoreError::WeightsFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data =
                crate::weights::view_to_f32(&view).ok_or_else(|| CoreError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    key: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                })?;
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// The tensor stored under `key`, or [`CoreError::MissingTensor`].
    pub fn get(&self, key: &str) -> Result<&HostTensor> {
        self.tensors
            .get(key)
            .ok_or_else(|| CoreError::MissingTensor {
                path: self.path.clone(),
                key: key.to_string(),
                expected: vec![],
            })
    }

    /// Uploads the tensor under `key` to `device`.
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Result<Tensor<D>> {
        self.get(key)?.to_tensor(device)
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The outcome of comparing one tensor against its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// max |ours - ref|.
    pub max_abs: f64,
    /// max |ours - ref| / max |ref| (max_abs itself when the reference is all zeros).
    pub max_rel: f64,
}

impl Comparison {
    /// A comparison that found no difference.
    pub const EXACT: Comparison = Comparison {
        max_abs: 0.0,
        max_rel: 0.0,
    };

    /// The worse of two comparisons (by max_rel, then max_abs).
    pub fn worst(self, other: Comparison) -> Comparison {
        Comparison {
            max_abs: self.max_abs.max(other.max_abs),
            max_rel: self.max_rel.max(other.max_rel),
        }
    }
}

/// Compares host values; shapes must match element count. NaN anywhere gives an infinite error.
pub fn compare_slices(ours: &[f32], reference: &[f32]) -> Comparison {
    if ours.len() != reference.len() {
        return Comparison {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
        };
    }
    let mut max_abs = 0f64;
    let mut max_ref = 0f64;
    for (&a, &b) in ours.iter().zip(reference) {
        let d = (a as f64 - b as f64).abs();
        if d.is_nan() {
            return Comparison {
                max_abs: f64::INFINITY,
                max_rel: f64::INFINITY,
            };
        }
        max_abs = max_abs.max(d);
        max_ref = max_ref.max((b as f64).abs());
    }
    let max_rel = if max_ref > 0.0 {
        max_abs / max_ref
    } else {
        max_abs
    };
    Comparison { max_abs, max_rel }
}

/// Reads a tensor back to the host as `f32` values.
pub fn to_host<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>> {
    t.to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::Readback(format!("{e:?}")))
}

/// Compares a device tensor with a reference (shapes must agree, else an infinite error).
pub fn compare<const D: usize>(ours: &Tensor<D>, reference: &HostTensor) -> Result<Comparison> {
    if ours.dims().as_slice() != reference.shape.as_slice() {
        return Ok(Comparison {
            max_abs: f64::INFINITY,
            max_rel: f64::INFINITY,
        });
    }
    Ok(compare_slices(&to_host(ours)?, &reference.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_scaled_by_reference_max() {
        let c = compare_slices(&[1.0, 2.0, 4.1], &[1.0, 2.0, 4.0]);
        assert!((c.max_abs - 0.1).abs() < 1e-6);
        assert!((c.max_rel - 0.025).abs() < 1e-6);
        let c = compare_slices(&[f32::NAN], &[1.0]);
        assert!(c.max_rel.is_infinite());
        let c = compare_slices(&[1.0, 2.0], &[1.0]);
        assert!(c.max_rel.is_infinite());
    }
}

/// The outcome of one parity case: an id beginning with the cases.json section name, the
/// measured error and the tolerance it must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// `<section>.<case>...`, e.g. `text_encoder.0.last_hidden_state`.
    pub id: String,
    /// The measured error.
    pub cmp: Comparison,
    /// The tolerance on `max_rel`.
    pub tol: f64,
}

impl CaseResult {
    /// A result for `id`.
    pub fn new(id: impl Into<String>, cmp: Comparison, tol: f64) -> Self {
        Self {
            id: id.into(),
            cmp,
            tol,
        }
    }

    /// Whether `max_rel <= tol` (NaN fails).
    pub fn passed(&self) -> bool {
        self.cmp.max_rel <= self.tol
    }
}

/// A fixture folder: its `cases.json` and its tensors.
pub struct Fixture {
    /// The folder (holding `reference/`, and model folders for SD fixtures).
    pub dir: PathBuf,
    /// The parsed `reference/cases.json`.
    pub cases: serde_json::Value,
    /// The tensors of `reference/tensors.safetensors`.
    pub tensors: TensorFile,
}

impl Fixture {
    /// Opens `<dir>/reference/cases.json` and `<dir>/reference/tensors.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let cases = crate::config::read_json_lenient(&dir.join("reference").join("cases.json"))?;
        let tensors = TensorFile::open(&dir.join("reference").join("tensors.safetensors"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cases,
            tensors,
        })
    }

    /// The cases.json section `name` (`None` when absent).
    pub fn section(&self, name: &str) -> Option<&serde_json::Value> {
        self.cases.get(name)
    }

    /// A string field of a case, or a [`CoreError::Json`] naming it.
    pub fn str_field<'a>(&self, case: &'a serde_json::Value, key: &str) -> Result<&'a str> {
        case.get(key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| self.schema_error(key))
    }

    /// A number field of a case, or a [`CoreError::Json`] naming it.
    pub fn f64_field(&self, case: &serde_json::Value, key: &str) -> Result<f64> {
        case.get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| self.schema_error(key))
    }

    /// The reference tensor named by the string field `key` of `case`.
    pub fn tensor_of(&self, case: &serde_json::Value, key: &str) -> Result<&HostTensor> {
        self.tensors.get(self.str_field(case, key)?)
    }

    /// An error saying `key` is missing or malformed in cases.json.
    pub fn schema_error(&self, key: &str) -> CoreError {
        CoreError::Json {
            path: self.dir.join("reference").join("cases.json"),
            message: format!("field `{key}` is missing or has the wrong type"),
        }
    }
}
