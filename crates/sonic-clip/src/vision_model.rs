//! The CLIP image tower with projection (transformers' `CLIPVisionModelWithProjection`): a
//! vision transformer over image patches whose class token, normalised and projected, is the
//! image embedding that CLIP scores, image-image similarity and zero-shot classification use.
//!
//! Field names mirror transformers' parameter names (`vision_model.embeddings.patch_embedding`,
//! `vision_model.pre_layrnorm` (sic), `vision_model.encoder.layers.N...`,
//! `vision_model.post_layernorm`, `visual_projection`), so weights load one to one, from a
//! `CLIPVisionModelWithProjection` folder or from a full `CLIPModel` checkpoint.

use crate::encoder::{ClipEncoder, EncoderShape};
use crate::error::ClipError;
use crate::text_encoder::HiddenAct;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use sonic_core::config::{check_limit, limits, unsupported};
use sonic_core::weights::{LoadOptions, find_weights, load_weights};
use std::path::Path;

/// `config.json` of a `CLIPVisionModelWithProjection` (or the `vision_config` of a
/// `CLIPModel`), the keys that shape the model.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Input channels (3).
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// Side of the (square) input image.
    pub image_size: usize,
    /// Side of a patch.
    pub patch_size: usize,
    /// Width of the image embedding.
    pub projection_dim: Option<usize>,
    /// The MLP activation.
    pub hidden_act: String,
    /// Epsilon of every LayerNorm.
    #[serde(default = "crate::text_encoder::default_eps")]
    pub layer_norm_eps: f64,
}

fn default_channels() -> usize {
    3
}

/// Reads `config.json` as one tower's config: the `key` object of a full `CLIPModel` config
/// (with the top-level `projection_dim` when the tower's own lacks it), else the whole file.
pub(crate) fn sub_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    key: &str,
) -> Result<T, ClipError> {
    let value: serde_json::Value = sonic_core::config::read_json(path)?;
    let value = match value.get(key) {
        Some(serde_json::Value::Object(sub)) => {
            let mut sub = sub.clone();
            if sub.get("projection_dim").is_none_or(|v| v.is_null())
                && let Some(p) = value.get("projection_dim")
            {
                sub.insert("projection_dim".into(), p.clone());
            }
            serde_json::Value::Object(sub)
        }
        _ => value,
    };
    Ok(sonic_core::config::from_value(&value, path)?)
}

impl ClipVisionConfig {
    /// Reads and validates `config.json` (a vision tower's, or a full CLIP model's).
    pub fn from_file(path: &Path) -> Result<Self, ClipError> {
        let cfg: Self = sub_config(path, "vision_config")?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The parsed activation; unknown activations are an error naming the value.
    pub fn activation(&self, origin: &Path) -> Result<HiddenAct, ClipError> {
        HiddenAct::parse(&self.hidden_act, origin)
    }

    /// The shape of the encoder stack (not causal).
    pub fn encoder_shape(&self, act: HiddenAct) -> EncoderShape {
        EncoderShape {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_heads: self.num_attention_heads,
            num_layers: self.num_hidden_layers,
            layer_norm_eps: self.layer_norm_eps,
            act,
            causal: false,
        }
    }

    /// The number of patches along each side.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Rejects values that are not a model this implementation can build.
    pub fn validate(&self, origin: &Path) -> Result<(), ClipError> {
        let act = self.activation(origin)?;
        self.encoder_shape(act).validate(origin)?;
        for (key, v) in [
            ("num_channels", self.num_channels),
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
        ] {
            if v == 0 {
                return Err(unsupported(origin, key, v, "must be positive").into());
            }
        }
        if self.patch_size > self.image_size {
            return Err(unsupported(
                origin,
                "patch_size",
                self.patch_size,
                &format!("larger than image_size = {}", self.image_size),
            )
            .into());
        }
        let projection_dim = self.projection_dim.ok_or_else(|| {
            ClipError::from(unsupported(
                origin,
                "projection_dim",
                "null",
                "an image tower with projection needs projection_dim",
            ))
        })?;
        check_limit(origin, "projection_dim", projection_dim, limits::MAX_WIDTH)?;
        check_limit(
            origin,
            "num_channels",
            self.num_channels,
            limits::MAX_IO_CHANNELS,
        )?;
        let side = self.patches_per_side();
        check_limit(
            origin,
            "image_size / patch_size",
            side * side,
            limits::MAX_POSITIONS,
        )?;
        Ok(())
    }
}

/// The class token, patch and position embeddings.
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// The learned class token `[hidden]`.
    pub class_embedding: Param<Tensor<1>>,
    /// `patch x patch` convolution with stride `patch`, no bias.
    pub patch_embedding: Conv2d,
    /// `[1 + patches, hidden]`.
    pub position_embedding: Embedding,
}

/// The vision transformer (`CLIPVisionTransformer`).
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Embeddings.
    pub embeddings: ClipVisionEmbeddings,
    /// The LayerNorm before the encoder (transformers spells it `pre_layrnorm`).
    pub pre_layrnorm: LayerNorm,
    /// Encoder layers (not causal).
    pub encoder: ClipEncoder,
    /// The LayerNorm of the class token.
    pub post_layernorm: LayerNorm,
}

/// The outputs of the image tower.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput {
    /// The encoder's output `[B, 1 + patches, hidden]` (no final norm).
    pub last_hidden_state: Tensor<3>,
    /// `post_layernorm` of the class token `[B, hidden]`.
    pub pooled: Tensor<2>,
    /// `visual_projection(pooled)` `[B, projection_dim]`, not normalised.
    pub image_embeds: Tensor<2>,
}

/// `CLIPVisionModelWithProjection`: pixel values `[B, C, S, S]` (as
/// [`crate::image_processor::ClipImageProcessor`] makes them) -> [`ClipVisionOutput`].
#[derive(Module, Debug)]
pub struct ClipVisionModelWithProjection {
    /// The vision transformer.
    pub vision_model: ClipVisionTransformer,
    /// `hidden -> projection_dim`, no bias.
    pub visual_projection: Linear,
    /// Side of the input image.
    pub image_size: usize,
    /// Input channels.
    pub num_channels: usize,
}

impl ClipVisionModelWithProjection {
    /// A model with the shapes of a validated `config` and untrained weights.
    pub fn new(config: &ClipVisionConfig, act: HiddenAct, device: &Device) -> Self {
        let c = config.hidden_size;
        let side = config.patches_per_side();
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(config.layer_norm_eps)
                .init(device)
        };
        let shape = config.encoder_shape(act);
        let p = config.patch_size;
        Self {
            vision_model: ClipVisionTransformer {
                embeddings: ClipVisionEmbeddings {
                    class_embedding: Param::from_tensor(Tensor::zeros([c], device)),
                    patch_embedding: Conv2dConfig::new([config.num_channels, c], [p, p])
                        .with_stride([p, p])
                        .with_bias(false)
                        .init(device),
                    position_embedding: EmbeddingConfig::new(1 + side * side, c).init(device),
                },
                pre_layrnorm: ln(),
                encoder: ClipEncoder::new(&shape, device),
                post_layernorm: ln(),
            },
            visual_projection: LinearConfig::new(c, config.projection_dim.unwrap_or(c))
                .with_bias(false)
                .init(device),
            image_size: config.image_size,
            num_channels: config.num_channels,
        }
    }

    /// Loads a transformers `CLIPVisionModelWithProjection` folder (`config.json`,
    /// `model.safetensors`) or a full `CLIPModel` folder (the text tower's weights skipped).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, ClipError> {
        let cfg_path = dir.join("config.json");
        let config = ClipVisionConfig::from_file(&cfg_path)?;
        let act = config.activation(&cfg_path)?;
        let weights = find_weights(dir, "model", false)?;
        let options = LoadOptions {
            ignore: vec![
                r"position_ids$".into(),
                r"^text_model\.".into(),
                r"^text_projection\.".into(),
                r"^logit_scale$".into(),
            ],
            ..Default::default()
        };
        Ok(load_weights(
            Self::new(&config, act, device),
            &weights,
            &options,
        )?)
    }

    /// Side of the input image.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Runs the tower on `pixel_values` `[B, C, S, S]`.
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<ClipVisionOutput, ClipError> {
        let dims = pixel_values.dims();
        let [b, ch, h, w] = dims;
        if b == 0 || ch != self.num_channels || h != self.image_size || w != self.image_size {
            return Err(ClipError::ImageShape {
                found: dims.to_vec(),
                channels: self.num_channels,
                size: self.image_size,
            });
        }
        let vm = &self.vision_model;
        let patches = vm.embeddings.patch_embedding.forward(pixel_values);
        let [_, c, ph, pw] = patches.dims();
        let patches = patches.reshape([b, c, ph * pw]).swap_dims(1, 2);
        let class = vm
            .embeddings
            .class_embedding
            .val()
            .reshape([1, 1, c])
            .expand([b, 1, c]);
        let tokens = 1 + ph * pw;
        let device = patches.device();
        let positions = Tensor::<2, Int>::from_data(
            TensorData::new((0..tokens as i64).collect::<Vec<_>>(), [1, tokens]),
            &device,
        );
        let x = Tensor::cat(vec![class, patches], 1)
            + vm.embeddings.position_embedding.forward(positions);
        let x = vm.pre_layrnorm.forward(x);
        let last_hidden_state = vm.encoder.forward(x);
        let cls = last_hidden_state
            .clone()
            .slice([0..b, 0..1, 0..c])
            .reshape([b, c]);
        let pooled = vm.post_layernorm.forward(cls);
        let image_embeds = self.visual_projection.forward(pooled.clone());
        Ok(ClipVisionOutput {
            last_hidden_state,
            pooled,
            image_embeds,
        })
    }
}
