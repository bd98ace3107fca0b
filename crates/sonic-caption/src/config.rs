//! `config.json` of a transformers `BlipForConditionalGeneration` (`BlipConfig` with its
//! `vision_config` and `text_config`), with transformers 5.24's defaults for absent keys and
//! validation before anything is allocated: every size positive and under the sanity limits of
//! [`sonic_core::config::limits`], heads that divide the widths, special ids inside the
//! vocabulary, a parameter count under [`MAX_PARAMETERS`]. Errors name the file, the key and
//! the value.
//!
//! As `BlipConfig.__post_init__`, the text decoder's cross-attention width
//! (`encoder_hidden_size`) is always the vision tower's `hidden_size`, whatever the text config
//! says. Keys transformers keeps but this model does not use (the legacy generation settings
//! of old configs, `projection_dim`, dropouts, ...) are ignored.

use crate::error::CaptionError;
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid, silu};
use serde::Deserialize;
use sonic_core::config::{check_limit, limits, unsupported};
use std::path::Path;

/// The largest number of parameters a config may imply (2^32, 16 GiB in float32; BLIP-large
/// has 0.47 billion), checked before the model is allocated.
pub const MAX_PARAMETERS: usize = 1 << 32;

/// The largest image side (`image_size`) accepted.
pub const MAX_IMAGE_SIZE: usize = sonic_clip::image_processor::MAX_SIDE;

/// The `hidden_act` values [`Activation::parse`] accepts.
pub const SUPPORTED_ACTIVATIONS: &str =
    "supported: gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, quick_gelu, relu, silu";

/// The activations transformers' `ACT2FN` maps BLIP's `hidden_act` to (those supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: exact GELU, `x * Phi(x)` (BLIP's).
    Gelu,
    /// `gelu_new`, `gelu_fast`, `gelu_pytorch_tanh`: the tanh approximation of GELU.
    GeluTanh,
    /// `quick_gelu`: `x * sigmoid(1.702 x)`.
    QuickGelu,
    /// `relu`.
    Relu,
    /// `silu` / `swish`: `x * sigmoid(x)`.
    Silu,
}

impl Activation {
    /// Parses `hidden_act`; anything else is an error naming the file, key and value.
    pub fn parse(name: &str, origin: &Path, key: &str) -> Result<Self, CaptionError> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => {
                return Err(unsupported(origin, key, other, SUPPORTED_ACTIVATIONS).into());
            }
        })
    }

    /// Applies the activation element-wise.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_approximate(x),
            Activation::QuickGelu => x.clone() * sigmoid(x.mul_scalar(1.702)),
            Activation::Relu => relu(x),
            Activation::Silu => silu(x),
        }
    }
}

/// `vision_config`: BLIP's vision transformer (`BlipVisionConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct BlipVisionConfig {
    /// Width of the residual stream (768).
    #[serde(default = "d768")]
    pub hidden_size: usize,
    /// Width of the MLP (3072).
    #[serde(default = "d3072")]
    pub intermediate_size: usize,
    /// Attention heads (12).
    #[serde(default = "d12")]
    pub num_attention_heads: usize,
    /// Encoder layers (12).
    #[serde(default = "d12")]
    pub num_hidden_layers: usize,
    /// Side of the square image the position table is made for (384).
    #[serde(default = "d384")]
    pub image_size: usize,
    /// Side of a patch (16).
    #[serde(default = "d16")]
    pub patch_size: usize,
    /// The MLP activation (`gelu`).
    #[serde(default = "gelu_name")]
    pub hidden_act: String,
    /// Epsilon of every LayerNorm (1e-5).
    #[serde(default = "eps_vision")]
    pub layer_norm_eps: f64,
}

/// One id or several (transformers' `eos_token_id: int | list[int]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TokenIds {
    /// One id.
    One(i64),
    /// Several ids.
    Many(Vec<i64>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `text_config`: BLIP's text decoder (`BlipTextConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct BlipTextConfig {
    /// Vocabulary size (30524: BERT's 30522 + `[DEC]` + `[ENC]`).
    #[serde(default = "d30524")]
    pub vocab_size: usize,
    /// Width of the residual stream (768).
    #[serde(default = "d768")]
    pub hidden_size: usize,
    /// Width of the feed-forward layer (3072).
    #[serde(default = "d3072")]
    pub intermediate_size: usize,
    /// Attention heads (transformers' default 8; the released checkpoints say 12).
    #[serde(default = "d8")]
    pub num_attention_heads: usize,
    /// Decoder layers (12).
    #[serde(default = "d12")]
    pub num_hidden_layers: usize,
    /// Positions (512).
    #[serde(default = "d512")]
    pub max_position_embeddings: usize,
    /// The activation of the feed-forward layer and of the LM head's transform (`gelu`).
    #[serde(default = "gelu_name")]
    pub hidden_act: String,
    /// Epsilon of every LayerNorm (1e-12).
    #[serde(default = "eps_text")]
    pub layer_norm_eps: f64,
    /// The id generation starts from (`[DEC]`, 30522); `BlipForConditionalGeneration.generate`
    /// writes it over the first prompt id.
    #[serde(default = "bos_default")]
    pub bos_token_id: Option<i64>,
    /// transformers' `eos_token_id` (2); BLIP's `generate` does not stop at it but at
    /// [`Self::sep_token_id`].
    #[serde(default = "eos_default")]
    pub eos_token_id: Option<TokenIds>,
    /// The padding id (0).
    #[serde(default = "pad_default")]
    pub pad_token_id: Option<i64>,
    /// `[SEP]` (102): the id captions end with (generate's stop token).
    #[serde(default = "sep_default")]
    pub sep_token_id: Option<i64>,
    /// Must be true: only a decoder has the cross-attention to the image.
    #[serde(default = "yes")]
    pub is_decoder: bool,
    /// Whether the LM head shares the word embeddings (true).
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct RawBlipConfig {
    #[serde(default)]
    vision_config: Option<serde_json::Value>,
    #[serde(default)]
    text_config: Option<serde_json::Value>,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
}

/// `config.json` of a `BlipForConditionalGeneration`, validated.
#[derive(Debug, Clone)]
pub struct BlipConfig {
    /// The vision tower.
    pub vision: BlipVisionConfig,
    /// The text decoder.
    pub text: BlipTextConfig,
    /// The top-level `tie_word_embeddings` (true).
    pub tie_word_embeddings: bool,
    /// The vision tower's activation.
    pub vision_act: Activation,
    /// The text decoder's activation.
    pub text_act: Activation,
}

impl BlipConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, CaptionError> {
        let raw: RawBlipConfig = sonic_core::config::read_json(path)?;
        let empty = || serde_json::Value::Object(serde_json::Map::new());
        let sub = |value: Option<serde_json::Value>, key: &str| match value {
            None | Some(serde_json::Value::Null) => Ok(empty()),
            Some(v @ serde_json::Value::Object(_)) => Ok(v),
            Some(other) => Err(CaptionError::from(unsupported(
                path,
                key,
                other,
                "expected an object",
            ))),
        };
        let vision: BlipVisionConfig =
            sonic_core::config::from_value(&sub(raw.vision_config, "vision_config")?, path)?;
        let text: BlipTextConfig =
            sonic_core::config::from_value(&sub(raw.text_config, "text_config")?, path)?;
        Self::new(vision, text, raw.tie_word_embeddings, path)
    }

    /// Validates a config assembled in memory (`origin` names it in errors).
    pub fn new(
        vision: BlipVisionConfig,
        text: BlipTextConfig,
        tie_word_embeddings: bool,
        origin: &Path,
    ) -> Result<Self, CaptionError> {
        let vision_act = Activation::parse(&vision.hidden_act, origin, "vision_config.hidden_act")?;
        let text_act = Activation::parse(&text.hidden_act, origin, "text_config.hidden_act")?;
        let config = Self {
            vision,
            text,
            tie_word_embeddings,
            vision_act,
            text_act,
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// Whether transformers ties the LM head to the word embeddings (either flag set: the
    /// model's and the text decoder's tying rules are both applied).
    pub fn ties_embeddings(&self) -> bool {
        self.tie_word_embeddings || self.text.tie_word_embeddings
    }

    /// Patches along each side of the `image_size` square.
    pub fn patches_per_side(&self) -> usize {
        self.vision.image_size / self.vision.patch_size.max(1)
    }

    /// Rows of the vision position table: the class token and one per patch.
    pub fn vision_positions(&self) -> usize {
        1 + self.patches_per_side() * self.patches_per_side()
    }

    /// The number of parameters the config implies (untied LM head counted once more).
    pub fn parameter_count(&self) -> usize {
        let v = &self.vision;
        let t = &self.text;
        let (hv, ht) = (v.hidden_size, t.hidden_size);
        let vision_layer = 3 * hv * hv
            + 3 * hv
            + hv * hv
            + hv
            + 4 * hv
            + 2 * hv * v.intermediate_size
            + v.intermediate_size
            + hv;
        let vision = hv * 3 * v.patch_size * v.patch_size
            + hv
            + hv
            + self.vision_positions() * hv
            + v.num_hidden_layers * vision_layer
            + 2 * hv;
        let self_attn = 4 * ht * ht + 4 * ht + 2 * ht;
        let cross = 2 * ht * ht + 2 * ht * hv + 4 * ht + 2 * ht;
        let ffn = 2 * ht * t.intermediate_size + t.intermediate_size + ht + 2 * ht;
        let text = t.vocab_size * ht
            + t.max_position_embeddings * ht
            + 2 * ht
            + t.num_hidden_layers * (self_attn + cross + ffn)
            + ht * ht
            + 3 * ht
            + 2 * t.vocab_size
            + t.vocab_size * ht;
        vision + text
    }

    fn validate(&self, origin: &Path) -> Result<(), CaptionError> {
        let v = &self.vision;
        let t = &self.text;
        let positive = |key: &str, value: usize| -> Result<(), CaptionError> {
            if value == 0 {
                return Err(unsupported(origin, key, value, "must be positive").into());
            }
            Ok(())
        };
        for (key, value, max) in [
            (
                "vision_config.hidden_size",
                v.hidden_size,
                limits::MAX_WIDTH,
            ),
            (
                "vision_config.intermediate_size",
                v.intermediate_size,
                limits::MAX_WIDTH,
            ),
            (
                "vision_config.num_hidden_layers",
                v.num_hidden_layers,
                limits::MAX_LAYERS,
            ),
            (
                "vision_config.num_attention_heads",
                v.num_attention_heads,
                limits::MAX_HEADS,
            ),
            ("vision_config.image_size", v.image_size, MAX_IMAGE_SIZE),
            ("vision_config.patch_size", v.patch_size, MAX_IMAGE_SIZE),
            ("text_config.vocab_size", t.vocab_size, limits::MAX_VOCAB),
            ("text_config.hidden_size", t.hidden_size, limits::MAX_WIDTH),
            (
                "text_config.intermediate_size",
                t.intermediate_size,
                limits::MAX_WIDTH,
            ),
            (
                "text_config.num_hidden_layers",
                t.num_hidden_layers,
                limits::MAX_LAYERS,
            ),
            (
                "text_config.num_attention_heads",
                t.num_attention_heads,
                limits::MAX_HEADS,
            ),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
                limits::MAX_POSITIONS,
            ),
        ] {
            positive(key, value)?;
            check_limit(origin, key, value, max)?;
        }
        for (key, width, heads) in [
            (
                "vision_config.num_attention_heads",
                v.hidden_size,
                v.num_attention_heads,
            ),
            (
                "text_config.num_attention_heads",
                t.hidden_size,
                t.num_attention_heads,
            ),
        ] {
            if !width.is_multiple_of(heads) {
                return Err(unsupported(
                    origin,
                    key,
                    heads,
                    &format!("must divide hidden_size = {width}"),
                )
                .into());
            }
        }
        if v.patch_size > v.image_size {
            return Err(unsupported(
                origin,
                "vision_config.patch_size",
                v.patch_size,
                &format!("larger than image_size = {}", v.image_size),
            )
            .into());
        }
        check_limit(
            origin,
            "vision_config.image_size / patch_size (positions)",
            self.vision_positions(),
            limits::MAX_POSITIONS,
        )?;
        for (key, eps) in [
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
            ("text_config.layer_norm_eps", t.layer_norm_eps),
        ] {
            if !(eps.is_finite() && eps > 0.0) {
                return Err(unsupported(origin, key, eps, "must be a positive number").into());
            }
        }
        if !t.is_decoder {
            return Err(unsupported(
                origin,
                "text_config.is_decoder",
                false,
                "the captioner's text model must be a decoder (it has the cross-attention)",
            )
            .into());
        }
        let mut ids = vec![
            ("text_config.bos_token_id", t.bos_token_id),
            ("text_config.pad_token_id", t.pad_token_id),
            ("text_config.sep_token_id", t.sep_token_id),
        ];
        let eos = t
            .eos_token_id
            .as_ref()
            .map(TokenIds::to_vec)
            .unwrap_or_default();
        ids.extend(eos.iter().map(|&id| ("text_config.eos_token_id", Some(id))));
        for (key, id) in ids {
            if let Some(id) = id
                && (id < 0 || id as u64 >= t.vocab_size as u64)
            {
                return Err(unsupported(
                    origin,
                    key,
                    id,
                    &format!("outside the vocabulary of {}", t.vocab_size),
                )
                .into());
            }
        }
        // Widths are at most 2^16 and counts at most 2^22 here, so the sum fits in u64 / usize
        // on 64-bit targets; checked arithmetic would only matter on 32-bit ones.
        let params = self.parameter_count();
        if params > MAX_PARAMETERS {
            return Err(unsupported(
                origin,
                "config (parameter count)",
                params,
                &format!("above this implementation's sanity limit of {MAX_PARAMETERS}"),
            )
            .into());
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn gelu_name() -> String {
    "gelu".into()
}
fn eps_vision() -> f64 {
    1e-5
}
fn eps_text() -> f64 {
    1e-12
}
fn d8() -> usize {
    8
}
fn d12() -> usize {
    12
}
fn d16() -> usize {
    16
}
fn d384() -> usize {
    384
}
fn d512() -> usize {
    512
}
fn d768() -> usize {
    768
}
fn d3072() -> usize {
    3072
}
fn d30524() -> usize {
    30524
}
fn bos_default() -> Option<i64> {
    Some(30522)
}
fn eos_default() -> Option<TokenIds> {
    Some(TokenIds::One(2))
}
fn pad_default() -> Option<i64> {
    Some(0)
}
fn sep_default() -> Option<i64> {
    Some(102)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_are_the_base_model() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlipConfig::from_file(&write(dir.path(), "{}")).unwrap();
        assert_eq!(c.vision.image_size, 384);
        assert_eq!(c.vision_positions(), 577);
        assert_eq!(c.text.num_attention_heads, 8);
        assert_eq!(c.text.bos_token_id, Some(30522));
        assert_eq!(c.text.sep_token_id, Some(102));
        assert_eq!(c.text.eos_token_id, Some(TokenIds::One(2)));
        assert!(c.ties_embeddings());
        // BLIP base: ~224M parameters, the LM head counted once more here.
        let n = c.parameter_count();
        assert!((200_000_000..300_000_000).contains(&n), "{n}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (text, key) in [
            (
                r#"{"vision_config": {"hidden_size": 30}}"#,
                "vision_config.num_attention_heads",
            ),
            (
                r#"{"text_config": {"hidden_act": "tanh"}}"#,
                "text_config.hidden_act",
            ),
            (
                r#"{"text_config": {"sep_token_id": 40000}}"#,
                "text_config.sep_token_id",
            ),
            (
                r#"{"text_config": {"is_decoder": false}}"#,
                "text_config.is_decoder",
            ),
            (
                r#"{"vision_config": {"patch_size": 500}}"#,
                "vision_config.patch_size",
            ),
            (
                r#"{"text_config": {"vocab_size": 0}}"#,
                "text_config.vocab_size",
            ),
            (
                concat!(
                    r#"{"text_config": {"vocab_size": 4000000, "hidden_size": 4096, "#,
                    r#""num_attention_heads": 8}}"#
                ),
                "parameter count",
            ),
            (r#"{"vision_config": 3}"#, "vision_config"),
        ] {
            let e = BlipConfig::from_file(&write(dir.path(), text)).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(key) && msg.contains("config.json"),
                "{text}: {msg}"
            );
        }
        let e = BlipConfig::from_file(&write(
            dir.path(),
            r#"{"text_config": {"hidden_size": "x"}}"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
    }

    #[test]
    fn null_ids_and_id_lists_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlipConfig::from_file(&write(
            dir.path(),
            r#"{"text_config": {"bos_token_id": null, "eos_token_id": [2, 102]}}"#,
        ))
        .unwrap();
        assert_eq!(c.text.bos_token_id, None);
        assert_eq!(c.text.eos_token_id.unwrap().to_vec(), vec![2, 102]);
    }
}
