//! On-disk caches of what the frozen models compute from the training data: CLAP embeddings
//! of the clips, CLIP text embeddings of the captions, VAE latents of the images. Each value is
//! computed once and reused by later runs and tuning trials.
//!
//! ## Keys and layout
//!
//! ```text
//! <cache>/<kind>/<model-id>/<ab>/<input-hash>.safetensors
//! ```
//!
//! - `kind`: `clap`, `text` or `latents`.
//! - `input-hash`: sha256 of the input's bytes: the audio or image **file content** (so a
//!   renamed or moved file still hits, an edited one misses), or the caption's UTF-8 bytes.
//!   `ab` is its first two hex digits (keeps folders small).
//! - `model-id`: the first 32 hex digits of sha256 over the **full content of the model's
//!   weight files** plus the preprocessing parameters that change the output (e.g. the image
//!   resolution, the CLAP crop rule); see [`ModelId`]. Hashing gigabytes on every run would
//!   be slow, so the file hashes are memoised in `<cache>/file-hashes.json`, keyed by the
//!   canonical path, size and modification time: a weight file is re-hashed only when one of
//!   those changes.
//!
//! Each entry holds one float32 tensor named `value` and is written atomically (a temporary
//! file renamed into place), so concurrent runs and crashes never leave a torn entry; a corrupt entry (e.g. a
//! truncated copy) is an error naming the file.

use crate::error::{Result, TrainError};
use burn::tensor::{Device, Tensor, TensorData};
use sha2::{Digest, Sha256};
use sonic_core::weights::{NamedTensor, read_safetensors_f32, write_safetensors_f32};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex sha256 of a file's content (streamed).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// The identity of a model for cache keys (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId(pub String);

/// What the cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries read from disk.
    pub hits: usize,
    /// Entries computed (model calls, one per input).
    pub computed: usize,
}

/// The cache folder.
#[derive(Debug)]
pub struct EmbeddingCache {
    root: PathBuf,
    stats: BTreeMap<&'static str, CacheStats>,
}

impl EmbeddingCache {
    /// Opens (creates) a cache folder.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        Ok(Self {
            root: root.to_path_buf(),
            stats: BTreeMap::new(),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Hits and computations of `kind` so far.
    pub fn stats(&self, kind: &str) -> CacheStats {
        self.stats.get(kind).copied().unwrap_or_default()
    }

    /// Hits and computations over all kinds.
    pub fn total(&self) -> CacheStats {
        self.stats
            .values()
            .fold(CacheStats::default(), |a, s| CacheStats {
                hits: a.hits + s.hits,
                computed: a.computed + s.computed,
            })
    }

    /// The identity of a model made of `files` (weights, configs) and `params` (preprocessing
    /// that changes the output), using the memoised file hashes.
    pub fn model_id(&self, files: &[&Path], params: &str) -> Result<ModelId> {
        let memo_path = self.root.join("file-hashes.json");
        let mut memo: BTreeMap<String, String> = match std::fs::read(&memo_path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => BTreeMap::new(),
        };
        let mut h = Sha256::new();
        let mut changed = false;
        for f in files {
            let canon = f.canonicalize().map_err(|e| TrainError::io(*f, e))?;
            let meta = std::fs::metadata(&canon).map_err(|e| TrainError::io(&canon, e))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let key = format!("{}|{}|{}", canon.display(), meta.len(), mtime);
            let digest = match memo.get(&key) {
                Some(d) => d.clone(),
                None => {
                    let d = sha256_file(&canon)?;
                    memo.insert(key, d.clone());
                    changed = true;
                    d
                }
            };
            h.update(digest.as_bytes());
        }
        h.update(params.as_bytes());
        if changed {
            let bytes = serde_json::to_vec_pretty(&memo).map_err(|e| TrainError::Cache {
                path: memo_path.clone(),
                message: e.to_string(),
            })?;
            sonic_core::config::write_atomic(&memo_path, &bytes)?;
        }
        Ok(ModelId(hex(&h.finalize())[..32].to_string()))
    }

    fn entry(&self, kind: &str, model: &ModelId, key: &str) -> PathBuf {
        self.entry_with(kind, model, key, "safetensors")
    }

    fn entry_with(&self, kind: &str, model: &ModelId, key: &str, ext: &str) -> PathBuf {
        self.root
            .join(kind)
            .join(&model.0)
            .join(key.get(..2).unwrap_or("__"))
            .join(format!("{key}.{ext}"))
    }

    /// A cached text value of `kind` under `model` for the input hash `key` (e.g. a caption of
    /// an image: `<kind>/<model-id>/<ab>/<key>.txt`), counted as a hit; `None` when absent.
    pub fn get_text(
        &mut self,
        kind: &'static str,
        model: &ModelId,
        key: &str,
    ) -> Result<Option<String>> {
        let path = self.entry_with(kind, model, key, "txt");
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| TrainError::Cache {
            path: path.clone(),
            message: "not UTF-8".into(),
        })?;
        self.stats.entry(kind).or_default().hits += 1;
        Ok(Some(text))
    }

    /// Stores a text value (atomically), counted as computed.
    pub fn put_text(
        &mut self,
        kind: &'static str,
        model: &ModelId,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let path = self.entry_with(kind, model, key, "txt");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        }
        sonic_core::config::write_atomic(&path, value.as_bytes())?;
        self.stats.entry(kind).or_default().computed += 1;
        Ok(())
    }

    /// Values for `keys` (input hashes) of `kind` under `model`: read from disk when present,
    /// otherwise computed by `compute` (called once with all the missing keys' positions, must
    /// return one `[shape]` tensor per position, stacked as `[k, shape...]`) and stored.
    /// Returns the values stacked in `keys` order on `device`.
    pub fn get_or_compute<const D: usize>(
        &mut self,
        kind: &'static str,
        model: &ModelId,
        keys: &[String],
        device: &Device,
        compute: &mut dyn FnMut(&[usize]) -> Result<Tensor<D>>,
    ) -> Result<Tensor<D>> {
        let mut values: Vec<Option<(Vec<usize>, Vec<f32>)>> = vec![None; keys.len()];
        let mut missing = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let path = self.entry(kind, model, k);
            if path.is_file() {
                let t = read_safetensors_f32(&path).map_err(|e| TrainError::Cache {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let v =
                    t.into_iter()
                        .find(|t| t.name == "value")
                        .ok_or_else(|| TrainError::Cache {
                            path: path.clone(),
                            message: "no tensor `value`".into(),
                        })?;
                values[i] = Some((v.shape, v.data));
                self.stats.entry(kind).or_default().hits += 1;
            } else {
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            let t = compute(&missing)?;
            let dims = t.dims();
            if dims[0] != missing.len() {
                return Err(TrainError::bad_input(
                    format!("{kind} cache computation"),
                    format!("{} rows", missing.len()),
                    dims,
                ));
            }
            let host = sonic_core::fixtures::to_host(&t)?;
            let per: usize = dims[1..].iter().product();
            for (j, &i) in missing.iter().enumerate() {
                let data = host[j * per..(j + 1) * per].to_vec();
                let shape = dims[1..].to_vec();
                let path = self.entry(kind, model, &keys[i]);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
                }
                write_safetensors_f32(
                    &path,
                    &[NamedTensor {
                        name: "value".into(),
                        shape: shape.clone(),
                        data: data.clone(),
                    }],
                    None,
                )?;
                values[i] = Some((shape, data));
                self.stats.entry(kind).or_default().computed += 1;
            }
        }
        let mut shape: Option<Vec<usize>> = None;
        let mut flat = Vec::new();
        for (i, v) in values.into_iter().enumerate() {
            let (s, d) = v.ok_or_else(|| TrainError::Cache {
                path: self.entry(kind, model, &keys[i]),
                message: "entry neither read nor computed".into(),
            })?;
            match &shape {
                Some(s0) if *s0 != s => {
                    return Err(TrainError::Cache {
                        path: self.entry(kind, model, &keys[i]),
                        message: format!("shape {s:?} differs from the other entries' {s0:?}"),
                    });
                }
                None => shape = Some(s),
                _ => {}
            }
            flat.extend(d);
        }
        let mut full = [0usize; D];
        full[0] = keys.len();
        let s = shape.unwrap_or_default();
        if s.len() + 1 != D {
            return Err(TrainError::Cache {
                path: self.root.join(kind),
                message: format!("entries of rank {} where {} was expected", s.len(), D - 1),
            });
        }
        full[1..].copy_from_slice(&s);
        Ok(Tensor::from_data(TensorData::new(flat, full), device))
    }

    /// Input hashes of files (sha256 of their content).
    pub fn file_keys(paths: &[PathBuf]) -> Result<Vec<String>> {
        paths.iter().map(|p| sha256_file(p)).collect()
    }

    /// Input hashes of captions (sha256 of their UTF-8 bytes).
    pub fn text_keys(captions: &[String]) -> Vec<String> {
        captions.iter().map(|c| sha256_hex(c.as_bytes())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_computed_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::default();
        let keys = EmbeddingCache::text_keys(&["a".into(), "b".into(), "a".into()]);
        let model = ModelId("m".repeat(32));
        let mut calls = Vec::new();
        let mut compute = |idx: &[usize]| -> Result<Tensor<2>> {
            calls.push(idx.to_vec());
            let v: Vec<f32> = idx.iter().flat_map(|&i| [i as f32, 1.0]).collect();
            Ok(Tensor::from_data(
                TensorData::new(v, [idx.len(), 2]),
                &device,
            ))
        };
        let mut c = EmbeddingCache::open(dir.path()).unwrap();
        let first = c
            .get_or_compute("text", &model, &keys, &device, &mut compute)
            .unwrap();
        assert_eq!(c.stats("text").computed, 3);
        let mut c2 = EmbeddingCache::open(dir.path()).unwrap();
        let again = c2
            .get_or_compute("text", &model, &keys, &device, &mut compute)
            .unwrap();
        assert_eq!(
            c2.stats("text"),
            CacheStats {
                hits: 3,
                computed: 0
            }
        );
        assert_eq!(calls.len(), 1);
        // Key "a" twice: computed twice in the first call (both missing), same bytes on disk.
        let a = sonic_core::fixtures::to_host(&first).unwrap();
        let b = sonic_core::fixtures::to_host(&again).unwrap();
        assert_eq!(b[..2], b[4..]);
        assert_eq!(a[2..4], b[2..4]);
    }

    #[test]
    fn model_ids_follow_file_content_and_params() {
        let dir = tempfile::tempdir().unwrap();
        let c = EmbeddingCache::open(&dir.path().join("cache")).unwrap();
        let w = dir.path().join("w.bin");
        std::fs::write(&w, b"weights-1").unwrap();
        let a = c.model_id(&[&w], "res=512").unwrap();
        assert_eq!(a, c.model_id(&[&w], "res=512").unwrap());
        assert_ne!(a, c.model_id(&[&w], "res=256").unwrap());
        std::fs::write(&w, b"weights-2!").unwrap();
        assert_ne!(a, c.model_id(&[&w], "res=512").unwrap());
    }
}
