//! Formula weights: random-looking model weights rebuilt bit for bit from a short spec, so a
//! parity fixture for a model with millions of parameters (InceptionV3 for FID, Wav2CLIP's
//! ResNet, LPIPS' AlexNet) stores a few kilobytes of JSON instead of the weights. The Python
//! twin, which makes the fixtures, is `tools/fixtures/formula.py`.
//!
//! A spec (`{"seed": u64, "tensors": [{"name", "shape", "scale", "offset"}, ..]}`) lists
//! float32 tensors. Element `i` of tensor `name` is
//!
//! ```text
//! u_i   = ((splitmix64(fnv1a64("{seed}:{name}") + (i + 1) * 0x9E3779B97F4A7C15) >> 40) / 2^23) - 1
//! value = (u_i * scale) + offset        (two float32 operations, no fused multiply-add)
//! ```
//!
//! with all integer arithmetic modulo 2^64.
//!
//! ```no_run
//! use sonic_core::formula::FormulaSpec;
//! # fn main() -> Result<(), sonic_core::CoreError> {
//! let spec = FormulaSpec::from_file(std::path::Path::new("inception/formula.json"))?;
//! spec.write_safetensors(std::path::Path::new("/tmp/inception.safetensors"))?;
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use crate::weights::tensor_file::{NamedTensor, write_safetensors_f32};
use std::path::{Path, PathBuf};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// The most values a spec may describe (1 GiB of float32), checked before anything is
/// allocated.
pub const MAX_VALUES: usize = 1 << 28;

/// One tensor of a spec.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct FormulaEntry {
    /// The tensor's key in the weights file.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The factor applied to the uniform values in `[-1, 1)`.
    pub scale: f32,
    /// The constant added after scaling.
    pub offset: f32,
}

/// A whole spec: the seed and the tensors.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct FormulaSpec {
    /// The seed every tensor's stream is derived from.
    pub seed: u64,
    /// The tensors, in the order they are written.
    pub tensors: Vec<FormulaEntry>,
    /// Where the spec was read from (for errors).
    #[serde(skip)]
    pub origin: PathBuf,
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n` uniform values in `[-1, 1)` of tensor `name` under `seed`.
pub fn uniform(seed: u64, name: &str, n: usize) -> Vec<f32> {
    let base = fnv1a64(&format!("{seed}:{name}"));
    (1..=n as u64)
        .map(|i| {
            let k = (mix(base.wrapping_add(i.wrapping_mul(GOLDEN))) >> 40) as f32;
            k * (1.0 / (1u32 << 23) as f32) - 1.0
        })
        .collect()
}

impl FormulaSpec {
    /// Reads and checks a spec (JSON).
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut spec: FormulaSpec = crate::config::read_json(path)?;
        spec.origin = path.to_path_buf();
        spec.validate()?;
        Ok(spec)
    }

    /// Rejects empty or duplicate names, non-finite factors and sizes over [`MAX_VALUES`].
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, reason: &str| CoreError::UnsupportedConfig {
            path: self.origin.clone(),
            key: key.to_string(),
            value,
            reason: reason.to_string(),
        };
        let mut total = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tensors {
            if t.name.is_empty() || !seen.insert(t.name.as_str()) {
                return Err(bad("name", format!("{:?}", t.name), "empty or repeated"));
            }
            if !t.scale.is_finite() || !t.offset.is_finite() {
                return Err(bad(
                    &t.name,
                    format!("{} / {}", t.scale, t.offset),
                    "not finite",
                ));
            }
            let n = t
                .shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .filter(|&n| n <= MAX_VALUES);
            total = n
                .and_then(|n| total.checked_add(n))
                .filter(|&t| t <= MAX_VALUES)
                .ok_or_else(|| {
                    bad(
                        &t.name,
                        format!("{:?}", t.shape),
                        "more values than a spec may hold",
                    )
                })?;
        }
        Ok(())
    }

    /// The values of one entry.
    pub fn materialise(&self, entry: &FormulaEntry) -> NamedTensor {
        let n = entry.shape.iter().product();
        let data = uniform(self.seed, &entry.name, n)
            .into_iter()
            .map(|u| u * entry.scale + entry.offset)
            .collect();
        NamedTensor {
            name: entry.name.clone(),
            shape: entry.shape.clone(),
            data,
        }
    }

    /// Writes every tensor as a float32 safetensors file (atomically).
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let tensors: Vec<NamedTensor> = self.tensors.iter().map(|e| self.materialise(e)).collect();
        write_safetensors_f32(path, &tensors, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_the_python_twin() {
        // `formula.uniform(7, "conv.weight", 4)` and `formula.materialise` in
        // tools/fixtures/formula.py (numpy).
        let u = uniform(7, "conv.weight", 4);
        let bits: Vec<u32> = u.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, [0xbf2e_3938, 0x3d27_3d60, 0xbf3f_1840, 0x3f0e_44c8]);
        assert!(u.iter().all(|v| (-1.0..1.0).contains(v)));
    }

    #[test]
    fn rejects_absurd_sizes_and_repeats() {
        let entry = |name: &str, shape: Vec<usize>| FormulaEntry {
            name: name.into(),
            shape,
            scale: 1.0,
            offset: 0.0,
        };
        let spec = |tensors| FormulaSpec {
            seed: 1,
            tensors,
            origin: PathBuf::from("spec.json"),
        };
        assert!(
            spec(vec![entry("a", vec![1 << 20, 1 << 20])])
                .validate()
                .is_err()
        );
        assert!(
            spec(vec![entry("a", vec![2]), entry("a", vec![2])])
                .validate()
                .is_err()
        );
        assert!(
            spec(vec![entry("a", vec![usize::MAX, 2])])
                .validate()
                .is_err()
        );
        assert!(spec(vec![entry("a", vec![3, 2])]).validate().is_ok());
    }
}
