//! BLIP's vision transformer (transformers' `BlipVisionModel`): pixel values -> the image
//! embeddings the text decoder cross-attends to (`last_hidden_state`, `[B, 1 + patches,
//! hidden]`).
//!
//! Unlike CLIP's tower it has no LayerNorm before the encoder, its position embedding is a
//! plain parameter `[1, 1 + patches, hidden]` (not an `Embedding`), its class embedding is
//! `[1, 1, hidden]`, the patch convolution has a bias, each layer's attention uses one fused
//! `qkv` projection and an output `projection`, and `post_layernorm` is applied to every token
//! of the output (the captioner uses the whole sequence, not a pooled class token).
//!
//! Field names mirror transformers' parameter names (`vision_model.embeddings.class_embedding`,
//! `vision_model.encoder.layers.N.self_attn.qkv`, ...), so weights load one to one.

use crate::config::{Activation, BlipConfig};
use crate::error::CaptionError;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

/// The class token, patch and position embeddings (`BlipVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct BlipVisionEmbeddings {
    /// The learned class token `[1, 1, hidden]`.
    pub class_embedding: Param<Tensor<3>>,
    /// `patch x patch` convolution with stride `patch`, biased (`[hidden, 3, p, p]`).
    pub patch_embedding: Conv2d,
    /// `[1, 1 + patches, hidden]`.
    pub position_embedding: Param<Tensor<3>>,
    /// Side of a patch.
    pub patch_size: usize,
}

impl BlipVisionEmbeddings {
    /// The patch convolution as one product: with stride = kernel, every output pixel is the
    /// dot product of one disjoint `3 x p x p` block with each filter (transformers' `Conv2d`,
    /// which drops the rows / columns past the last whole patch).
    fn patches(&self, pixel_values: Tensor<4>) -> Tensor<3> {
        let [b, c, h, w] = pixel_values.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let x = if (gh * p, gw * p) == (h, w) {
            pixel_values
        } else {
            pixel_values.slice([0..b, 0..c, 0..gh * p, 0..gw * p])
        };
        let blocks = x
            .reshape([b * c, gh, p, gw, p])
            .swap_dims(2, 3)
            .reshape([b, c, gh * gw, p * p])
            .swap_dims(1, 2)
            .reshape([b * gh * gw, c * p * p]);
        let weight = self.patch_embedding.weight.val();
        let out = weight.dims()[0];
        let mut y = blocks.matmul(weight.reshape([out, c * p * p]).transpose());
        if let Some(bias) = &self.patch_embedding.bias {
            y = y + bias.val().unsqueeze_dim(0);
        }
        y.reshape([b, gh * gw, out])
    }
}

/// Multi-head self-attention with a fused `qkv` projection (`BlipAttention`).
#[derive(Module, Debug)]
pub struct BlipAttention {
    /// `hidden -> 3 * hidden` (queries, keys, values in that order, heads inside each).
    pub qkv: Linear,
    /// `hidden -> hidden`.
    pub projection: Linear,
    /// Number of heads.
    pub num_heads: usize,
}

impl BlipAttention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, c] = x.dims();
        let h = self.num_heads;
        let qkv = self.qkv.forward(x).reshape([b, s, 3, h, c / h]);
        let part = |i: usize| {
            qkv.clone()
                .slice([0..b, 0..s, i..i + 1, 0..h, 0..c / h])
                .reshape([b, s, h, c / h])
                .swap_dims(1, 2)
        };
        let o = attention(
            part(0),
            part(1),
            part(2),
            None,
            None,
            AttentionModuleOptions::default(),
        );
        self.projection
            .forward(o.swap_dims(1, 2).reshape([b, s, c]))
    }
}

/// The two-layer MLP (`BlipMLP`).
#[derive(Module, Debug)]
pub struct BlipMlp {
    /// `hidden -> intermediate`.
    pub fc1: Linear,
    /// `intermediate -> hidden`.
    pub fc2: Linear,
    /// The activation between them.
    #[module(skip)]
    pub act: Activation,
}

/// One pre-norm encoder layer (`BlipEncoderLayer`).
#[derive(Module, Debug)]
pub struct BlipEncoderLayer {
    /// Self-attention.
    pub self_attn: BlipAttention,
    /// Norm before attention.
    pub layer_norm1: LayerNorm,
    /// MLP.
    pub mlp: BlipMlp,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm,
}

impl BlipEncoderLayer {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        let h = self.mlp.fc1.forward(self.layer_norm2.forward(x.clone()));
        x + self.mlp.fc2.forward(self.mlp.act.apply(h))
    }
}

/// The stack of encoder layers (`BlipEncoder`).
#[derive(Module, Debug)]
pub struct BlipEncoder {
    /// The layers, in order.
    pub layers: Vec<BlipEncoderLayer>,
}

/// `BlipVisionModel`: pixel values `[B, 3, H, W]` -> image embeddings `[B, 1 + patches,
/// hidden]`.
#[derive(Module, Debug)]
pub struct BlipVisionModel {
    /// Embeddings.
    pub embeddings: BlipVisionEmbeddings,
    /// Encoder layers.
    pub encoder: BlipEncoder,
    /// The LayerNorm applied to every output token.
    pub post_layernorm: LayerNorm,
}

impl BlipVisionModel {
    /// A tower with the shapes of a validated `config` and untrained weights.
    pub fn new(config: &BlipConfig, device: &Device) -> Self {
        let v = &config.vision;
        let c = v.hidden_size;
        let p = v.patch_size;
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(v.layer_norm_eps)
                .init(device)
        };
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let layers = (0..v.num_hidden_layers)
            .map(|_| BlipEncoderLayer {
                self_attn: BlipAttention {
                    qkv: lin(c, 3 * c),
                    projection: lin(c, c),
                    num_heads: v.num_attention_heads,
                },
                layer_norm1: ln(),
                mlp: BlipMlp {
                    fc1: lin(c, v.intermediate_size),
                    fc2: lin(v.intermediate_size, c),
                    act: config.vision_act,
                },
                layer_norm2: ln(),
            })
            .collect();
        Self {
            embeddings: BlipVisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::zeros([1, 1, c], device)),
                patch_embedding: Conv2dConfig::new([3, c], [p, p])
                    .with_stride([p, p])
                    .init(device),
                position_embedding: Param::from_tensor(Tensor::zeros(
                    [1, config.vision_positions(), c],
                    device,
                )),
                patch_size: p,
            },
            encoder: BlipEncoder { layers },
            post_layernorm: ln(),
        }
    }

    /// Width of the image embeddings.
    pub fn hidden_size(&self) -> usize {
        self.post_layernorm.gamma.dims()[0]
    }

    /// Rows of the position table (the most tokens an image may give: class + patches).
    pub fn max_tokens(&self) -> usize {
        self.embeddings.position_embedding.dims()[1]
    }

    /// The number of tokens (class + patches) of an `h x w` image.
    pub fn tokens_of(&self, h: usize, w: usize) -> usize {
        let p = self.embeddings.patch_size;
        1 + (h / p) * (w / p)
    }

    /// Runs the tower on `pixel_values` `[B, 3, H, W]` (as
    /// [`crate::processor::blip_image_processor`] makes them: `image_size` square). As
    /// transformers without `interpolate_pos_encoding`, other sizes are accepted when they
    /// give at least one patch and at most as many tokens as the position table holds (its
    /// first rows are used).
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<Tensor<3>, CaptionError> {
        let [b, ch, h, w] = pixel_values.dims();
        let p = self.embeddings.patch_size;
        let tokens = self.tokens_of(h, w);
        if b == 0 || ch != 3 || h < p || w < p || tokens > self.max_tokens() {
            return Err(sonic_core::CoreError::BadShape {
                what: "pixel_values",
                expected: format!(
                    "[B >= 1, 3, H, W] with H, W >= {p} and at most {} patches of {p}x{p}",
                    self.max_tokens() - 1
                ),
                found: vec![b, ch, h, w],
            }
            .into());
        }
        let e = &self.embeddings;
        let patches = e.patches(pixel_values);
        let c = patches.dims()[2];
        let class = e.class_embedding.val().expand([b, 1, c]);
        let positions = e.position_embedding.val().slice([0..1, 0..tokens, 0..c]);
        let mut x = Tensor::cat(vec![class, patches], 1) + positions;
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        Ok(self.post_layernorm.forward(x))
    }
}
