//! BLIP's text decoder with its LM head (transformers' `BlipTextLMHeadModel`): a BERT whose
//! layers have causal self-attention, cross-attention to the image embeddings and a
//! feed-forward block (each post-norm: `LayerNorm(x + sublayer(x))`), under BERT's
//! `cls.predictions` head (dense, activation, LayerNorm, then the vocabulary projection).
//!
//! Embeddings: word + position (no token types), then LayerNorm. Positions default to
//! `0..S` (what `forward` uses; `generate` derives them from its attention mask).
//!
//! Attention matches transformers' eager attention: scores `q k^T / sqrt(d)` plus an additive
//! mask of `0` (attended) or `f32::MIN` (causally hidden, or padding per the attention mask), so
//! a query whose keys are all hidden (a left-padding position) attends uniformly to every
//! key, as in transformers. The cross-attention attends to every image token.
//!
//! The LM head's weight and bias are what the checkpoint has ([`HeadLayout`]): transformers
//! ties `cls.predictions.decoder.weight` to `bert.embeddings.word_embeddings.weight` and
//! `cls.predictions.decoder.bias` to `cls.predictions.bias` (`_tied_weights_keys`) and saves
//! only one of each pair (transformers 5: the word embeddings and `cls.predictions.bias`); a
//! checkpoint with both keeps both (transformers does not tie differing tensors). The module
//! holds each tensor the file holds and the forward pass picks, as transformers does after
//! tying: the projection is `decoder.weight` if present, else the word embeddings (and the
//! word embeddings, if absent, are `decoder.weight`); the bias is `decoder.bias` if present,
//! else `cls.predictions.bias`.
//!
//! Field names mirror transformers' parameter names except `LayerNorm` (here `layer_norm`) and
//! `attention.self` (here `attention.self_attn`), which [`crate::model`]'s loader remaps.

use crate::config::{Activation, BlipConfig};
use crate::error::CaptionError;
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::Path;

/// Word, position embeddings and their LayerNorm (`BlipTextEmbeddings`).
#[derive(Module, Debug)]
pub struct BlipTextEmbeddings {
    /// `[vocab, hidden]` (absent when the checkpoint holds only `cls.predictions.decoder.weight`,
    /// which then serves as the table).
    pub word_embeddings: Option<Embedding>,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: Embedding,
    /// transformers' `LayerNorm`.
    pub layer_norm: LayerNorm,
}

/// Queries, keys and values of one attention (`BlipTextSelfAttention`; keys and values read
/// the image embeddings in the cross-attention).
#[derive(Module, Debug)]
pub struct BlipTextSelfAttention {
    /// `hidden -> hidden`.
    pub query: Linear,
    /// `hidden (or the image width) -> hidden`.
    pub key: Linear,
    /// `hidden (or the image width) -> hidden`.
    pub value: Linear,
    /// Number of heads.
    pub num_heads: usize,
}

impl BlipTextSelfAttention {
    fn split(&self, t: Tensor<3>) -> Tensor<4> {
        let [b, s, c] = t.dims();
        let h = self.num_heads;
        t.reshape([b, s, h, c / h]).swap_dims(1, 2)
    }

    /// Keys and values `[B, heads, T, d]` of `states` `[B, T, width]`.
    fn keys_values(&self, states: Tensor<3>) -> (Tensor<4>, Tensor<4>) {
        (
            self.split(self.key.forward(states.clone())),
            self.split(self.value.forward(states)),
        )
    }
}

/// The output projection and post-norm of an attention (`BlipTextSelfOutput`).
#[derive(Module, Debug)]
pub struct BlipTextSelfOutput {
    /// `hidden -> hidden`.
    pub dense: Linear,
    /// transformers' `LayerNorm`, over `x + dense(attention)`.
    pub layer_norm: LayerNorm,
}

/// An attention sublayer (`BlipTextAttention`).
#[derive(Module, Debug)]
pub struct BlipTextAttention {
    /// transformers' `self`.
    pub self_attn: BlipTextSelfAttention,
    /// Output projection and norm.
    pub output: BlipTextSelfOutput,
}

impl BlipTextAttention {
    /// `LayerNorm(x + dense(attention(query(x), keys, values)))`.
    fn attend(
        &self,
        x: Tensor<3>,
        keys: Tensor<4>,
        values: Tensor<4>,
        bias: Option<Tensor<4>>,
        causal: bool,
    ) -> Tensor<3> {
        let [b, s, c] = x.dims();
        let q = self
            .self_attn
            .split(self.self_attn.query.forward(x.clone()));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        let o = attention(q, keys, values, None, bias, options)
            .swap_dims(1, 2)
            .reshape([b, s, c]);
        self.output
            .layer_norm
            .forward(self.output.dense.forward(o) + x)
    }
}

/// The feed-forward expansion (`BlipTextIntermediate`).
#[derive(Module, Debug)]
pub struct BlipTextIntermediate {
    /// `hidden -> intermediate`.
    pub dense: Linear,
    /// The activation after it.
    #[module(skip)]
    pub act: Activation,
}

/// The feed-forward projection and post-norm (`BlipTextOutput`).
#[derive(Module, Debug)]
pub struct BlipTextOutput {
    /// `intermediate -> hidden`.
    pub dense: Linear,
    /// transformers' `LayerNorm`.
    pub layer_norm: LayerNorm,
}

/// One decoder layer (`BlipTextLayer`).
#[derive(Module, Debug)]
pub struct BlipTextLayer {
    /// Causal self-attention.
    pub attention: BlipTextAttention,
    /// Cross-attention to the image embeddings.
    pub crossattention: BlipTextAttention,
    /// Feed-forward expansion.
    pub intermediate: BlipTextIntermediate,
    /// Feed-forward projection.
    pub output: BlipTextOutput,
}

/// The decoder layers (`BlipTextEncoder`).
#[derive(Module, Debug)]
pub struct BlipTextEncoder {
    /// transformers' `layer` list.
    pub layer: Vec<BlipTextLayer>,
}

/// The text model (`BlipTextModel` without pooler).
#[derive(Module, Debug)]
pub struct BlipTextModel {
    /// Embeddings.
    pub embeddings: BlipTextEmbeddings,
    /// Layers.
    pub encoder: BlipTextEncoder,
}

/// The LM head's transform (`BlipTextPredictionHeadTransform`).
#[derive(Module, Debug)]
pub struct BlipTextPredictionHeadTransform {
    /// `hidden -> hidden`.
    pub dense: Linear,
    /// transformers' `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// The activation between them.
    #[module(skip)]
    pub act: Activation,
}

/// The vocabulary projection as the checkpoint stores it (`cls.predictions.decoder`).
#[derive(Module, Debug)]
pub struct BlipLmDecoder {
    /// `[vocab, hidden]` (PyTorch's layout), when the file has its own copy.
    pub weight: Option<Param<Tensor<2>>>,
    /// `[vocab]`, when the file has its own copy.
    pub bias: Option<Param<Tensor<1>>>,
}

/// The LM prediction head (`BlipTextLMPredictionHead`).
#[derive(Module, Debug)]
pub struct BlipTextLmPredictionHead {
    /// Dense, activation, LayerNorm.
    pub transform: BlipTextPredictionHeadTransform,
    /// The vocabulary projection's own tensors.
    pub decoder: BlipLmDecoder,
    /// `cls.predictions.bias` `[vocab]` (the source `decoder.bias` is tied to).
    pub bias: Option<Param<Tensor<1>>>,
}

/// `cls` (`BlipTextOnlyMLMHead`).
#[derive(Module, Debug)]
pub struct BlipTextOnlyMlmHead {
    /// The head.
    pub predictions: BlipTextLmPredictionHead,
}

/// Which of the four tied tensors a checkpoint holds (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    /// `bert.embeddings.word_embeddings.weight`.
    pub word_embeddings: bool,
    /// `cls.predictions.decoder.weight`.
    pub decoder_weight: bool,
    /// `cls.predictions.decoder.bias`.
    pub decoder_bias: bool,
    /// `cls.predictions.bias`.
    pub predictions_bias: bool,
}

impl HeadLayout {
    /// What transformers 5 saves: tied, the word embeddings and `cls.predictions.bias`;
    /// untied, all four.
    pub fn saved(tied: bool) -> Self {
        Self {
            word_embeddings: true,
            decoder_weight: !tied,
            decoder_bias: !tied,
            predictions_bias: true,
        }
    }

    /// Checks that the layout gives the model every tensor it needs: with tying, one of each
    /// pair; without, the word embeddings and the decoder's weight and bias (transformers
    /// would leave a missing one at its random initialisation). `file` and `prefix` (e.g.
    /// `text_decoder.`) name the missing key.
    pub fn check(&self, tied: bool, file: &Path, prefix: &str) -> Result<(), CaptionError> {
        let missing = |key: &str| {
            CaptionError::from(sonic_core::CoreError::MissingTensor {
                path: file.to_path_buf(),
                key: format!("{prefix}{key}"),
                expected: vec![],
            })
        };
        let (weight_ok, bias_ok) = if tied {
            (
                self.word_embeddings || self.decoder_weight,
                self.decoder_bias || self.predictions_bias,
            )
        } else {
            if !self.word_embeddings {
                return Err(missing("bert.embeddings.word_embeddings.weight"));
            }
            (self.decoder_weight, self.decoder_bias)
        };
        if !weight_ok {
            return Err(missing("cls.predictions.decoder.weight"));
        }
        if !bias_ok {
            return Err(missing("cls.predictions.decoder.bias"));
        }
        Ok(())
    }
}

/// The image side of the cross-attention, computed once per image batch: every layer's keys
/// and values `[B, heads, T, d]` of the image embeddings. Decoding calls the text decoder many
/// times on the same images; with the context, each call only projects its text.
#[derive(Debug, Clone)]
pub struct ImageContext {
    /// Per decoder layer: keys and values.
    pub layers: Vec<(Tensor<4>, Tensor<4>)>,
}

impl ImageContext {
    /// The number of image rows.
    pub fn batch(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[0])
    }

    /// A context whose row `i` is this one's row `rows[i]` (repeats and reorders allowed: one
    /// image per beam, beams reordered after a step).
    pub fn select(&self, rows: &[usize]) -> Result<Self, CaptionError> {
        let batch = self.batch();
        if let Some(bad) = rows.iter().find(|&&r| r >= batch) {
            return Err(CaptionError::input(
                "rows",
                format!("row {bad} of an image context of {batch} rows"),
            ));
        }
        if rows.is_empty() {
            return Err(CaptionError::input("rows", "no rows selected"));
        }
        let Some((first, _)) = self.layers.first() else {
            return Ok(self.clone());
        };
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            &first.device(),
        );
        Ok(Self {
            layers: self
                .layers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone().select(0, index.clone()),
                        v.clone().select(0, index.clone()),
                    )
                })
                .collect(),
        })
    }
}

/// `BlipTextLMHeadModel`: token ids + image context -> logits over the vocabulary.
#[derive(Module, Debug)]
pub struct BlipTextLmHeadModel {
    /// The text model.
    pub bert: BlipTextModel,
    /// The LM head.
    pub cls: BlipTextOnlyMlmHead,
}

impl BlipTextLmHeadModel {
    /// A decoder with the shapes of a validated `config`, the head tensors of `layout` and
    /// untrained weights.
    pub fn new(config: &BlipConfig, layout: HeadLayout, device: &Device) -> Self {
        let t = &config.text;
        let c = t.hidden_size;
        let image = config.vision.hidden_size;
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(t.layer_norm_eps)
                .init(device)
        };
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let attn = |kv_width| BlipTextAttention {
            self_attn: BlipTextSelfAttention {
                query: lin(c, c),
                key: lin(kv_width, c),
                value: lin(kv_width, c),
                num_heads: t.num_attention_heads,
            },
            output: BlipTextSelfOutput {
                dense: lin(c, c),
                layer_norm: ln(),
            },
        };
        let layer = (0..t.num_hidden_layers)
            .map(|_| BlipTextLayer {
                attention: attn(c),
                crossattention: attn(image),
                intermediate: BlipTextIntermediate {
                    dense: lin(c, t.intermediate_size),
                    act: config.text_act,
                },
                output: BlipTextOutput {
                    dense: lin(t.intermediate_size, c),
                    layer_norm: ln(),
                },
            })
            .collect();
        let vocab = t.vocab_size;
        let param1 = || Param::from_tensor(Tensor::zeros([vocab], device));
        Self {
            bert: BlipTextModel {
                embeddings: BlipTextEmbeddings {
                    word_embeddings: layout
                        .word_embeddings
                        .then(|| EmbeddingConfig::new(vocab, c).init(device)),
                    position_embeddings: EmbeddingConfig::new(t.max_position_embeddings, c)
                        .init(device),
                    layer_norm: ln(),
                },
                encoder: BlipTextEncoder { layer },
            },
            cls: BlipTextOnlyMlmHead {
                predictions: BlipTextLmPredictionHead {
                    transform: BlipTextPredictionHeadTransform {
                        dense: lin(c, c),
                        layer_norm: ln(),
                        act: config.text_act,
                    },
                    decoder: BlipLmDecoder {
                        weight: layout
                            .decoder_weight
                            .then(|| Param::from_tensor(Tensor::zeros([vocab, c], device))),
                        bias: layout.decoder_bias.then(param1),
                    },
                    bias: layout.predictions_bias.then(param1),
                },
            },
        }
    }

    /// The word embedding table `[vocab, hidden]` (see the module docs).
    pub fn word_table(&self) -> Result<Tensor<2>, CaptionError> {
        let head = &self.cls.predictions.decoder;
        match (&self.bert.embeddings.word_embeddings, &head.weight) {
            (Some(e), _) => Ok(e.weight.val()),
            (None, Some(w)) => Ok(w.val()),
            (None, None) => Err(CaptionError::input(
                "text decoder",
                "built without word embeddings or an LM head weight",
            )),
        }
    }

    /// The vocabulary projection `[vocab, hidden]` and bias `[vocab]` (see the module docs).
    pub fn head(&self) -> Result<(Tensor<2>, Tensor<1>), CaptionError> {
        let p = &self.cls.predictions;
        let weight = match &p.decoder.weight {
            Some(w) => w.val(),
            None => self.word_table()?,
        };
        let bias = match (&p.decoder.bias, &p.bias) {
            (Some(b), _) | (None, Some(b)) => b.val(),
            (None, None) => {
                return Err(CaptionError::input(
                    "text decoder",
                    "built without an LM head bias",
                ));
            }
        };
        Ok((weight, bias))
    }

    /// The vocabulary size.
    pub fn vocab_size(&self) -> usize {
        let p = &self.cls.predictions;
        p.decoder
            .weight
            .as_ref()
            .map(|w| w.dims()[0])
            .or_else(|| {
                let e = self.bert.embeddings.word_embeddings.as_ref();
                e.map(|e| e.weight.dims()[0])
            })
            .unwrap_or(0)
    }

    /// The number of positions.
    pub fn max_positions(&self) -> usize {
        self.bert.embeddings.position_embeddings.weight.dims()[0]
    }

    /// The cross-attention keys and values of `image_embeds` `[B, T, width]`.
    pub fn image_context(&self, image_embeds: Tensor<3>) -> ImageContext {
        ImageContext {
            layers: self
                .bert
                .encoder
                .layer
                .iter()
                .map(|l| l.crossattention.self_attn.keys_values(image_embeds.clone()))
                .collect(),
        }
    }

    /// The final hidden states `[B, S, hidden]` of `input_ids` `[B, S]`; `self_bias` is the
    /// additive self-attention mask `[B, 1, S, S]` (`None`: causal only) and `positions` the
    /// position ids `[B, S]` (validated by the caller).
    pub(crate) fn hidden_states(
        &self,
        input_ids: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        self_bias: Option<Tensor<4>>,
        context: &ImageContext,
    ) -> Result<Tensor<3>, CaptionError> {
        let e = &self.bert.embeddings;
        let x = embedding(self.word_table()?, input_ids) + e.position_embeddings.forward(positions);
        let mut x = e.layer_norm.forward(x);
        for (layer, (k_img, v_img)) in self.bert.encoder.layer.iter().zip(&context.layers) {
            let (k, v) = layer.attention.self_attn.keys_values(x.clone());
            let causal = self_bias.is_none();
            x = layer.attention.attend(x, k, v, self_bias.clone(), causal);
            x = layer
                .crossattention
                .attend(x, k_img.clone(), v_img.clone(), None, false);
            let h = layer.intermediate.dense.forward(x.clone());
            let h = layer.output.dense.forward(layer.intermediate.act.apply(h));
            x = layer.output.layer_norm.forward(h + x);
        }
        Ok(x)
    }

    /// The LM head on hidden states `[B, S, hidden]` -> logits `[B, S, vocab]`.
    pub fn lm_head(&self, hidden: Tensor<3>) -> Result<Tensor<3>, CaptionError> {
        let [b, s, c] = hidden.dims();
        let t = &self.cls.predictions.transform;
        let h = t.dense.forward(hidden);
        let h = t.layer_norm.forward(t.act.apply(h));
        let (weight, bias) = self.head()?;
        let vocab = weight.dims()[0];
        let logits = h.reshape([b * s, c]).matmul(weight.transpose()) + bias.unsqueeze_dim(0);
        Ok(logits.reshape([b, s, vocab]))
    }
}
