//! The CLIP text encoder (transformers' `CLIPTextModel`), as used by Stable Diffusion.
//!
//! Field names mirror transformers' parameter names (`embeddings.token_embedding`,
//! `encoder.layers.N.self_attn.q_proj`, `final_layer_norm`, ...), so weights load one to one;
//! the `text_model.` prefix of full CLIP checkpoints is stripped on load.

use crate::error::ClipError;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
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
}

fn default_eps() -> f64 {
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
        match self.hidden_act.as_str() {
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

    fn validate(&self, origin: &Path) -> Result<(), ClipError> {
        self.activation(origin)?;
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(sonic_core::config::unsupported(
                origin,
                "num_attention_heads",
                self.num_attention_heads,
                &format!("must divide hidden_size = {}", self.hidden_size),
            )
            .into());
        }
        for (key, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return Err(
                    sonic_core::config::unsupported(origin, key, v, "must be positive").into(),
                );
            }
        }
        use sonic_core::config::{check_limit, limits};
        check_limit(origin, "hidden_size", self.hidden_size, limits::MAX_WIDTH)?;
        check_limit(
            origin,
            "intermediate_size",
            self.intermediate_size,
            limits::MAX_WIDTH,
        )?;
        check_limit(
            origin,
            "num_hidden_layers",
            self.num_hidden_layers,
            limits::MAX_LAYERS,
        )?;
        check_limit(
            origin,
            "num_attention_heads",
            self.num_attention_heads,
            limits::MAX_HEADS,
        )?;
        check_limit(
            origin,
            "max_position_embeddings",
            self.max_position_embeddings,
            limits::MAX_POSITIONS,
        )?;
        check_limit(origin, "vocab_size", self.vocab_size, limits::MAX_VOCAB)?;
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

/// Causal multi-head self-attention with biased projections.
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads.
    pub num_heads: usize,
}

impl ClipAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, c] = x.dims();
        let h = self.num_heads;
        let split = |t: Tensor<3>| t.reshape([b, s, h, c / h]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let o = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([b, s, c]);
        self.out_proj.forward(o)
    }
}

/// The two-layer MLP.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// `hidden -> intermediate`.
    pub fc1: Linear,
    /// `intermediate -> hidden`.
    pub fc2: Linear,
    /// Whether the activation is quick-GELU (else exact GELU).
    pub quick_gelu: bool,
}

impl ClipMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.fc1.forward(x);
        let h = if self.quick_gelu {
            h.clone() * sigmoid(h.mul_scalar(1.702))
        } else {
            gelu(h)
        };
        self.fc2.forward(h)
    }
}

/// One pre-norm transformer layer.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Self-attention.
    pub self_attn: ClipAttention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// MLP.
    pub mlp: ClipMlp,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm,
}

impl ClipEncoderLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// The stack of encoder layers.
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The layers, in order.
    pub layers: Vec<ClipEncoderLayer>,
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
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..config.num_hidden_layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention {
                    q_proj: lin(c, c),
                    k_proj: lin(c, c),
                    v_proj: lin(c, c),
                    out_proj: lin(c, c),
                    num_heads: config.num_attention_heads,
                },
                layer_norm1: ln(),
                mlp: ClipMlp {
                    fc1: lin(c, config.intermediate_size),
                    fc2: lin(config.intermediate_size, c),
                    quick_gelu: act == HiddenAct::QuickGelu,
                },
                layer_norm2: ln(),
            })
            .collect();
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(config.vocab_size, c).init(device),
                position_embedding: EmbeddingConfig::new(config.max_position_embeddings, c)
                    .init(device),
            },
            encoder: ClipEncoder { layers },
            final_layer_norm: ln(),
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
        let mut x = self.embeddings.token_embedding.forward(input_ids)
            + self.embeddings.position_embedding.forward(positions);
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        Ok(self.final_layer_norm.forward(x))
    }
}
