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
//! The file is read by [`sonic_core::checkpoint::Checkpoint`] ([`open`]); before anything is
//! applied, every key and shape is compared with the projector; a file that does not fit gives
//! a [`sonic_core::CoreError`] listing the first mismatches in the file's naming.

use crate::model::Projector;
use sonic_core::checkpoint::Checkpoint;
use sonic_core::weights::{LoadOptions, Remap, expected_tensors};
use std::collections::BTreeMap;
use std::path::Path;

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

/// The key whose position in a nested state dict tells the prefix.
const ANCHOR_KEY: &str = r"to_out_adapter\.0\.weight";

/// Indexes a projector weights file (safetensors or torch pickle, detected from the bytes),
/// its state dict found by `to_out_adapter.0.weight` (see [`Checkpoint::open_anchored`]). No
/// tensor data is read.
pub fn open(path: &Path) -> sonic_core::error::Result<Checkpoint> {
    Checkpoint::open_anchored(path, ANCHOR_KEY)
}

/// The load options of a projector file: [`remaps`], with [`module_to_file_key`] naming
/// missing tensors as the file would.
pub fn load_options() -> LoadOptions {
    LoadOptions {
        remaps: remaps(),
        file_key: Some(module_to_file_key),
        ..Default::default()
    }
}

/// Every tensor of `projector` in the official state dict's naming and layout: key -> shape
/// (read from the module's parameters without allocating them).
pub fn file_shapes(projector: &Projector) -> BTreeMap<String, Vec<usize>> {
    expected_tensors(projector)
        .into_iter()
        .map(|(k, s)| (module_to_file_key(&k), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectorConfig;

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
        for key in ProjectorConfig::official()
            .expected_shapes()
            .unwrap()
            .keys()
        {
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
}
