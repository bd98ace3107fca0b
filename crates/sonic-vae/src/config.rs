//! `vae/config.json` of diffusers' `AutoencoderKL`.

use crate::error::VaeError;
use serde::Deserialize;
use sonic_core::config::unsupported;
use std::path::Path;

/// The keys of an `AutoencoderKL` config that shape the model.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    /// Image channels in (3).
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out (3).
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Encoder block types (only `DownEncoderBlock2D`).
    pub down_block_types: Vec<String>,
    /// Decoder block types (only `UpDecoderBlock2D`).
    pub up_block_types: Vec<String>,
    /// Widths per level.
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block (the decoder has one more).
    #[serde(default = "one")]
    pub layers_per_block: usize,
    /// Activation (only `silu`).
    #[serde(default = "silu")]
    pub act_fn: String,
    /// Latent channels (4).
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// GroupNorm groups.
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    /// Latent scaling factor (0.18215 for SD 1.x / 2.x).
    #[serde(default = "scaling")]
    pub scaling_factor: f64,
    /// Latent shift (must be absent or null: SD 3 / Flux only).
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Whether `quant_conv` exists.
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    /// Whether `post_quant_conv` exists.
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    /// Whether the mid blocks have attention.
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn four() -> usize {
    4
}
fn groups() -> usize {
    32
}
fn scaling() -> f64 {
    0.18215
}
fn yes() -> bool {
    true
}
fn silu() -> String {
    "silu".into()
}

impl VaeConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, VaeError> {
        let cfg: Self = sonic_core::config::read_json(path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Rejects values this implementation does not support.
    pub fn validate(&self, origin: &Path) -> Result<(), VaeError> {
        if let Some(t) = self
            .down_block_types
            .iter()
            .find(|t| t.as_str() != "DownEncoderBlock2D")
        {
            return Err(
                unsupported(origin, "down_block_types", t, "only DownEncoderBlock2D").into(),
            );
        }
        if let Some(t) = self
            .up_block_types
            .iter()
            .find(|t| t.as_str() != "UpDecoderBlock2D")
        {
            return Err(unsupported(origin, "up_block_types", t, "only UpDecoderBlock2D").into());
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(unsupported(
                origin,
                "block_out_channels",
                &self.block_out_channels,
                "needs one width per down and up block",
            )
            .into());
        }
        if self.act_fn != "silu" {
            return Err(unsupported(origin, "act_fn", &self.act_fn, "only silu").into());
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| self.norm_num_groups == 0 || c % self.norm_num_groups != 0)
        {
            return Err(unsupported(
                origin,
                "norm_num_groups",
                self.norm_num_groups,
                &format!("must divide every block width (found {c})"),
            )
            .into());
        }
        if self.shift_factor.is_some_and(|s| s != 0.0) {
            return Err(unsupported(
                origin,
                "shift_factor",
                self.shift_factor,
                "not an SD 1.x / 2.x VAE",
            )
            .into());
        }
        if self.latent_channels == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return Err(unsupported(
                origin,
                "latent_channels",
                self.latent_channels,
                "channels must be positive",
            )
            .into());
        }
        use sonic_core::config::{check_limit, check_limits, limits};
        check_limit(origin, "block_out_channels", n, limits::MAX_LEVELS)?;
        check_limits(
            origin,
            "block_out_channels",
            &self.block_out_channels,
            limits::MAX_WIDTH,
        )?;
        check_limit(
            origin,
            "layers_per_block",
            self.layers_per_block,
            limits::MAX_LAYERS,
        )?;
        for (key, v) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("latent_channels", self.latent_channels),
        ] {
            check_limit(origin, key, v, limits::MAX_IO_CHANNELS)?;
        }
        Ok(())
    }
}
