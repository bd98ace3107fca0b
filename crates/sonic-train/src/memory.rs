//! Memory estimates for the two training stages, checked before any model is loaded.
//!
//! The same guard as `sonic generate`'s (see `sonic_pipeline::memory`): the frozen weights
//! (from the files' headers), the trainable state (weights, gradients and Adam's two moments:
//! four copies of every trained value), the embeddings the run caches in memory for the whole
//! data set, and the activations of one micro-batch's forward and backward pass. Everything is
//! read from configs and headers; nothing is allocated.
//!
//! ```
//! use sonic_train::memory::stage1_step_values;
//! // 6 anchors, 6 positives and 128 shared negatives of 77 x 768 projected tokens.
//! assert_eq!(stage1_step_values(6, 128, 77, 768), (6 + 6 + 128) * 77 * 768 * 8);
//! ```

use crate::config::{ModelPaths, Stage1Config, Stage2Config};
use crate::error::Result;
use sonic_clip::ClipTextConfig;
use sonic_pipeline::memory::{
    MemoryEstimate, model_weight_files, unet_training_activations, weight_bytes,
};
use sonic_projector::ProjectorConfig;
use sonic_unet::UNetConfig;
use sonic_vae::VaeConfig;
use std::path::{Path, PathBuf};

/// Bytes per trained or cached value (training runs in float32).
const F32: u64 = 4;

/// The widest CLAP embedding a released checkpoint produces (HTSAT: 1024 before the
/// projection, 512 after); the cache holds one per clip and flip.
pub const CLAP_VALUES: u64 = 1024;

/// Values held per projected sequence during a stage-1 step: the projector's output, its
/// normalised and pooled copies for the InfoNCE logits, the token-MSE difference, and the
/// gradients of each (8 per output value).
pub const STAGE1_VALUES_PER_OUTPUT: u64 = 8;

/// The activation values of one stage-1 micro-batch: `batch` anchors, as many positives and
/// `negatives` shared negatives, each projected to `tokens x context` values, with
/// [`STAGE1_VALUES_PER_OUTPUT`] values kept per output value for the backward pass.
pub fn stage1_step_values(batch: u64, negatives: u64, tokens: u64, context: u64) -> u64 {
    (2 * batch + negatives)
        .saturating_mul(tokens)
        .saturating_mul(context)
        .saturating_mul(STAGE1_VALUES_PER_OUTPUT)
}

/// The number of values of freshly initialised adapters on `unet` (the official placement:
/// the mid block's and the up blocks' transformer blocks), with `context` the projector's
/// output width: per block a gated cross-attention, `to_q` and `to_out` (`C x C`, plus a
/// bias), `to_k` and `to_v` (`context x C`), a layer norm and the gate.
pub fn new_adapter_values(unet: &UNetConfig, context: u64, origin: &Path) -> Result<u64> {
    let levels = unet.levels(origin)?;
    let last = unet.block_out_channels.len().saturating_sub(1);
    let block = |c: u64| 2 * c * c + 2 * context * c + 3 * c + 1;
    let mut values = 0u64;
    for (l, &c) in unet.block_out_channels.iter().enumerate() {
        let c = c as u64;
        // Level `l` is up block `last - l` (`up_cross` and `up_transformer_layers` are in
        // up-block order).
        let up = last - l;
        if levels.up_cross.get(up).copied().unwrap_or(false) {
            let per_attention = levels.up_transformer_layers.get(up).copied().unwrap_or(1) as u64;
            let attentions = levels.layers_per_block[l] as u64 + 1;
            values = values.saturating_add(attentions * per_attention * block(c));
        }
        if l == last {
            values = values.saturating_add(levels.transformer_layers[l] as u64 * block(c));
        }
    }
    Ok(values)
}

/// The projector's config: the given config file, else inferred from the weights' headers.
fn projector_config(model: &ModelPaths) -> Result<Option<ProjectorConfig>> {
    Ok(match (&model.projector_config, &model.projector) {
        (Some(c), _) => Some(ProjectorConfig::from_file(c)?),
        (None, Some(w)) => Some(ProjectorConfig::infer_from_file(w)?),
        (None, None) => None,
    })
}

/// The text encoder's tokens and width, from `sd/text_encoder/config.json`.
fn text_shape(sd: &Path) -> Result<(u64, u64)> {
    let c = ClipTextConfig::from_file(&sd.join("text_encoder").join("config.json"))?;
    Ok((c.max_position_embeddings as u64, c.hidden_size as u64))
}

fn files(paths: &[&Option<PathBuf>]) -> Vec<PathBuf> {
    paths.iter().filter_map(|p| (*p).clone()).collect()
}

/// The estimate of a stage-1 run on `clips` training and validation clips: the text encoder,
/// CLAP and projector weights; four copies of the projector's values (weights, gradients,
/// Adam's moments); the cached text embedding and CLAP embedding of every clip; one
/// micro-batch (see [`stage1_step_values`], negatives capped by the data set).
pub fn stage1_estimate(cfg: &Stage1Config, clips: usize, sd: &Path) -> Result<MemoryEstimate> {
    let mut weights = files(&[&cfg.model.clap]);
    weights.extend(
        model_weight_files(sd)?
            .into_iter()
            .filter(|f| f.starts_with(sd.join("text_encoder"))),
    );
    let frozen = weight_bytes(&weights, F32 as usize)?;
    let (tokens, width) = text_shape(sd)?;
    let projector = projector_config(&cfg.model)?;
    let trained = projector
        .as_ref()
        .and_then(ProjectorConfig::num_params)
        .unwrap_or(0) as u64;
    let (p_tokens, context) = projector.as_ref().map_or((tokens, width), |p| {
        (p.tokens as u64, p.context_dim() as u64)
    });
    let clips = clips as u64;
    let cache = clips.saturating_mul(tokens * width + CLAP_VALUES);
    let negatives = (cfg.loss.negatives as u64).min(clips);
    let step = stage1_step_values(cfg.training.batch_size as u64, negatives, p_tokens, context);
    Ok(MemoryEstimate {
        weights: frozen.saturating_add(trained.saturating_mul(4 * F32)),
        activations: cache.saturating_add(step).saturating_mul(F32),
    })
}

/// The estimate of a stage-2 run on `clips` training and validation clips: every Stable
/// Diffusion weight, CLAP, the projector and the adapters (from their file, or
/// [`new_adapter_values`] for new ones); three more copies of the trained values (gradients
/// and Adam's moments of the adapters, and of the projector when `train_projector`); the cached latents (two per clip with `hflip`) and CLAP embeddings; one
/// micro-batch's UNet forward and backward pass
/// ([`unet_training_activations`]).
pub fn stage2_estimate(cfg: &Stage2Config, clips: usize, sd: &Path) -> Result<MemoryEstimate> {
    let unet_path = sd.join("unet").join("config.json");
    let unet = UNetConfig::from_file(&unet_path)?;
    let vae = VaeConfig::from_file(&sd.join("vae").join("config.json"))?;
    let mut weights = model_weight_files(sd)?;
    weights.extend(files(&[&cfg.model.clap, &cfg.model.projector]));
    let mut frozen = weight_bytes(&weights, F32 as usize)?;
    let projector = projector_config(&cfg.model)?;
    let context = match &projector {
        Some(p) => p.context_dim() as u64,
        None => unet
            .levels(&unet_path)?
            .cross_attention_dim
            .iter()
            .copied()
            .max()
            .unwrap_or(0) as u64,
    };
    let adapters = match &cfg.model.adapters {
        Some(a) => {
            let bytes = weight_bytes(std::slice::from_ref(a), F32 as usize)?;
            frozen = frozen.saturating_add(bytes);
            bytes / F32
        }
        None => {
            let values = new_adapter_values(&unet, context, &unet_path)?;
            frozen = frozen.saturating_add(values.saturating_mul(F32));
            values
        }
    };
    let projector_values = if cfg.train_projector {
        projector
            .as_ref()
            .and_then(ProjectorConfig::num_params)
            .unwrap_or(0) as u64
    } else {
        0
    };
    let trained = adapters.saturating_add(projector_values);
    let factor = 1u64 << vae.block_out_channels.len().saturating_sub(1).min(62);
    let side = cfg.resolution as u64 / factor;
    let latent = (unet.in_channels as u64).saturating_mul(side.saturating_mul(side));
    let flips = if cfg.hflip { 2 } else { 1 };
    let clips = clips as u64;
    let cache = clips.saturating_mul(flips * latent + CLAP_VALUES);
    let (tokens, _) = text_shape(sd)?;
    let step = unet_training_activations(
        &unet,
        &vae,
        cfg.resolution,
        cfg.training.batch_size,
        tokens as usize,
        F32 as usize,
    );
    Ok(MemoryEstimate {
        weights: frozen.saturating_add(trained.saturating_mul(3 * F32)),
        activations: cache.saturating_mul(F32).saturating_add(step),
    })
}
