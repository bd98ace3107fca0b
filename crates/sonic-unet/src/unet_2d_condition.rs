//! `UNet2DConditionModel`: the noise-prediction network of Stable Diffusion 1.x / 2.x.

use crate::adapter::{AdapterInput, AdapterKv, AdapterStrength};
use crate::config::UNetConfig;
use crate::embeddings::{TimestepEmbedding, timestep_embedding};
use crate::error::UNetError;
use crate::hooks::{NoHook, UNetHook};
use crate::inputs::{TextKv, UNetInputs};
use crate::transformer_2d::{
    BasicTransformerBlock, Transformer2DModel, feed_forward_file_key, feed_forward_remaps,
};
use crate::unet_2d_blocks::{BlockInputs, BlockSpec, DownBlock, MidBlock, UpBlock};
use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use sonic_core::checkpoint::Checkpoint;
use sonic_core::weights::{LoadOptions, find_weights, load_weights};
use std::path::Path;

/// Where gated adapters are placed: `[down, mid, up]` (official: `[false, true, true]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterPlacement {
    /// In the down blocks' transformer blocks.
    pub down: bool,
    /// In the mid block's.
    pub mid: bool,
    /// In the up blocks'.
    pub up: bool,
}

impl AdapterPlacement {
    /// The official SonicDiffusion placement: mid and up blocks.
    pub const OFFICIAL: AdapterPlacement = AdapterPlacement {
        down: false,
        mid: true,
        up: true,
    };
}

/// The UNet with diffusers' parameter names.
#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    /// Input convolution.
    pub conv_in: Conv2d,
    /// Time-embedding MLP.
    pub time_embedding: TimestepEmbedding,
    /// Down blocks.
    pub down_blocks: Vec<DownBlock>,
    /// Mid block.
    pub mid_block: MidBlock,
    /// Up blocks.
    pub up_blocks: Vec<UpBlock>,
    /// Output norm.
    pub conv_norm_out: GroupNorm,
    /// Output convolution.
    pub conv_out: Conv2d,
    /// Width of the sinusoidal embedding (first level's width).
    pub time_proj_dim: usize,
    /// `flip_sin_to_cos`.
    pub flip_sin_to_cos: bool,
    /// `freq_shift`.
    pub freq_shift: f64,
    /// Latent channels in.
    pub in_channels: usize,
    /// Text-token width of the first level (the width every text context must have).
    pub cross_attention_dim: usize,
}

impl UNet2DConditionModel {
    /// The model of `config` with untrained weights (no adapters).
    pub fn new(config: &UNetConfig, device: &Device) -> Result<Self, UNetError> {
        let levels = config.levels(Path::new("<unet config>"))?;
        let boc = &config.block_out_channels;
        let n = boc.len();
        let temb = config.time_embed_dim();
        let spec = |i: usize, transformer_layers: usize| BlockSpec {
            temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps,
            heads: levels.heads[i],
            cross_attention_dim: levels.cross_attention_dim[i],
            transformer_layers,
            linear_projection: config.use_linear_projection,
        };

        let mut down_blocks = Vec::with_capacity(n);
        let mut c_out = boc[0];
        for (i, &level_out) in boc.iter().enumerate().take(n) {
            let c_in = c_out;
            c_out = level_out;
            let last = i + 1 == n;
            down_blocks.push(DownBlock::new(
                c_in,
                c_out,
                levels.layers_per_block[i],
                levels.down_cross[i],
                (!last).then_some(config.downsample_padding),
                &spec(i, levels.transformer_layers[i]),
                device,
            ));
        }
        let mid_block = MidBlock::new(
            boc[n - 1],
            config.mid_block_scale_factor,
            &spec(n - 1, levels.transformer_layers[n - 1]),
            device,
        );
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(n);
        let mut c_out = rev[0];
        for i in 0..n {
            let prev_out = c_out;
            c_out = rev[i];
            let c_in = rev[(i + 1).min(n - 1)];
            let level = n - 1 - i;
            up_blocks.push(UpBlock::new(
                c_in,
                c_out,
                prev_out,
                levels.layers_per_block[level] + 1,
                levels.up_cross[i],
                i + 1 < n,
                &spec(level, levels.up_transformer_layers[i]),
                device,
            ));
        }
        Ok(Self {
            conv_in: sonic_layers::conv2d(config.in_channels, boc[0], 3, 1, 1, device),
            time_embedding: TimestepEmbedding::new(boc[0], temb, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: sonic_layers::group_norm(
                config.norm_num_groups,
                boc[0],
                config.norm_eps,
                device,
            ),
            conv_out: sonic_layers::conv2d(boc[0], config.out_channels, 3, 1, 1, device),
            time_proj_dim: boc[0],
            flip_sin_to_cos: config.flip_sin_to_cos,
            freq_shift: config.freq_shift,
            in_channels: config.in_channels,
            cross_attention_dim: levels.cross_attention_dim[0],
        })
    }

    /// The weight-key rewrites from diffusers' layout (and back, for messages and LoRA
    /// names).
    pub fn load_options() -> LoadOptions {
        LoadOptions {
            remaps: feed_forward_remaps(),
            ignore: vec![],
            subset: None,
            file_key: Some(feed_forward_file_key),
            ..Default::default()
        }
    }

    /// Loads a diffusers `unet/` folder (`config.json` and
    /// `diffusion_pytorch_model[.fp16].safetensors`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, UNetError> {
        let config = UNetConfig::from_file(&dir.join("config.json"))?;
        let weights = find_weights(dir, "diffusion_pytorch_model", false)?;
        Self::from_weights(&config, &weights, device)
    }

    /// Builds the model of `config` and loads a safetensors file.
    pub fn from_weights(
        config: &UNetConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<Self, UNetError> {
        Ok(load_weights(
            Self::new(config, device)?,
            weights,
            &Self::load_options(),
        )?)
    }

    /// The regex of adapter parameter paths (`attn_adapter`, `norm_adapter`, `gate_adapter`).
    pub const ADAPTER_PATTERN: &'static str = r"\.(attn_adapter|norm_adapter|gate_adapter)(\.|$)";

    /// The anchor of an adapter file's state dict: a transformer block's adapter tensor (see
    /// [`Checkpoint::open_anchored`]); what comes before it (`unet.`) is the file's prefix.
    pub const ADAPTER_ANCHOR: &'static str = r"(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+\.(attn|norm|gate)_adapter(\..+)?";

    /// Adds gated adapters as found in an adapter weights file (the official `landscape.pt` /
    /// `greatest_hits.pt` pickles, a dict of key -> tensor, or safetensors with the same keys)
    /// and loads them. The placement (`[down, mid, up]`) and the audio-token width are read from
    /// the file; every adapter of a placed level must be present, with the block's shapes.
    /// Returns the model with its adapters and the placement found.
    pub fn with_adapters(
        mut self,
        path: &Path,
        device: &Device,
    ) -> Result<(Self, AdapterPlacement), UNetError> {
        // The state dict starts where the block paths do (`unet.` in the official pickles).
        let file = Checkpoint::open_anchored(path, Self::ADAPTER_ANCHOR)?;
        let is_adapter = |k: &str| k.contains("_adapter");
        let placed = |level: &str| file.keys().any(|k| is_adapter(k) && k.starts_with(level));
        let placement = AdapterPlacement {
            down: placed("down_blocks."),
            mid: placed("mid_block."),
            up: placed("up_blocks."),
        };
        let context_dim = file
            .keys()
            .filter(|k| k.ends_with("attn_adapter.to_k.weight"))
            .find_map(|k| file.shape(k).filter(|s| s.len() == 2).map(|s| s[1]))
            .ok_or_else(|| sonic_core::CoreError::MissingTensor {
                path: path.to_path_buf(),
                key: "<block>.attn_adapter.to_k.weight".into(),
                expected: vec![],
            })?;
        self.add_adapters(placement, context_dim, 0.0, device);
        let options = LoadOptions {
            subset: Some(Self::ADAPTER_PATTERN.to_string()),
            ..Default::default()
        };
        Ok((file.load_into(self, &options)?, placement))
    }

    /// Every transformer block with its level (`down`, `mid`, `up`), in traversal order.
    fn transformer_blocks_mut(&mut self) -> Vec<(&'static str, &mut BasicTransformerBlock)> {
        fn blocks<'a>(
            attns: &'a mut [Transformer2DModel],
            level: &'static str,
        ) -> impl Iterator<Item = (&'static str, &'a mut BasicTransformerBlock)> {
            attns
                .iter_mut()
                .flat_map(|a| a.transformer_blocks.iter_mut())
                .map(move |t| (level, t))
        }
        let mut out = Vec::new();
        for b in &mut self.down_blocks {
            out.extend(blocks(&mut b.attentions, "down"));
        }
        out.extend(blocks(&mut self.mid_block.attentions, "mid"));
        for b in &mut self.up_blocks {
            out.extend(blocks(&mut b.attentions, "up"));
        }
        out
    }

    /// Adds gated adapters over `context_dim`-wide tokens to the transformer blocks selected by
    /// `placement`, gates at `gate_init`; returns how many were added.
    pub fn add_adapters(
        &mut self,
        placement: AdapterPlacement,
        context_dim: usize,
        gate_init: f32,
        device: &Device,
    ) -> usize {
        let mut count = 0;
        for (level, block) in self.transformer_blocks_mut() {
            let on = match level {
                "down" => placement.down,
                "mid" => placement.mid,
                _ => placement.up,
            };
            if on {
                block.add_adapter(context_dim, gate_init, device);
                count += 1;
            }
        }
        count
    }

    fn transformer_blocks(&self) -> impl Iterator<Item = &BasicTransformerBlock> {
        self.down_blocks
            .iter()
            .flat_map(|b| b.attentions.iter())
            .chain(self.mid_block.attentions.iter())
            .chain(self.up_blocks.iter().flat_map(|b| b.attentions.iter()))
            .flat_map(|a| a.transformer_blocks.iter())
    }

    /// The number of gated adapters.
    pub fn adapter_count(&self) -> usize {
        self.transformer_blocks()
            .filter(|b| b.has_adapter())
            .count()
    }

    /// Every transformer block with its path (`down_blocks.1.attentions.0.transformer_blocks.0`),
    /// in traversal order.
    fn named_transformer_blocks(&self) -> Vec<(String, &BasicTransformerBlock)> {
        fn blocks<'a>(
            out: &mut Vec<(String, &'a BasicTransformerBlock)>,
            prefix: &str,
            attns: &'a [Transformer2DModel],
        ) {
            for (j, a) in attns.iter().enumerate() {
                for (k, t) in a.transformer_blocks.iter().enumerate() {
                    out.push((format!("{prefix}.attentions.{j}.transformer_blocks.{k}"), t));
                }
            }
        }
        let mut out = Vec::new();
        for (i, b) in self.down_blocks.iter().enumerate() {
            blocks(&mut out, &format!("down_blocks.{i}"), &b.attentions);
        }
        blocks(&mut out, "mid_block", &self.mid_block.attentions);
        for (i, b) in self.up_blocks.iter().enumerate() {
            blocks(&mut out, &format!("up_blocks.{i}"), &b.attentions);
        }
        out
    }

    /// Precomputes every adapter's keys and values for `tokens` `[B, T, context_dim]` (once per
    /// sampling run: they depend only on the tokens), keyed by the path of its block.
    pub fn prepare_adapters(&self, tokens: Tensor<3>, strength: AdapterStrength) -> AdapterInput {
        AdapterInput {
            kv: self
                .named_transformer_blocks()
                .into_iter()
                .filter_map(|(block, b)| {
                    b.adapter_kv(tokens.clone())
                        .map(|(key, value)| AdapterKv { block, key, value })
                })
                .collect(),
            strength,
        }
    }

    /// Precomputes the keys and values of every text cross-attention for `text`
    /// `[B, N, cross_attention_dim]` (once per sampling run: they depend only on the text;
    /// pass them with [`UNetInputs::text_kv`] together with the same text).
    pub fn prepare_text(&self, text: Tensor<3>) -> TextKv {
        TextKv {
            text_dims: text.dims(),
            blocks: self
                .named_transformer_blocks()
                .into_iter()
                .map(|(block, b)| {
                    let (k, v) = b.attn2.key_value(text.clone());
                    (block, k, v)
                })
                .collect(),
        }
    }

    /// The number of up-sampling stages (the latent size must be a multiple of `2^n` to avoid
    /// explicit resize targets).
    pub fn num_upsamplers(&self) -> usize {
        self.up_blocks
            .iter()
            .filter(|b| !b.upsamplers.is_empty())
            .count()
    }

    /// Predicts noise for `sample` `[B, C, H, W]` at `timesteps` (one per batch element, or one
    /// for all) with text tokens `[B, N, cross_attention_dim]`.
    pub fn forward(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        text: Tensor<3>,
    ) -> Result<Tensor<4>, UNetError> {
        self.forward_with(sample, timesteps, UNetInputs::new(text))
    }

    /// [`Self::forward`] with the whole per-call conditioning: text tokens, optional adapter
    /// inputs and an optional feature hook.
    pub fn forward_with(
        &self,
        sample: Tensor<4>,
        timesteps: &[f32],
        inputs: UNetInputs<'_>,
    ) -> Result<Tensor<4>, UNetError> {
        let UNetInputs {
            text,
            text_kv,
            adapters: adapter,
            hook,
        } = inputs;
        let mut no_hook = NoHook;
        let hook: &mut dyn UNetHook = match hook {
            Some(h) => h,
            None => &mut no_hook,
        };
        let [b, c, h, w] = sample.dims();
        if c != self.in_channels || h == 0 || w == 0 {
            return Err(sonic_core::CoreError::BadShape {
                what: "UNet sample",
                expected: format!("[B, {}, H, W]", self.in_channels),
                found: sample.dims().to_vec(),
            }
            .into());
        }
        let [tb, _, tc] = text.dims();
        if tb != b || tc != self.cross_attention_dim {
            return Err(sonic_core::CoreError::BadShape {
                what: "UNet encoder_hidden_states",
                expected: format!("[{b}, N, {}]", self.cross_attention_dim),
                found: text.dims().to_vec(),
            }
            .into());
        }
        let ts: Vec<f32> = match timesteps.len() {
            1 => vec![timesteps[0]; b],
            n if n == b => timesteps.to_vec(),
            _ => {
                return Err(sonic_core::CoreError::BadShape {
                    what: "UNet timesteps",
                    expected: format!("1 or {b} timesteps"),
                    found: vec![timesteps.len()],
                }
                .into());
            }
        };
        if let Some(kv) = text_kv {
            let blocks = self.transformer_blocks().count();
            if kv.text_dims() != text.dims() || kv.len() != blocks {
                return Err(sonic_core::CoreError::BadShape {
                    what: "text keys / values",
                    expected: format!("{blocks} blocks for text {:?}", text.dims()),
                    found: kv.text_dims().to_vec(),
                }
                .into());
            }
        }
        if let Some(a) = adapter {
            let expected = self.adapter_count();
            if a.kv.len() != expected || a.kv.iter().any(|kv| kv.key.dims()[0] != b) {
                return Err(sonic_core::CoreError::BadShape {
                    what: "adapter inputs",
                    expected: format!("{expected} adapters with batch {b}"),
                    found: a
                        .kv
                        .first()
                        .map(|kv| kv.key.dims().to_vec())
                        .unwrap_or_default(),
                }
                .into());
            }
        }
        let device = sample.device();
        let t_emb = timestep_embedding(
            &ts,
            self.time_proj_dim,
            self.flip_sin_to_cos,
            self.freq_shift,
            &device,
        );
        let temb = self.time_embedding.forward(t_emb);
        if hook.active() {
            hook.time_embedding(&temb);
        }

        let mut blocks = |block: &str| BlockInputs {
            text_kv: text_kv.and_then(|kv| kv.get(block)),
            adapter: adapter.and_then(|a| a.get(block)),
        };

        let factor = 1usize << self.num_upsamplers();
        let forward_upsample_size = h % factor != 0 || w % factor != 0;

        let mut x = sonic_layers::conv2d_forward(&self.conv_in, sample);
        if hook.active() {
            hook.block_output("conv_in", &x);
        }
        let mut skips = vec![x.clone()];
        for (i, block) in self.down_blocks.iter().enumerate() {
            let name = format!("down_blocks.{i}");
            let (out, states) = block.forward(x, &temb, &text, &mut blocks, hook, &name);
            x = out;
            skips.extend(states);
            if hook.active() {
                hook.block_output(&name, &x);
            }
        }
        x = self.mid_block.forward(x, &temb, &text, &mut blocks, hook);
        if hook.active() {
            hook.block_output("mid_block", &x);
        }
        let n = self.up_blocks.len();
        for (i, block) in self.up_blocks.iter().enumerate() {
            let name = format!("up_blocks.{i}");
            let keep = skips.len().saturating_sub(block.resnets.len());
            let upsample_size = if i + 1 < n && forward_upsample_size {
                skips.get(keep.wrapping_sub(1)).map(|s| {
                    let d = s.dims();
                    [d[2], d[3]]
                })
            } else {
                None
            };
            x = block.forward(
                x,
                &mut skips,
                &temb,
                &text,
                upsample_size,
                &mut blocks,
                hook,
                &name,
            );
            skips.truncate(keep);
            if hook.active() {
                hook.block_output(&name, &x);
            }
        }
        Ok(sonic_layers::conv2d_forward(
            &self.conv_out,
            sonic_kernels::norm::group_norm_silu(&self.conv_norm_out, x),
        ))
    }
}
