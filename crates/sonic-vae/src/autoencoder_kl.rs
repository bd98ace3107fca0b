//! diffusers' `AutoencoderKL`: `Encoder`, `Decoder`, and the diagonal Gaussian posterior.

use crate::config::VaeConfig;
use crate::error::VaeError;
use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};
use sonic_attn::{Attention, AttentionConfig};
use sonic_core::weights::{LoadOptions, Remap, find_weights, load_weights};
use sonic_kernels::norm::group_norm_silu;
use sonic_layers::downsampling::Downsample2D;
use sonic_layers::resnet::ResnetBlock2D;
use sonic_layers::upsampling::Upsample2D;
use sonic_layers::{conv2d, group_norm};
use std::path::Path;

/// The epsilon of every VAE norm (diffusers hard-codes 1e-6).
const VAE_EPS: f64 = 1e-6;

/// `DownEncoderBlock2D`: resnets, then an optional stride-2 downsampler.
#[derive(Module, Debug)]
pub struct DownEncoderBlock2D {
    /// The resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// The downsampler (`downsamplers.0`), absent on the last level.
    pub downsamplers: Vec<Downsample2D>,
}

/// `UpDecoderBlock2D`: resnets, then an optional x2 upsampler.
#[derive(Module, Debug)]
pub struct UpDecoderBlock2D {
    /// The resnets.
    pub resnets: Vec<ResnetBlock2D>,
    /// The upsampler (`upsamplers.0`), absent on the last level.
    pub upsamplers: Vec<Upsample2D>,
}

/// `UNetMidBlock2D` without time embedding: resnet, attention, resnet.
#[derive(Module, Debug)]
pub struct VaeMidBlock {
    /// Two resnets (or more around more attentions).
    pub resnets: Vec<ResnetBlock2D>,
    /// Single-head spatial self-attention with GroupNorm and residual (may be empty).
    pub attentions: Vec<Attention>,
}

impl VaeMidBlock {
    fn new(c: usize, groups: usize, attention: bool, device: &Device) -> Self {
        let resnet = || ResnetBlock2D::new(c, c, None, groups, VAE_EPS, device);
        let attentions = if attention {
            vec![Attention::new(
                &AttentionConfig::new(c, 1, c)
                    .with_qkv_bias(true)
                    .with_group_norm(groups, VAE_EPS)
                    .with_residual(true),
                device,
            )]
        } else {
            vec![]
        };
        Self {
            resnets: vec![resnet(), resnet()],
            attentions,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = x;
        for (i, resnet) in self.resnets.iter().enumerate() {
            if i > 0
                && let Some(attn) = self.attentions.get(i - 1)
            {
                h = attn.forward_spatial(h);
            }
            h = resnet.forward(h, None);
        }
        h
    }
}

/// The encoder: image `[B, 3, H, W]` -> moments `[B, 2 * latent, H/f, W/f]`.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Input convolution.
    pub conv_in: Conv2d,
    /// Down blocks.
    pub down_blocks: Vec<DownEncoderBlock2D>,
    /// Mid block.
    pub mid_block: VaeMidBlock,
    /// Output norm.
    pub conv_norm_out: GroupNorm,
    /// Output convolution (to mean and log-variance).
    pub conv_out: Conv2d,
}

/// The decoder: latents `[B, latent, h, w]` -> image `[B, 3, h*f, w*f]`.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Input convolution.
    pub conv_in: Conv2d,
    /// Mid block.
    pub mid_block: VaeMidBlock,
    /// Up blocks.
    pub up_blocks: Vec<UpDecoderBlock2D>,
    /// Output norm.
    pub conv_norm_out: GroupNorm,
    /// Output convolution.
    pub conv_out: Conv2d,
}

/// The VAE with diffusers' parameter names.
#[derive(Module, Debug)]
pub struct AutoencoderKL {
    /// The encoder.
    pub encoder: Encoder,
    /// The decoder.
    pub decoder: Decoder,
    /// 1x1 convolution on the moments (`use_quant_conv`).
    pub quant_conv: Option<Conv2d>,
    /// 1x1 convolution on the latents (`use_post_quant_conv`).
    pub post_quant_conv: Option<Conv2d>,
    /// Latent scaling factor.
    pub scaling_factor: f64,
    /// Latent channels.
    pub latent_channels: usize,
    /// Image channels expected by the encoder.
    pub in_channels: usize,
}

/// The posterior `N(mean, exp(logvar))` of an encoded image.
#[derive(Debug, Clone)]
pub struct DiagonalGaussian {
    /// Mean `[B, latent, h, w]`.
    pub mean: Tensor<4>,
    /// Log-variance, clamped to `[-30, 20]` as diffusers does.
    pub logvar: Tensor<4>,
}

impl DiagonalGaussian {
    /// Splits moments `[B, 2C, h, w]` into mean and clamped log-variance.
    pub fn from_moments(moments: Tensor<4>) -> Self {
        let [b, c2, h, w] = moments.dims();
        let c = c2 / 2;
        let mean = moments.clone().slice([0..b, 0..c, 0..h, 0..w]);
        let logvar = moments.slice([0..b, c..c2, 0..h, 0..w]).clamp(-30.0, 20.0);
        Self { mean, logvar }
    }

    /// The standard deviation `exp(logvar / 2)`.
    pub fn std(&self) -> Tensor<4> {
        self.logvar.clone().mul_scalar(0.5).exp()
    }

    /// Draws `mean + std * noise` with seeded noise ([`sonic_core::noise::seeded_normal`],
    /// stream 0).
    pub fn sample(&self, seed: u64) -> Tensor<4> {
        let noise =
            sonic_core::noise::seeded_normal(self.mean.dims(), seed, 0, &self.mean.device());
        self.mean.clone() + self.std() * noise
    }
}

impl AutoencoderKL {
    /// The model of `config` with untrained weights.
    pub fn new(config: &VaeConfig, device: &Device) -> Self {
        let g = config.norm_num_groups;
        let boc = &config.block_out_channels;
        let lpb = config.layers_per_block;
        let n = boc.len();
        let last = boc[n - 1];
        let lc = config.latent_channels;

        let mut down_blocks = Vec::with_capacity(n);
        let mut c_prev = boc[0];
        for (i, &c) in boc.iter().enumerate() {
            let resnets = (0..lpb)
                .map(|j| {
                    let cin = if j == 0 { c_prev } else { c };
                    ResnetBlock2D::new(cin, c, None, g, VAE_EPS, device)
                })
                .collect();
            let downsamplers = if i + 1 < n {
                vec![Downsample2D::new(c, c, 0, device)]
            } else {
                vec![]
            };
            down_blocks.push(DownEncoderBlock2D {
                resnets,
                downsamplers,
            });
            c_prev = c;
        }
        let encoder = Encoder {
            conv_in: conv2d(config.in_channels, boc[0], 3, 1, 1, device),
            down_blocks,
            mid_block: VaeMidBlock::new(last, g, config.mid_block_add_attention, device),
            conv_norm_out: group_norm(g, last, VAE_EPS, device),
            conv_out: conv2d(last, 2 * lc, 3, 1, 1, device),
        };

        let mut up_blocks = Vec::with_capacity(n);
        let mut c_prev = last;
        for (i, &c) in boc.iter().rev().enumerate() {
            let resnets = (0..=lpb)
                .map(|j| {
                    let cin = if j == 0 { c_prev } else { c };
                    ResnetBlock2D::new(cin, c, None, g, VAE_EPS, device)
                })
                .collect();
            let upsamplers = if i + 1 < n {
                vec![Upsample2D::new(c, c, device)]
            } else {
                vec![]
            };
            up_blocks.push(UpDecoderBlock2D {
                resnets,
                upsamplers,
            });
            c_prev = c;
        }
        let decoder = Decoder {
            conv_in: conv2d(lc, last, 3, 1, 1, device),
            mid_block: VaeMidBlock::new(last, g, config.mid_block_add_attention, device),
            up_blocks,
            conv_norm_out: group_norm(g, boc[0], VAE_EPS, device),
            conv_out: conv2d(boc[0], config.out_channels, 3, 1, 1, device),
        };
        Self {
            encoder,
            decoder,
            quant_conv: config
                .use_quant_conv
                .then(|| conv2d(2 * lc, 2 * lc, 1, 1, 0, device)),
            post_quant_conv: config
                .use_post_quant_conv
                .then(|| conv2d(lc, lc, 1, 1, 0, device)),
            scaling_factor: config.scaling_factor,
            latent_channels: lc,
            in_channels: config.in_channels,
        }
    }

    /// The weight-key rewrites for older diffusers checkpoints (SD 1.4's VAE names its
    /// attention `query` / `key` / `value` / `proj_attn`).
    pub fn legacy_remaps() -> Vec<Remap> {
        vec![
            Remap::new(r"(attentions\.\d+)\.query\.", "$1.to_q."),
            Remap::new(r"(attentions\.\d+)\.key\.", "$1.to_k."),
            Remap::new(r"(attentions\.\d+)\.value\.", "$1.to_v."),
            Remap::new(r"(attentions\.\d+)\.proj_attn\.", "$1.to_out.0."),
        ]
    }

    /// Loads a diffusers `vae/` folder (`config.json` and
    /// `diffusion_pytorch_model[.fp16].safetensors`).
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, VaeError> {
        let config = VaeConfig::from_file(&dir.join("config.json"))?;
        let weights = find_weights(dir, "diffusion_pytorch_model", false)?;
        Self::from_weights(&config, &weights, device)
    }

    /// Builds the model of `config` and loads a safetensors file.
    pub fn from_weights(
        config: &VaeConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<Self, VaeError> {
        let options = LoadOptions {
            remaps: Self::legacy_remaps(),
            ignore: vec![],
            subset: None,
            ..Default::default()
        };
        Ok(load_weights(Self::new(config, device), weights, &options)?)
    }

    /// The latent scaling factor of the config.
    pub fn scaling_factor(&self) -> f64 {
        self.scaling_factor
    }

    /// The spatial downsampling factor (8 for SD).
    pub fn downsampling_factor(&self) -> usize {
        1 << self
            .encoder
            .down_blocks
            .iter()
            .filter(|b| !b.downsamplers.is_empty())
            .count()
    }

    /// Encodes images `[B, C, H, W]` in `[-1, 1]` to the latent posterior. Sizes that are not
    /// multiples of the downsampling factor are handled as diffusers does (each stride-2 step
    /// pads right / bottom by one and rounds down).
    pub fn encode(&self, image: Tensor<4>) -> Result<DiagonalGaussian, VaeError> {
        let dims = image.dims();
        if dims[1] != self.in_channels || dims[2] == 0 || dims[3] == 0 {
            return Err(sonic_core::CoreError::BadShape {
                what: "VAE encode input",
                expected: format!("[B, {}, H, W] with H, W > 0", self.in_channels),
                found: dims.to_vec(),
            }
            .into());
        }
        let e = &self.encoder;
        let mut h = sonic_layers::conv2d_forward(&e.conv_in, image);
        for block in &e.down_blocks {
            for r in &block.resnets {
                h = r.forward(h, None);
            }
            for d in &block.downsamplers {
                h = d.forward(h);
            }
        }
        h = e.mid_block.forward(h);
        h = sonic_layers::conv2d_forward(&e.conv_out, group_norm_silu(&e.conv_norm_out, h));
        if let Some(q) = &self.quant_conv {
            h = q.forward(h);
        }
        Ok(DiagonalGaussian::from_moments(h))
    }

    /// Decodes latents `[B, latent, h, w]` (already divided by the scaling factor) to images
    /// in about `[-1, 1]`.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>, VaeError> {
        let dims = latents.dims();
        if dims[1] != self.latent_channels || dims[2] == 0 || dims[3] == 0 {
            return Err(sonic_core::CoreError::BadShape {
                what: "VAE decode input",
                expected: format!("[B, {}, h, w]", self.latent_channels),
                found: dims.to_vec(),
            }
            .into());
        }
        let mut z = latents;
        if let Some(p) = &self.post_quant_conv {
            z = p.forward(z);
        }
        let d = &self.decoder;
        let mut h = sonic_layers::conv2d_forward(&d.conv_in, z);
        h = d.mid_block.forward(h);
        for block in &d.up_blocks {
            for r in &block.resnets {
                h = r.forward(h, None);
            }
            for u in &block.upsamplers {
                h = u.forward(h, None);
            }
        }
        Ok(sonic_layers::conv2d_forward(
            &d.conv_out,
            group_norm_silu(&d.conv_norm_out, h),
        ))
    }
}
