//! diffusers' `AutoencoderTiny` (TAESD, Ollin Boer Bohan's tiny autoencoder): the same
//! latent space as Stable Diffusion's `AutoencoderKL`, decoded by a few plain convolutions in a
//! fraction of the time, for fast generation and previews during sampling.
//!
//! Layout (diffusers' `EncoderTiny` / `DecoderTiny` / `AutoencoderTinyBlock`): each side is one
//! `layers` sequence whose indices are the weight keys (`encoder.layers.3.conv.2.weight`);
//! layers without weights (activations, upsampling) keep their index, as in PyTorch's
//! `nn.Sequential`.

use crate::error::VaeError;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};
use serde::Deserialize;
use sonic_core::config::unsupported;
use sonic_core::weights::{LoadOptions, find_weights, load_weights};
use sonic_layers::conv2d_forward;
use sonic_layers::upsampling::upsample_nearest;
use std::path::Path;

/// The keys of an `AutoencoderTiny` `config.json` that shape the model.
#[derive(Debug, Clone, Deserialize)]
pub struct TinyVaeConfig {
    /// Image channels in (3).
    #[serde(default = "three")]
    pub in_channels: usize,
    /// Image channels out (3).
    #[serde(default = "three")]
    pub out_channels: usize,
    /// Encoder widths per level.
    #[serde(default = "widths")]
    pub encoder_block_out_channels: Vec<usize>,
    /// Decoder widths per level.
    #[serde(default = "widths")]
    pub decoder_block_out_channels: Vec<usize>,
    /// `AutoencoderTinyBlock`s per encoder level.
    #[serde(default = "encoder_blocks")]
    pub num_encoder_blocks: Vec<usize>,
    /// `AutoencoderTinyBlock`s per decoder level.
    #[serde(default = "decoder_blocks")]
    pub num_decoder_blocks: Vec<usize>,
    /// Activation inside the blocks (`relu`, `silu` / `swish`, `gelu`, `mish`).
    #[serde(default = "relu")]
    pub act_fn: String,
    /// Latent channels (4).
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// Upsampling factor between decoder levels (2).
    #[serde(default = "two")]
    pub upsampling_scaling_factor: usize,
    /// Upsampling mode (only `nearest`).
    #[serde(default = "nearest")]
    pub upsample_fn: String,
    /// Latent scaling factor (1.0: TAESD decodes SD's scaled latents directly).
    #[serde(default = "unit")]
    pub scaling_factor: f64,
    /// Latent shift (must be 0 or absent).
    #[serde(default)]
    pub shift_factor: Option<f64>,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn widths() -> Vec<usize> {
    vec![64; 4]
}
fn encoder_blocks() -> Vec<usize> {
    vec![1, 3, 3, 3]
}
fn decoder_blocks() -> Vec<usize> {
    vec![3, 3, 3, 1]
}
fn relu() -> String {
    "relu".into()
}
fn nearest() -> String {
    "nearest".into()
}
fn unit() -> f64 {
    1.0
}

/// The most channels or blocks a config may ask for (far above TAESD's 64 channels, 3 blocks;
/// a config beyond is corrupt, not a model).
const MAX_WIDTH: usize = 1 << 14;
const MAX_BLOCKS: usize = 256;

impl TinyVaeConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, VaeError> {
        let cfg: Self = sonic_core::config::read_json(path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Rejects values this implementation does not support, and sizes that are not a model.
    pub fn validate(&self, origin: &Path) -> Result<(), VaeError> {
        let bad = |key: &str, value: &dyn erased::Value, reason: &str| -> VaeError {
            unsupported(origin, key, value.json(), reason).into()
        };
        let lists = [
            (
                "encoder_block_out_channels",
                &self.encoder_block_out_channels,
            ),
            ("num_encoder_blocks", &self.num_encoder_blocks),
            (
                "decoder_block_out_channels",
                &self.decoder_block_out_channels,
            ),
            ("num_decoder_blocks", &self.num_decoder_blocks),
        ];
        for (key, list) in lists {
            if list.is_empty() || list.len() > 16 {
                return Err(bad(key, list, "needs 1 to 16 levels"));
            }
        }
        if self.num_encoder_blocks.len() != self.encoder_block_out_channels.len() {
            return Err(bad(
                "num_encoder_blocks",
                &self.num_encoder_blocks,
                "needs one entry per encoder_block_out_channels",
            ));
        }
        if self.num_decoder_blocks.len() != self.decoder_block_out_channels.len() {
            return Err(bad(
                "num_decoder_blocks",
                &self.num_decoder_blocks,
                "needs one entry per decoder_block_out_channels",
            ));
        }
        // diffusers' strided convolutions keep the width: every encoder level must match.
        if self
            .encoder_block_out_channels
            .windows(2)
            .any(|w| w[0] != w[1])
        {
            return Err(bad(
                "encoder_block_out_channels",
                &self.encoder_block_out_channels,
                "diffusers' EncoderTiny needs the same width at every level",
            ));
        }
        if self
            .decoder_block_out_channels
            .windows(2)
            .any(|w| w[0] != w[1])
        {
            return Err(bad(
                "decoder_block_out_channels",
                &self.decoder_block_out_channels,
                "diffusers' DecoderTiny needs the same width at every level",
            ));
        }
        let widths = self
            .encoder_block_out_channels
            .iter()
            .chain(&self.decoder_block_out_channels)
            .chain([&self.in_channels, &self.out_channels, &self.latent_channels]);
        if let Some(w) = widths.copied().find(|&w| w == 0 || w > MAX_WIDTH) {
            return Err(bad(
                "block_out_channels",
                &w,
                &format!("channel counts must be 1..={MAX_WIDTH}"),
            ));
        }
        let blocks = self
            .num_encoder_blocks
            .iter()
            .chain(&self.num_decoder_blocks);
        if let Some(b) = blocks.copied().find(|&b| b > MAX_BLOCKS) {
            return Err(bad(
                "num_blocks",
                &b,
                &format!("at most {MAX_BLOCKS} blocks per level"),
            ));
        }
        Activation::parse(&self.act_fn).ok_or_else(|| {
            bad(
                "act_fn",
                &self.act_fn,
                "supported: relu, silu, swish, gelu, mish",
            )
        })?;
        if self.upsample_fn != "nearest" {
            return Err(bad("upsample_fn", &self.upsample_fn, "only nearest"));
        }
        if !(1..=8).contains(&self.upsampling_scaling_factor) {
            return Err(bad(
                "upsampling_scaling_factor",
                &self.upsampling_scaling_factor,
                "must be 1 to 8",
            ));
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            return Err(bad(
                "scaling_factor",
                &self.scaling_factor,
                "must be a positive number",
            ));
        }
        if self.shift_factor.is_some_and(|s| s != 0.0) {
            return Err(bad(
                "shift_factor",
                &self.shift_factor,
                "latent shifts (SD 3 / Flux TAEs) are not implemented",
            ));
        }
        Ok(())
    }
}

/// Values that serialise to JSON for error messages.
mod erased {
    /// A config value, shown as JSON in an error.
    pub trait Value {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Value for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// The activation of a tiny autoencoder (diffusers' `get_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `relu` (TAESD).
    Relu,
    /// `silu` / `swish`.
    Silu,
    /// `gelu` (exact, erf).
    Gelu,
    /// `mish`.
    Mish,
}

impl Activation {
    /// Parses diffusers' name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "mish" => Activation::Mish,
            _ => return None,
        })
    }

    fn forward(self, x: Tensor<4>) -> Tensor<4> {
        use burn::tensor::activation as a;
        match self {
            Activation::Relu => a::relu(x),
            Activation::Silu => a::silu(x),
            Activation::Gelu => a::gelu(x),
            Activation::Mish => a::mish(x),
        }
    }
}

/// An activation layer (no weights).
#[derive(Module, Debug)]
pub struct Act {
    /// Which activation.
    #[module(skip)]
    pub kind: Activation,
}

/// Nearest-neighbour upsampling by an integer factor (PyTorch's `nn.Upsample`).
#[derive(Module, Debug)]
pub struct Upsample {
    /// The factor.
    #[module(skip)]
    pub factor: usize,
}

/// One entry of a `layers` sequence.
#[derive(Module, Debug)]
pub enum TinyLayer {
    /// A convolution (`layers.N.weight` / `.bias`).
    Conv(Conv2d),
    /// A residual block (`layers.N.conv.{0,2,4}`, `layers.N.skip`).
    Block(AutoencoderTinyBlock),
    /// An activation (no weights).
    Act(Act),
    /// Nearest-neighbour upsampling (no weights).
    Upsample(Upsample),
}

impl TinyLayer {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            TinyLayer::Conv(c) => conv2d_forward(c, x),
            TinyLayer::Block(b) => b.forward(x),
            TinyLayer::Act(a) => a.kind.forward(x),
            TinyLayer::Upsample(u) if u.factor == 1 => x,
            TinyLayer::Upsample(u) => {
                let [_, _, h, w] = x.dims();
                upsample_nearest(x, [h * u.factor, w * u.factor])
            }
        }
    }
}

/// diffusers' `AutoencoderTinyBlock`: `relu(conv(act(conv(act(conv(x))))) + skip(x))`.
#[derive(Module, Debug)]
pub struct AutoencoderTinyBlock {
    /// `conv.0`, the activation, `conv.2`, the activation, `conv.4`.
    pub conv: Vec<TinyLayer>,
    /// 1x1 projection when the widths differ (`skip.weight`), else the identity.
    pub skip: Option<Conv2d>,
}

impl AutoencoderTinyBlock {
    /// A block from `c_in` to `c_out` channels.
    pub fn new(c_in: usize, c_out: usize, act: Activation, device: &Device) -> Self {
        Self {
            conv: vec![
                TinyLayer::Conv(conv3x3(c_in, c_out, 1, true, device)),
                TinyLayer::Act(Act { kind: act }),
                TinyLayer::Conv(conv3x3(c_out, c_out, 1, true, device)),
                TinyLayer::Act(Act { kind: act }),
                TinyLayer::Conv(conv3x3(c_out, c_out, 1, true, device)),
            ],
            skip: (c_in != c_out).then(|| {
                Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_bias(false)
                    .init(device)
            }),
        }
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.skip {
            Some(s) => conv2d_forward(s, x.clone()),
            None => x.clone(),
        };
        let h = self.conv.iter().fold(x, |h, l| l.forward(h));
        burn::tensor::activation::relu(h + skip)
    }
}

fn conv3x3(c_in: usize, c_out: usize, stride: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .init(device)
}

/// A `layers` sequence (diffusers' `EncoderTiny` or `DecoderTiny`).
#[derive(Module, Debug)]
pub struct TinyCoder {
    /// The layers, indexed as the weight keys.
    pub layers: Vec<TinyLayer>,
}

impl TinyCoder {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.layers.iter().fold(x, |h, l| l.forward(h))
    }
}

/// diffusers' `AutoencoderTiny` with its parameter names.
#[derive(Module, Debug)]
pub struct AutoencoderTiny {
    /// `EncoderTiny`.
    pub encoder: TinyCoder,
    /// `DecoderTiny`.
    pub decoder: TinyCoder,
    /// Latent scaling factor (1.0 for TAESD).
    pub scaling_factor: f64,
    /// Latent channels.
    pub latent_channels: usize,
    /// Image channels the encoder takes.
    pub in_channels: usize,
    /// The encoder's downsampling factor (2 per level after the first).
    pub downsampling: usize,
}

impl AutoencoderTiny {
    /// The model of `config` with untrained weights (lazily initialised: nothing is allocated
    /// until used or loaded). Call [`TinyVaeConfig::validate`] first: an unvalidated config may
    /// name an unsupported activation (read as relu) or absurd sizes.
    pub fn new(config: &TinyVaeConfig, device: &Device) -> Self {
        // validate() has accepted the name.
        let act = Activation::parse(&config.act_fn).unwrap_or(Activation::Relu);
        let mut enc = Vec::new();
        for (i, (&c, &n)) in config
            .encoder_block_out_channels
            .iter()
            .zip(&config.num_encoder_blocks)
            .enumerate()
        {
            enc.push(TinyLayer::Conv(if i == 0 {
                conv3x3(config.in_channels, c, 1, true, device)
            } else {
                conv3x3(c, c, 2, false, device)
            }));
            enc.extend(
                (0..n).map(|_| TinyLayer::Block(AutoencoderTinyBlock::new(c, c, act, device))),
            );
        }
        let last = *config.encoder_block_out_channels.last().unwrap_or(&1);
        enc.push(TinyLayer::Conv(conv3x3(
            last,
            config.latent_channels,
            1,
            true,
            device,
        )));

        let dec_widths = &config.decoder_block_out_channels;
        let first = dec_widths.first().copied().unwrap_or(1);
        let mut dec = vec![
            TinyLayer::Conv(conv3x3(config.latent_channels, first, 1, true, device)),
            TinyLayer::Act(Act { kind: act }),
        ];
        let levels = dec_widths.len();
        for (i, (&c, &n)) in dec_widths
            .iter()
            .zip(&config.num_decoder_blocks)
            .enumerate()
        {
            let is_final = i + 1 == levels;
            dec.extend(
                (0..n).map(|_| TinyLayer::Block(AutoencoderTinyBlock::new(c, c, act, device))),
            );
            if !is_final {
                dec.push(TinyLayer::Upsample(Upsample {
                    factor: config.upsampling_scaling_factor,
                }));
            }
            let out = if is_final { config.out_channels } else { c };
            dec.push(TinyLayer::Conv(conv3x3(c, out, 1, is_final, device)));
        }
        Self {
            encoder: TinyCoder { layers: enc },
            decoder: TinyCoder { layers: dec },
            scaling_factor: config.scaling_factor,
            latent_channels: config.latent_channels,
            in_channels: config.in_channels,
            // 2 per level after the first (validate() caps the levels at 16).
            downsampling: 1usize
                .checked_shl(config.encoder_block_out_channels.len().saturating_sub(1) as u32)
                .unwrap_or(0),
        }
    }

    /// Loads a diffusers `AutoencoderTiny` folder (`config.json` and
    /// `diffusion_pytorch_model[.fp16].safetensors`, e.g. `madebyollin/taesd`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, VaeError> {
        let config = TinyVaeConfig::from_file(&dir.join("config.json"))?;
        let weights = find_weights(dir, "diffusion_pytorch_model", false)?;
        Ok(load_weights(
            Self::new(&config, device),
            &weights,
            &LoadOptions::default(),
        )?)
    }

    /// The latent scaling factor of the config.
    pub fn scaling_factor(&self) -> f64 {
        self.scaling_factor
    }

    /// The spatial downsampling factor (8 for TAESD).
    pub fn downsampling_factor(&self) -> usize {
        self.downsampling
    }

    /// Encodes images `[B, C, H, W]` in `[-1, 1]` to latents (diffusers'
    /// `encode(x).latents`, unscaled: multiply by the scaling factor for the UNet).
    pub fn encode(&self, image: Tensor<4>) -> Result<Tensor<4>, VaeError> {
        let dims = image.dims();
        if dims[1] != self.in_channels || dims[2] == 0 || dims[3] == 0 {
            return Err(sonic_core::CoreError::BadShape {
                what: "tiny VAE encode input",
                expected: format!("[B, {}, H, W] with H, W > 0", self.in_channels),
                found: dims.to_vec(),
            }
            .into());
        }
        // [-1, 1] -> [0, 1], TAESD's convention.
        Ok(self.encoder.forward(image.add_scalar(1.0).div_scalar(2.0)))
    }

    /// Decodes latents `[B, latent, h, w]` (divided by the scaling factor) to images in about
    /// `[-1, 1]`.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>, VaeError> {
        let dims = latents.dims();
        if dims[1] != self.latent_channels || dims[2] == 0 || dims[3] == 0 {
            return Err(sonic_core::CoreError::BadShape {
                what: "tiny VAE decode input",
                expected: format!("[B, {}, h, w]", self.latent_channels),
                found: dims.to_vec(),
            }
            .into());
        }
        // The soft clamp of DecoderTiny: tanh(x / 3) * 3.
        let x = latents.div_scalar(3.0).tanh().mul_scalar(3.0);
        Ok(self.decoder.forward(x).mul_scalar(2.0).sub_scalar(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> TinyVaeConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn layer_indices_follow_diffusers() {
        let device = Device::default();
        let cfg = config(serde_json::json!({
            "encoder_block_out_channels": [8, 8, 8, 8], "decoder_block_out_channels": [8, 8, 8, 8],
            "num_encoder_blocks": [1, 2, 2, 2], "num_decoder_blocks": [2, 2, 2, 1]
        }));
        cfg.validate(Path::new("config.json")).unwrap();
        let m = AutoencoderTiny::new(&cfg, &device);
        // encoder: conv, 1 block, (conv, 2 blocks) x 3, conv out
        assert_eq!(m.encoder.layers.len(), 1 + 1 + 3 * 3 + 1);
        // decoder: conv, act, (2 blocks, up, conv) x 3, 1 block, conv
        assert_eq!(m.decoder.layers.len(), 2 + 3 * 4 + 2);
        assert!(matches!(m.decoder.layers[4], TinyLayer::Upsample(_)));
        assert_eq!(m.downsampling_factor(), 8);
        let x = Tensor::<4>::zeros([1, 3, 16, 24], &device);
        let z = m.encode(x).unwrap();
        assert_eq!(z.dims(), [1, 4, 2, 3]);
        assert_eq!(m.decode(z).unwrap().dims(), [1, 3, 16, 24]);
    }

    #[test]
    fn bad_configs_name_their_key() {
        let cases = [
            (serde_json::json!({"act_fn": "tanh"}), "act_fn"),
            (
                serde_json::json!({"upsample_fn": "bilinear"}),
                "upsample_fn",
            ),
            (
                serde_json::json!({"num_encoder_blocks": [1, 2]}),
                "num_encoder_blocks",
            ),
            (
                serde_json::json!({"encoder_block_out_channels": [8, 16, 16, 16]}),
                "encoder_block_out_channels",
            ),
            (
                serde_json::json!({"latent_channels": 0}),
                "block_out_channels",
            ),
            (
                serde_json::json!({"num_decoder_blocks": [3, 3, 3, 100000]}),
                "num_blocks",
            ),
            (serde_json::json!({"shift_factor": 0.5}), "shift_factor"),
        ];
        for (json, key) in cases {
            let e = config(json)
                .validate(Path::new("x/config.json"))
                .unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(key) && msg.contains("x/config.json"), "{msg}");
        }
    }
}
