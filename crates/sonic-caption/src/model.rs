//! The captioner (transformers' `BlipForConditionalGeneration`): the vision transformer
//! ([`BlipVisionModel`]) and the text decoder with its LM head ([`BlipTextLmHeadModel`]),
//! loaded one to one from a transformers folder (`config.json`, `model.safetensors` or
//! `pytorch_model.bin`), e.g. `Salesforce/blip-image-captioning-base`.
//!
//! The decoding loop (greedy or beam search) runs on top of
//! [`BlipForConditionalGeneration::logits`] /
//! [`BlipForConditionalGeneration::next_token_logits`]: there is no KV cache, each call runs
//! the decoder over the whole prefix, but the image side of the cross-attention is computed
//! once per image batch ([`ImageContext`], keys and values of every layer) and only the last
//! position goes through the LM head in `next_token_logits`. Rows of token ids pair with rows
//! of the context one to one; several sequences on one image (beams) use repeated rows, made
//! by [`ImageContext::select`] (e.g. rows `[0, 0, 0, 1, 1, 1]` for 3 beams on 2 images, then
//! reordered as beams are).

use crate::config::BlipConfig;
use crate::error::CaptionError;
use crate::generation::{self, GenerationConfig, StepLogits};
use crate::text::{BlipTextLmHeadModel, HeadLayout, ImageContext};
use crate::vision::BlipVisionModel;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sonic_core::checkpoint::Checkpoint;
use sonic_core::weights::{LoadOptions, Remap, find_weights};
use std::path::{Path, PathBuf};

/// The prefix of the text decoder's keys in a `BlipForConditionalGeneration` checkpoint.
pub const TEXT_PREFIX: &str = "text_decoder.";

/// `BlipForConditionalGeneration`: images -> image embeddings -> next-token logits.
#[derive(Module, Debug)]
pub struct BlipForConditionalGeneration {
    /// The vision transformer.
    pub vision_model: BlipVisionModel,
    /// The text decoder and LM head.
    pub text_decoder: BlipTextLmHeadModel,
    /// The validated config (special ids, sizes).
    #[module(skip)]
    pub config: BlipConfig,
}

/// The file key of a module path (the inverse of the loader's remaps), for error messages.
fn file_key(module_key: &str) -> String {
    module_key
        .replace(".layer_norm.", ".LayerNorm.")
        .replace("attention.self_attn.", "attention.self.")
}

fn to_i64(t: Tensor<2, Int>, what: &str) -> Result<Vec<i64>, CaptionError> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| CaptionError::input(what, format!("cannot read back: {e:?}")))
}

impl BlipForConditionalGeneration {
    /// A model with the shapes of a validated `config`, the LM head tensors of `layout` and
    /// untrained weights.
    pub fn new(config: &BlipConfig, layout: HeadLayout, device: &Device) -> Self {
        Self {
            vision_model: BlipVisionModel::new(config, device),
            text_decoder: BlipTextLmHeadModel::new(config, layout, device),
            config: config.clone(),
        }
    }

    /// Loads a transformers folder: `config.json` and `model.safetensors` (else
    /// `model.fp16.safetensors`, else `pytorch_model.bin`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, CaptionError> {
        Self::from_files(&dir.join("config.json"), &weights_file(dir)?, device)
    }

    /// Loads `config` (a `config.json`) and a weights file (safetensors or torch pickle) with
    /// transformers' `BlipForConditionalGeneration` names. The LM head's tied tensors are taken
    /// as the file has them ([`HeadLayout`]); every other tensor must be present with its
    /// shape, and nothing else may be (`position_ids` buffers of older files excepted).
    pub fn from_files(
        config: &Path,
        weights: &Path,
        device: &Device,
    ) -> Result<Self, CaptionError> {
        let config = BlipConfig::from_file(config)?;
        let file = Checkpoint::open(weights)?;
        let has = |key: &str| file.shape(&format!("{TEXT_PREFIX}{key}")).is_some();
        let layout = HeadLayout {
            word_embeddings: has("bert.embeddings.word_embeddings.weight"),
            decoder_weight: has("cls.predictions.decoder.weight"),
            decoder_bias: has("cls.predictions.decoder.bias"),
            predictions_bias: has("cls.predictions.bias"),
        };
        layout.check(config.ties_embeddings(), weights, TEXT_PREFIX)?;
        let options = LoadOptions {
            remaps: vec![
                Remap::new(r"\.LayerNorm\.", ".layer_norm."),
                Remap::new(r"attention\.self\.", "attention.self_attn."),
            ],
            ignore: vec![r"position_ids$".into()],
            file_key: Some(file_key),
            ..Default::default()
        };
        let model = Self::new(&config, layout, device);
        Ok(file.load_into(model, &options)?)
    }

    /// The id captions start from (`text_config.bos_token_id`, `[DEC]`).
    pub fn bos_token_id(&self) -> Option<i64> {
        self.config.text.bos_token_id
    }

    /// The id captions end with (`text_config.sep_token_id`, `[SEP]`: what BLIP's `generate`
    /// passes as `eos_token_id`).
    pub fn sep_token_id(&self) -> Option<i64> {
        self.config.text.sep_token_id
    }

    /// The padding id (`text_config.pad_token_id`).
    pub fn pad_token_id(&self) -> Option<i64> {
        self.config.text.pad_token_id
    }

    /// The vocabulary size (the logits' last dimension).
    pub fn vocab_size(&self) -> usize {
        self.config.text.vocab_size
    }

    /// Captions of `pixel_values` `[B, 3, S, S]` as transformers' `generate` makes them: the
    /// prompt is `prefix_ids` (the tokenizer's ids of a text prefix, `[CLS] ... [SEP]`, or
    /// empty for none) with its first id replaced by the BOS id `[DEC]` and its last (`[SEP]`)
    /// dropped; decoding stops at `[SEP]` (the end id), pads with the pad id. `config`'s
    /// `eos_token_ids` and `pad_token_id` are filled from the model when empty / `None`.
    /// Returns one id sequence per image, prompt included.
    pub fn generate(
        &self,
        pixel_values: Tensor<4>,
        prefix_ids: &[i64],
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<i64>>, CaptionError> {
        let bos = self.bos_token_id().ok_or_else(|| {
            CaptionError::input("text_config.bos_token_id", "the config has none")
        })?;
        let mut config = config.clone();
        if config.eos_token_ids.is_empty() {
            config.eos_token_ids = self.sep_token_id().into_iter().collect();
        }
        if config.pad_token_id.is_none() {
            config.pad_token_id = self.pad_token_id();
        }
        // BLIP's generate: `input_ids[:, 0] = bos`, then the last column dropped.
        let prompt: Vec<i64> = match prefix_ids {
            [] | [_] => vec![bos],
            [_, rest @ .., _] => std::iter::once(bos).chain(rest.iter().copied()).collect(),
        };
        let context = self.image_context(self.image_embeds(pixel_values)?)?;
        let prompts = vec![prompt; context.batch()];
        let mut step = Step {
            model: self,
            context: &context,
            selected: None,
        };
        generation::generate(&mut step, &prompts, &config)
    }

    /// The longest token sequence the decoder takes (`max_position_embeddings`).
    pub fn max_positions(&self) -> usize {
        self.text_decoder.max_positions()
    }

    /// The image embeddings `[B, 1 + patches, vision hidden]` of `pixel_values` `[B, 3, S, S]`
    /// (the vision model's `last_hidden_state`).
    pub fn image_embeds(&self, pixel_values: Tensor<4>) -> Result<Tensor<3>, CaptionError> {
        self.vision_model.forward(pixel_values)
    }

    /// The cross-attention keys and values of `image_embeds` `[B, T, vision hidden]`, for
    /// repeated [`Self::decoder_logits`] calls.
    pub fn image_context(&self, image_embeds: Tensor<3>) -> Result<ImageContext, CaptionError> {
        let [b, t, c] = image_embeds.dims();
        let width = self.config.vision.hidden_size;
        if b == 0 || t == 0 || c != width {
            return Err(sonic_core::CoreError::BadShape {
                what: "image_embeds",
                expected: format!("[B >= 1, T >= 1, {width}]"),
                found: vec![b, t, c],
            }
            .into());
        }
        Ok(self.text_decoder.image_context(image_embeds))
    }

    /// Logits `[B, S, vocab]` of every position of `input_ids` `[B, S]` (as transformers'
    /// `forward(pixel_values, input_ids, attention_mask).logits`, with the image embeddings
    /// given): causal self-attention, hiding positions whose `attention_mask` `[B, S]` is 0
    /// (`None`: all 1), positions `0..S`, row `i` attending to row `i` of `image_embeds`
    /// `[B, T, vision hidden]`.
    pub fn logits(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        image_embeds: Tensor<3>,
    ) -> Result<Tensor<3>, CaptionError> {
        let context = self.image_context(image_embeds)?;
        self.decoder_logits(input_ids, attention_mask, None, &context, false)
    }

    /// The logits `[B, vocab]` of the last position only: what one decoding step needs.
    pub fn next_token_logits(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        context: &ImageContext,
    ) -> Result<Tensor<2>, CaptionError> {
        let logits = self.decoder_logits(input_ids, attention_mask, None, context, true)?;
        let [b, _, v] = logits.dims();
        Ok(logits.reshape([b, v]))
    }

    /// The decoder on `input_ids` `[B, S]` with the image `context` (`B` rows): logits `[B, S,
    /// vocab]`, or `[B, 1, vocab]` of the last position when `last_only`. `attention_mask`
    /// `[B, S]` hides keys where it is 0 (`None`: none hidden); `position_ids` `[B, S]`
    /// (`None`: `0..S` in every row, as `forward`; `generate` passes `cumsum(mask) - 1` with
    /// padding at 0).
    pub fn decoder_logits(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Option<Tensor<2, Int>>,
        position_ids: Option<Tensor<2, Int>>,
        context: &ImageContext,
        last_only: bool,
    ) -> Result<Tensor<3>, CaptionError> {
        let [b, s] = input_ids.dims();
        let max = self.max_positions();
        if s == 0 || s > max {
            return Err(CaptionError::SequenceLength { found: s, max });
        }
        if b == 0 || b != context.batch() {
            return Err(CaptionError::input(
                "input_ids",
                format!("{b} rows for an image context of {} rows", context.batch()),
            ));
        }
        let vocab = self.vocab_size();
        let ids = to_i64(input_ids.clone(), "input_ids")?;
        if let Some(&bad) = ids.iter().find(|&&v| v < 0 || v as u64 >= vocab as u64) {
            return Err(CaptionError::TokenOutOfRange { id: bad, vocab });
        }
        let device = input_ids.device();
        let check_shape = |t: &Tensor<2, Int>, what: &'static str| {
            if t.dims() != [b, s] {
                return Err(CaptionError::from(sonic_core::CoreError::BadShape {
                    what,
                    expected: format!("[{b}, {s}] like input_ids"),
                    found: t.dims().to_vec(),
                }));
            }
            Ok(())
        };
        let positions = match position_ids {
            Some(p) => {
                check_shape(&p, "position_ids")?;
                let values = to_i64(p.clone(), "position_ids")?;
                if let Some(&bad) = values.iter().find(|&&v| v < 0 || v as u64 >= max as u64) {
                    return Err(CaptionError::input(
                        "position_ids",
                        format!("position {bad} outside 0..{max}"),
                    ));
                }
                p
            }
            None => Tensor::<2, Int>::from_data(
                TensorData::new((0..s as i64).collect::<Vec<_>>(), [1, s]),
                &device,
            )
            .repeat_dim(0, b),
        };
        let bias = match attention_mask {
            Some(mask) => {
                check_shape(&mask, "attention_mask")?;
                let keep = to_i64(mask, "attention_mask")?;
                Some(self_attention_bias(&keep, b, s, &device))
            }
            None => None,
        };
        let hidden = self
            .text_decoder
            .hidden_states(input_ids, positions, bias, context)?;
        let hidden = if last_only {
            let c = hidden.dims()[2];
            hidden.slice([0..b, s - 1..s, 0..c])
        } else {
            hidden
        };
        self.text_decoder.lm_head(hidden)
    }
}

/// transformers' eager causal mask with padding: `[B, 1, S, S]`, 0 where query `i` may see key
/// `j` (`j <= i` and `keep[b][j] != 0`), `f32::MIN` elsewhere.
fn self_attention_bias(keep: &[i64], b: usize, s: usize, device: &Device) -> Tensor<4> {
    let mut data = vec![f32::MIN; b * s * s];
    for row in 0..b {
        for i in 0..s {
            for j in 0..=i {
                if keep[row * s + j] != 0 {
                    data[(row * s + i) * s + j] = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [b, 1, s, s]), device)
}

/// The weights file of a folder as [`BlipForConditionalGeneration::from_dir`] picks it.
pub fn weights_file(dir: &Path) -> Result<PathBuf, CaptionError> {
    match find_weights(dir, "model", false) {
        Ok(p) => Ok(p),
        Err(e) => {
            let bin = dir.join("pytorch_model.bin");
            if bin.is_file() {
                Ok(bin)
            } else {
                Err(e.into())
            }
        }
    }
}

/// One decoding step of [`BlipForConditionalGeneration::generate`]: the decoder over the whole
/// prefix (no cache), each row attending to its image's cross-attention keys and values.
struct Step<'a> {
    model: &'a BlipForConditionalGeneration,
    context: &'a ImageContext,
    /// The context rows of the last `items` (the same at every step of a run: selected once).
    selected: Option<(Vec<usize>, ImageContext)>,
}

impl StepLogits for Step<'_> {
    type Error = CaptionError;

    fn last_logits(
        &mut self,
        sequences: &[Vec<i64>],
        items: &[usize],
    ) -> Result<Vec<Vec<f32>>, CaptionError> {
        let rows = sequences.len();
        let len = sequences.first().map_or(0, Vec::len);
        let device = self
            .context
            .layers
            .first()
            .map(|(k, _)| k.device())
            .ok_or_else(|| CaptionError::input("image context", "a decoder without layers"))?;
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(sequences.concat(), [rows, len]), &device);
        let context = match self.selected.take() {
            Some((rows, ctx)) if rows == items => (rows, ctx),
            _ => (items.to_vec(), self.context.select(items)?),
        };
        let logits = self.model.next_token_logits(ids, None, &context.1);
        self.selected = Some(context);
        let logits = logits?;
        let vocab = logits.dims()[1];
        let host = sonic_core::fixtures::to_host(&logits)?;
        Ok(host.chunks(vocab.max(1)).map(<[f32]>::to_vec).collect())
    }
}
