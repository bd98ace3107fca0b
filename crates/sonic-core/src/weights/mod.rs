//! Loading weights into Burn modules.
//!
//! Module field names mirror the PyTorch (diffusers / transformers) parameter names, so a
//! file key maps to a module path one to one; where a model needs it, a list of regex
//! [`Remap`] rules rewrites file keys first. The file is read by [`Checkpoint`] (safetensors
//! or torch pickle); before any tensor is applied, its tensors are checked against the module:
//! every missing tensor, unexpected tensor and shape mismatch is reported in the file's own
//! naming (PyTorch names and shapes: `weight`/`bias` for norms, `[out, in]` for linear
//! weights) with the file path. Half-precision files are cast to the run dtype (`f32`).
//!
//! - [`names`]: the PyTorch names and shapes a module expects, compared with a file's;
//! - [`finite`]: the check that loaded weights hold no NaN or infinity;
//! - [`remap`]: key rewrite rules;
//! - [`tensor_file`]: plain `f32` safetensors files on the host (caches, exports).

pub(crate) mod adapter;
pub mod finite;
pub(crate) mod mapping;
pub mod names;
pub mod remap;
pub mod tensor_file;

pub use crate::checkpoint::{Checkpoint, CheckpointFormat, HeaderEntry, read_safetensors_header};
pub use finite::check_finite;
pub use names::{check_tensors, check_tensors_named, expected_tensors};
pub use remap::Remap;
pub use tensor_file::{NamedTensor, read_safetensors_f32, view_to_f32, write_safetensors_f32};

use crate::error::{CoreError, Result};
use burn::module::Module;
use burn::store::ModuleSnapshot;
use std::path::{Path, PathBuf};

/// Options for [`load_weights`] and [`Checkpoint::load_into`].
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
    /// The inverse of [`Self::remaps`] for keys the file lacks: a module path to the key the
    /// file should hold, so that a missing tensor is named as the file would spell it (by
    /// default the module path itself).
    pub file_key: Option<fn(&str) -> String>,
}

/// Loads a weights file (safetensors or torch pickle, detected from the bytes) into `module`,
/// which must mirror the file's PyTorch names: [`Checkpoint::open`] then
/// [`Checkpoint::load_into`].
pub fn load_weights<M>(module: M, path: &Path, options: &LoadOptions) -> Result<M>
where
    M: Module + ModuleSnapshot,
{
    Checkpoint::open(path)?.load_into(module, options)
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
