//! `unet/config.json` of diffusers' `UNet2DConditionModel`.

use crate::error::UNetError;
use serde::Deserialize;
use sonic_core::config::unsupported;
use std::path::Path;

/// A config value given either once for every level or per level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerLevel<T> {
    /// One value for all levels.
    One(T),
    /// One value per level (down-block order).
    Each(Vec<T>),
}

impl<T: Clone> PerLevel<T> {
    /// The values for `n` levels; a list must have exactly `n` entries.
    pub fn expand(&self, n: usize) -> Option<Vec<T>> {
        match self {
            PerLevel::One(v) => Some(vec![v.clone(); n]),
            PerLevel::Each(v) if v.len() == n => Some(v.clone()),
            PerLevel::Each(_) => None,
        }
    }
}

/// The keys of a `UNet2DConditionModel` config. Keys that would change the math in ways this
/// implementation does not support are parsed too, so that they can be rejected.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in.
    #[serde(default = "four")]
    pub in_channels: usize,
    /// Latent channels out.
    #[serde(default = "four")]
    pub out_channels: usize,
    /// Down block types (`CrossAttnDownBlock2D`, `DownBlock2D`).
    pub down_block_types: Vec<String>,
    /// Up block types (`CrossAttnUpBlock2D`, `UpBlock2D`).
    pub up_block_types: Vec<String>,
    /// Mid block type (`UNetMidBlock2DCrossAttn`).
    #[serde(default = "mid")]
    pub mid_block_type: Option<String>,
    /// Widths per level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block (up blocks have one more).
    #[serde(default = "two")]
    pub layers_per_block: PerLevel<usize>,
    /// In diffusers' SD configs this is the number of heads (a historical misnomer).
    #[serde(default)]
    pub attention_head_dim: Option<PerLevel<usize>>,
    /// Number of heads, when set (takes precedence over `attention_head_dim`).
    #[serde(default)]
    pub num_attention_heads: Option<PerLevel<usize>>,
    /// Width of the text tokens.
    pub cross_attention_dim: PerLevel<usize>,
    /// Linear (SD 2.x) instead of 1x1-conv (SD 1.x) `proj_in` / `proj_out`.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Compute attention scores in float32 (no effect in float32 runs).
    #[serde(default)]
    pub upcast_attention: bool,
    /// Transformer blocks per attention.
    #[serde(default = "one")]
    pub transformer_layers_per_block: PerLevel<usize>,
    /// Transformer blocks per attention of the up blocks (reversed order), when set.
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<usize>>,
    /// GroupNorm groups.
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    /// GroupNorm / resnet epsilon.
    #[serde(default = "eps")]
    pub norm_eps: f64,
    /// Swap sin and cos in the timestep embedding.
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding.
    #[serde(default)]
    pub freq_shift: f64,
    /// Padding of the down-sampling convolutions.
    #[serde(default = "one_usize")]
    pub downsample_padding: usize,
    /// Output scale of the mid block's resnets.
    #[serde(default = "onef")]
    pub mid_block_scale_factor: f64,
    /// Activation (`silu` only).
    #[serde(default = "silu")]
    pub act_fn: String,
    /// `default` only.
    #[serde(default = "default_str")]
    pub resnet_time_scale_shift: String,
    /// `positional` only.
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    /// Must be null.
    #[serde(default)]
    pub class_embed_type: Option<String>,
    /// Must be null.
    #[serde(default)]
    pub num_class_embeds: Option<usize>,
    /// Must be null.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Must be null.
    #[serde(default)]
    pub encoder_hid_dim: Option<usize>,
    /// Must be null.
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    /// Must be null.
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    /// Must be null.
    #[serde(default)]
    pub time_embedding_act_fn: Option<String>,
    /// Must be null.
    #[serde(default)]
    pub timestep_post_act: Option<String>,
    /// Must be false.
    #[serde(default)]
    pub center_input_sample: bool,
    /// Must be false.
    #[serde(default)]
    pub dual_cross_attention: bool,
    /// Must be false.
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    /// Must be false.
    #[serde(default)]
    pub resnet_skip_time_act: bool,
    /// Must be 1.
    #[serde(default = "onef")]
    pub resnet_out_scale_factor: f64,
    /// Must be 3.
    #[serde(default = "three")]
    pub conv_in_kernel: usize,
    /// Must be 3.
    #[serde(default = "three")]
    pub conv_out_kernel: usize,
    /// Must be `default`.
    #[serde(default = "default_str")]
    pub attention_type: String,
    /// Must be null.
    #[serde(default)]
    pub cross_attention_norm: Option<String>,
}

fn four() -> usize {
    4
}
fn three() -> usize {
    3
}
fn one_usize() -> usize {
    1
}
fn one() -> PerLevel<usize> {
    PerLevel::One(1)
}
fn two() -> PerLevel<usize> {
    PerLevel::One(2)
}
fn groups() -> usize {
    32
}
fn eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn onef() -> f64 {
    1.0
}
fn silu() -> String {
    "silu".into()
}
fn default_str() -> String {
    "default".into()
}
fn positional() -> String {
    "positional".into()
}
fn mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

/// The per-level sizes derived from a [`UNetConfig`], in down-block order.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelSizes {
    /// Resnets per down block.
    pub layers_per_block: Vec<usize>,
    /// Attention heads.
    pub heads: Vec<usize>,
    /// Context width of the cross-attention.
    pub cross_attention_dim: Vec<usize>,
    /// Transformer blocks per attention (down blocks and mid block).
    pub transformer_layers: Vec<usize>,
    /// Transformer blocks per attention of the up blocks, in up-block order.
    pub up_transformer_layers: Vec<usize>,
    /// Whether each down block has cross-attention.
    pub down_cross: Vec<bool>,
    /// Whether each up block has cross-attention.
    pub up_cross: Vec<bool>,
}

impl UNetConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, UNetError> {
        let cfg: Self = sonic_core::config::read_json(path)?;
        cfg.levels(path)?;
        Ok(cfg)
    }

    /// Parses and validates a config from JSON text; `origin` names it in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self, UNetError> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| sonic_core::CoreError::Json {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.levels(origin)?;
        Ok(cfg)
    }

    /// The width of the time embedding (4x the first level's width).
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }

    /// The documented sanity limits ([`sonic_core::config::limits`]) on every size.
    fn check_limits(
        &self,
        origin: &Path,
        heads: &[usize],
        layers_per_block: &[usize],
        cross_attention_dim: &[usize],
        transformer_layers: &[usize],
        up_transformer_layers: &[usize],
    ) -> Result<(), UNetError> {
        use sonic_core::config::{check_limit, check_limits, limits};
        check_limit(
            origin,
            "block_out_channels",
            self.block_out_channels.len(),
            limits::MAX_LEVELS,
        )?;
        check_limits(
            origin,
            "block_out_channels",
            &self.block_out_channels,
            limits::MAX_WIDTH,
        )?;
        check_limit(
            origin,
            "in_channels",
            self.in_channels,
            limits::MAX_IO_CHANNELS,
        )?;
        check_limit(
            origin,
            "out_channels",
            self.out_channels,
            limits::MAX_IO_CHANNELS,
        )?;
        check_limits(origin, "attention_head_dim", heads, limits::MAX_HEADS)?;
        check_limits(
            origin,
            "layers_per_block",
            layers_per_block,
            limits::MAX_LAYERS,
        )?;
        check_limits(
            origin,
            "cross_attention_dim",
            cross_attention_dim,
            limits::MAX_WIDTH,
        )?;
        check_limits(
            origin,
            "transformer_layers_per_block",
            transformer_layers,
            limits::MAX_LAYERS,
        )?;
        check_limits(
            origin,
            "reverse_transformer_layers_per_block",
            up_transformer_layers,
            limits::MAX_LAYERS,
        )?;
        Ok(())
    }

    /// Validates the config and derives the per-level sizes.
    pub fn levels(&self, origin: &Path) -> Result<LevelSizes, UNetError> {
        let n = self.block_out_channels.len();
        let err = |key: &str, value: &str, reason: &str| -> UNetError {
            unsupported(origin, key, value, reason).into()
        };
        if n == 0 {
            return Err(err("block_out_channels", "[]", "needs at least one level"));
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(err(
                "down_block_types",
                &format!("{:?}", self.down_block_types),
                "needs one down and one up block per entry of block_out_channels",
            ));
        }
        let mut down_cross = Vec::with_capacity(n);
        for t in &self.down_block_types {
            match t.as_str() {
                "CrossAttnDownBlock2D" => down_cross.push(true),
                "DownBlock2D" => down_cross.push(false),
                other => {
                    return Err(err(
                        "down_block_types",
                        other,
                        "supported: CrossAttnDownBlock2D, DownBlock2D",
                    ));
                }
            }
        }
        let mut up_cross = Vec::with_capacity(n);
        for t in &self.up_block_types {
            match t.as_str() {
                "CrossAttnUpBlock2D" => up_cross.push(true),
                "UpBlock2D" => up_cross.push(false),
                other => {
                    return Err(err(
                        "up_block_types",
                        other,
                        "supported: CrossAttnUpBlock2D, UpBlock2D",
                    ));
                }
            }
        }
        match self.mid_block_type.as_deref() {
            Some("UNetMidBlock2DCrossAttn") => {}
            other => {
                return Err(err(
                    "mid_block_type",
                    &format!("{other:?}"),
                    "supported: UNetMidBlock2DCrossAttn",
                ));
            }
        }
        let checks: [(&str, bool, String); 20] = [
            ("act_fn", self.act_fn == "silu", self.act_fn.clone()),
            (
                "resnet_time_scale_shift",
                self.resnet_time_scale_shift == "default",
                self.resnet_time_scale_shift.clone(),
            ),
            (
                "time_embedding_type",
                self.time_embedding_type == "positional",
                self.time_embedding_type.clone(),
            ),
            (
                "class_embed_type",
                self.class_embed_type.is_none(),
                format!("{:?}", self.class_embed_type),
            ),
            (
                "num_class_embeds",
                self.num_class_embeds.is_none(),
                format!("{:?}", self.num_class_embeds),
            ),
            (
                "addition_embed_type",
                self.addition_embed_type.is_none(),
                format!("{:?}", self.addition_embed_type),
            ),
            (
                "encoder_hid_dim",
                self.encoder_hid_dim.is_none(),
                format!("{:?}", self.encoder_hid_dim),
            ),
            (
                "time_cond_proj_dim",
                self.time_cond_proj_dim.is_none(),
                format!("{:?}", self.time_cond_proj_dim),
            ),
            (
                "time_embedding_dim",
                self.time_embedding_dim.is_none(),
                format!("{:?}", self.time_embedding_dim),
            ),
            (
                "time_embedding_act_fn",
                self.time_embedding_act_fn.is_none(),
                format!("{:?}", self.time_embedding_act_fn),
            ),
            (
                "timestep_post_act",
                self.timestep_post_act.is_none(),
                format!("{:?}", self.timestep_post_act),
            ),
            (
                "center_input_sample",
                !self.center_input_sample,
                self.center_input_sample.to_string(),
            ),
            (
                "dual_cross_attention",
                !self.dual_cross_attention,
                self.dual_cross_attention.to_string(),
            ),
            (
                "only_cross_attention",
                matches!(
                    self.only_cross_attention,
                    serde_json::Value::Null | serde_json::Value::Bool(false)
                ),
                self.only_cross_attention.to_string(),
            ),
            (
                "resnet_skip_time_act",
                !self.resnet_skip_time_act,
                self.resnet_skip_time_act.to_string(),
            ),
            (
                "resnet_out_scale_factor",
                self.resnet_out_scale_factor == 1.0,
                self.resnet_out_scale_factor.to_string(),
            ),
            (
                "conv_in_kernel",
                self.conv_in_kernel == 3,
                self.conv_in_kernel.to_string(),
            ),
            (
                "conv_out_kernel",
                self.conv_out_kernel == 3,
                self.conv_out_kernel.to_string(),
            ),
            (
                "attention_type",
                self.attention_type == "default",
                self.attention_type.clone(),
            ),
            (
                "cross_attention_norm",
                self.cross_attention_norm.is_none(),
                format!("{:?}", self.cross_attention_norm),
            ),
        ];
        if let Some((key, _, value)) = checks.iter().find(|(_, ok, _)| !ok) {
            return Err(err(
                key,
                value,
                "not supported by this UNet (SD 1.x / 2.x only)",
            ));
        }
        let layers_per_block = self.layers_per_block.expand(n).ok_or_else(|| {
            err(
                "layers_per_block",
                &format!("{:?}", self.layers_per_block),
                "needs one entry per level",
            )
        })?;
        let heads_src = self
            .num_attention_heads
            .as_ref()
            .or(self.attention_head_dim.as_ref())
            .ok_or_else(|| {
                err(
                    "attention_head_dim",
                    "null",
                    "one of attention_head_dim / num_attention_heads must be set",
                )
            })?;
        let heads = heads_src.expand(n).ok_or_else(|| {
            err(
                "num_attention_heads",
                &format!("{heads_src:?}"),
                "needs one entry per level",
            )
        })?;
        let cross_attention_dim = self.cross_attention_dim.expand(n).ok_or_else(|| {
            err(
                "cross_attention_dim",
                &format!("{:?}", self.cross_attention_dim),
                "needs one entry per level",
            )
        })?;
        let transformer_layers = self.transformer_layers_per_block.expand(n).ok_or_else(|| {
            err(
                "transformer_layers_per_block",
                &format!("{:?}", self.transformer_layers_per_block),
                "needs one entry per level",
            )
        })?;
        let up_transformer_layers = match &self.reverse_transformer_layers_per_block {
            Some(v) if v.len() == n => v.clone(),
            Some(v) => {
                return Err(err(
                    "reverse_transformer_layers_per_block",
                    &format!("{v:?}"),
                    "needs one entry per level",
                ));
            }
            None => transformer_layers.iter().rev().copied().collect(),
        };
        for (i, (&c, &h)) in self.block_out_channels.iter().zip(&heads).enumerate() {
            if h == 0 || c % h != 0 {
                return Err(err(
                    "attention_head_dim",
                    &format!("{heads:?}"),
                    &format!("level {i}: {h} heads must divide {c} channels"),
                ));
            }
            if self.norm_num_groups == 0 || c % self.norm_num_groups != 0 {
                return Err(err(
                    "norm_num_groups",
                    &self.norm_num_groups.to_string(),
                    &format!("must divide every block width (found {c})"),
                ));
            }
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(err(
                "in_channels",
                &self.in_channels.to_string(),
                "channels must be positive",
            ));
        }
        self.check_limits(
            origin,
            &heads,
            &layers_per_block,
            &cross_attention_dim,
            &transformer_layers,
            &up_transformer_layers,
        )?;
        Ok(LevelSizes {
            layers_per_block,
            heads,
            cross_attention_dim,
            transformer_layers,
            up_transformer_layers,
            down_cross,
            up_cross,
        })
    }
}
