//! The CLIP text encoder (transformers' `CLIPTextModel`), as used by Stable Diffusion.
//!
//! Field names mirror transformers' parameter names (`embeddings.token_embedding`,
//! `encoder.layers.N.self_attn.q_proj`, `final_layer_norm`, ...), so weights load one to one;
//! the `text_model.` prefix of full CLIP checkpoints is stripped on load.

use crate::encoder::{ClipEncoder, EncoderShape};
use crate::error::ClipError;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use sonic_core::weights::{LoadOptions, Remap, find_weights, load_weights};
use std::path::Path;

/// The activation of the MLP blocks (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, SD 1.x).
    QuickGelu,
    /// Exact (erf) GELU (OpenCLIP, SD 2.x).
    Gelu,
}

impl HiddenAct {
    /// Parses `hidden_act`; unknown activations are an error naming the value.
    pub fn parse(name: &str, origin: &Path) -> Result<Self, ClipError> {
        match name {
            "quick_gelu" => Ok(HiddenAct::QuickGelu),
            "gelu" => Ok(HiddenAct::Gelu),
            other => Err(sonic_core::config::unsupported(
                origin,
                "hidden_act",
                other,
                "supported: quick_gelu, gelu",
            )
            .into()),
        }
    }
}

/// `config.json` of a `CLIPTextModel` (only the keys that shape the model).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Number of positions (77).
    pub max_position_embeddings: usize,
    /// The MLP activation (`hidden_act`).
    pub hidden_act: String,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Width of the text projection (`CLIPTextModelWithProjection`; absent in SD's
    /// `text_encoder/`).
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// The end-of-text token whose final state is projected. transformers' rule: with the
    /// legacy value 2 (old OpenAI configs) the position of the largest id is used, else the
    /// first position holding this id.
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
}

fn default_eos() -> i64 {
    2
}

pub(crate) fn default_eps() -> f64 {
    1e-5
}

impl ClipTextConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ClipError> {
        let cfg: Self = sonic_core::config::read_json(path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The parsed activation; unknown activations are an error naming the value.
    pub fn activation(&self, origin: &Path) -> Result<HiddenAct, ClipError> {
        HiddenAct::parse(&self.hidden_act, origin)
    }

    /// The shape of the encoder stack (causal).
    pub fn encoder_shape(&self, act: HiddenAct) -> EncoderShape {
        EncoderShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_heads: self.num_attention_heads,
            num_layers: self.num_hidden_layers,
            layer_norm_eps: self.layer_norm_eps,
            act,
            causal: true,
        }
    }

    fn validate(&self, origin: &Path) -> Result<(), ClipError> {
        let act = self.activation(origin)?;
        self.encoder_shape(act).validate(origin)?;
        use sonic_core::config::{check_limit, limits, unsupported};
        for (key, v, max) in [
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                limits::MAX_POSITIONS,
            ),
            ("vocab_size", self.vocab_size, limits::MAX_VOCAB),
        ] {
            if v == 0 {
                return Err(unsupported(origin, key, v, "must be positive").into());
            }
            check_limit(origin, key, v, max)?;
        }
        Ok(())
    }
}

/// Token and position embeddings.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// `[vocab, hidden]`.
    pub token_embedding: Embedding,
    /// `[positions, hidden]`.
    pub position_embedding: Embedding,
}

/// `CLIPTextModel`: token ids `[B, 77]` -> `last_hidden_state` `[B, 77, hidden]`.
#[derive(Module, Debug)]
pub struct ClipTextModel {
    /// Embeddings.
    pub embeddings: ClipTextEmbeddings,
    /// Encoder layers.
    pub encoder: ClipEncoder,
    /// Final LayerNorm.
    pub final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// A model with the shapes of `config` and untrained weights.
    pub fn new(config: &ClipTextConfig, act: HiddenAct, device: &Device) -> Self {
        let c = config.hidden_size;
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(config.vocab_size, c).init(device),
                position_embedding: EmbeddingConfig::new(config.max_position_embeddings, c)
                    .init(device),
            },
            encoder: ClipEncoder::new(&config.encoder_shape(act), device),
            final_layer_norm: LayerNormConfig::new(c)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
        }
    }

    /// Loads a diffusers `text_encoder/` folder (`config.json` and `model.safetensors`, or the
    /// `model.fp16.safetensors` variant, cast to f32).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, ClipError> {
        let cfg_path = dir.join("config.json");
        let config = ClipTextConfig::from_file(&cfg_path)?;
        let act = config.activation(&cfg_path)?;
        let weights = find_weights(dir, "model", false)?;
        Self::from_weights(&config, act, &weights, device)
    }

    /// Builds the model of `config` and loads `weights` (a safetensors file).
    pub fn from_weights(
        config: &ClipTextConfig,
        act: HiddenAct,
        weights: &Path,
        device: &Device,
    ) -> Result<Self, ClipError> {
        let model = load_weights(
            Self::new(config, act, device),
            weights,
            &Self::load_options(),
        )?;
        Ok(model)
    }

    /// The weight-name rewrites from transformers' layout (the `text_model.` prefix of full
    /// CLIP checkpoints dropped, `position_ids` buffers skipped).
    pub fn load_options() -> LoadOptions {
        LoadOptions {
            remaps: vec![Remap::new(r"^text_model\.", "")],
            ignore: vec![r"position_ids$".into()],
            subset: None,
            ..Default::default()
        }
    }

    /// The number of positions (the sequence length every prompt is padded to).
    pub fn max_positions(&self) -> usize {
        self.embeddings.position_embedding.weight.dims()[0]
    }

    /// Encodes token ids (`[B, S]` with `S <= max_positions`) to `last_hidden_state`.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>, ClipError> {
        let [b, s] = input_ids.dims();
        let vocab = self.embeddings.token_embedding.weight.dims()[0];
        if s == 0 || s > self.max_positions() {
            return Err(ClipError::SequenceLength {
                found: s,
                max: self.max_positions(),
            });
        }
        let ids = input_ids.clone().into_data().convert::<i64>();
        if let Ok(values) = ids.try_to_vec::<i64>()
            && let Some(bad) = values.iter().find(|&&v| v < 0 || v as usize >= vocab)
        {
            return Err(ClipError::TokenOutOfRange { id: *bad, vocab });
        }
        let device = input_ids.device();
        let positions = Tensor::<2, Int>::from_data(
            TensorData::new((0..s as i64).collect::<Vec<_>>(), [1, s]),
            &device,
        )
        .repeat_dim(0, b);
        let x = self.embeddings.token_embedding.forward(input_ids)
            + self.embeddings.position_embedding.forward(positions);
        let x = self.encoder.forward(x);
        Ok(self.final_layer_norm.forward(x))
    }
}

/// `CLIPTextModelWithProjection`: token ids `[B, S]` -> `text_embeds` `[B, projection_dim]`
/// (the projected final state of each sequence's end-of-text token, not normalised), as CLIP
/// scores and zero-shot classification use it.
#[derive(Module, Debug)]
pub struct ClipTextModelWithProjection {
    /// The text tower.
    pub text_model: ClipTextModel,
    /// `hidden -> projection_dim`, no bias.
    pub text_projection: burn::nn::Linear,
    /// See [`ClipTextConfig::eos_token_id`].
    pub eos_token_id: i64,
}

impl ClipTextModelWithProjection {
    /// Loads a transformers `CLIPTextModelWithProjection` folder (`config.json` with
    /// `projection_dim`, `model.safetensors`), or the text half of a full `CLIPModel` folder
    /// (its `config.json` has a `text_config`; the image tower's weights are skipped).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, ClipError> {
        let cfg_path = dir.join("config.json");
        let config: ClipTextConfig = crate::vision_model::sub_config(&cfg_path, "text_config")?;
        config.validate(&cfg_path)?;
        let act = config.activation(&cfg_path)?;
        let projection_dim = config.projection_dim.ok_or_else(|| {
            ClipError::from(sonic_core::config::unsupported(
                &cfg_path,
                "projection_dim",
                "null",
                "a text tower with projection needs projection_dim",
            ))
        })?;
        sonic_core::config::check_limit(
            &cfg_path,
            "projection_dim",
            projection_dim,
            sonic_core::config::limits::MAX_WIDTH,
        )?;
        let model = Self {
            text_model: ClipTextModel::new(&config, act, device),
            text_projection: burn::nn::LinearConfig::new(config.hidden_size, projection_dim)
                .with_bias(false)
                .init(device),
            eos_token_id: config.eos_token_id,
        };
        let weights = find_weights(dir, "model", false)?;
        let options = LoadOptions {
            ignore: vec![
                r"position_ids$".into(),
                r"^vision_model\.".into(),
                r"^visual_projection\.".into(),
                r"^logit_scale$".into(),
            ],
            ..Default::default()
        };
        Ok(load_weights(model, &weights, &options)?)
    }

    /// The position of each sequence's end-of-text token (transformers' rule, see
    /// [`ClipTextConfig::eos_token_id`]); an error when a sequence has none.
    pub fn eos_positions(&self, ids: &[i64], seq: usize) -> Result<Vec<usize>, ClipError> {
        ids.chunks(seq.max(1))
            .map(|row| {
                let found = if self.eos_token_id == 2 {
                    row.iter()
                        .enumerate()
                        .rev()
                        .max_by_key(|&(_, v)| *v)
                        .map(|(i, _)| i)
                } else {
                    row.iter().position(|&v| v == self.eos_token_id)
                };
                found.ok_or(ClipError::NoEndOfText {
                    eos: self.eos_token_id,
                })
            })
            .collect()
    }

    /// `text_embeds` `[B, projection_dim]` of token ids `[B, S]`.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<2>, ClipError> {
        let [b, s] = input_ids.dims();
        let ids = input_ids
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| ClipError::from(sonic_core::CoreError::Readback(format!("{e:?}"))))?;
        let positions = self.eos_positions(&ids, s)?;
        let hidden = self.text_model.forward(input_ids)?;
        let device = hidden.device();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(
                positions
                    .iter()
                    .enumerate()
                    .map(|(row, &p)| (row * s + p) as i64)
                    .collect::<Vec<_>>(),
                [b],
            ),
            &device,
        );
        let c = hidden.dims()[2];
        let pooled = hidden.reshape([b * s, c]).select(0, index);
        Ok(self.text_projection.forward(pooled))
    }
}
