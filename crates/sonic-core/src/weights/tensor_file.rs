//! Plain float32 tensor files: every tensor of a safetensors file read as `f32` on the host,
//! and `f32` tensors written atomically (caches, exports, fixtures' helpers).

use crate::error::{CoreError, Result};
use std::path::Path;

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
