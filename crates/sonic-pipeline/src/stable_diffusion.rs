//! Loading a diffusers-layout Stable Diffusion folder.

use crate::error::PipelineError;
use burn::tensor::{Device, Tensor};
use sonic_clip::ClipTextModel;
use sonic_clip::tokenizer::ClipTokenizer;
use sonic_core::lora::{LoraComponent, LoraFile};
use sonic_schedulers::{Scheduler, read_python_json, scheduler_by_name};
use sonic_unet::{UNet2DConditionModel, UNetConfig};
use sonic_vae::{AutoencoderKL, AutoencoderTiny, VaeConfig};
use std::path::{Path, PathBuf};

/// The components of a Stable Diffusion 1.x / 2.x model.
pub struct StableDiffusion {
    /// The model folder.
    pub dir: PathBuf,
    /// The CLIP tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The CLIP text encoder.
    pub text_encoder: ClipTextModel,
    /// The noise-prediction UNet.
    pub unet: UNet2DConditionModel,
    /// The VAE.
    pub vae: AutoencoderKL,
    /// The tiny autoencoder (TAESD) used instead of [`Self::vae`] when set
    /// ([`Self::with_tiny_vae`]): decoding in a fraction of the time.
    pub tiny_vae: Option<AutoencoderTiny>,
    /// The UNet's config (`unet/config.json`).
    pub unet_config: UNetConfig,
    /// The VAE's config (`vae/config.json`).
    pub vae_config: VaeConfig,
    /// The scheduler config of the model (`scheduler/scheduler_config.json`).
    pub scheduler_config: serde_json::Value,
    /// The device every component lives on.
    pub device: Device,
}

/// The classes `model_index.json` may name, per component.
const EXPECTED: &[(&str, &[&str])] = &[
    ("unet", &["UNet2DConditionModel"]),
    ("vae", &["AutoencoderKL"]),
    ("text_encoder", &["CLIPTextModel"]),
    ("tokenizer", &["CLIPTokenizer", "CLIPTokenizerFast"]),
];

impl StableDiffusion {
    /// Loads `dir` (with `model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`,
    /// `scheduler/`) onto `device`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, PipelineError> {
        let index_path = dir.join("model_index.json");
        let index: serde_json::Value = sonic_core::config::read_json(&index_path)?;
        for (component, classes) in EXPECTED {
            let class = index
                .get(*component)
                .and_then(|v| v.as_array())
                .and_then(|a| a.get(1))
                .and_then(|c| c.as_str());
            match class {
                Some(c) if classes.contains(&c) => {}
                other => {
                    return Err(PipelineError::UnsupportedComponent {
                        path: index_path.clone(),
                        component: component.to_string(),
                        class: format!("{other:?}"),
                        expected: classes.join(" or "),
                    });
                }
            }
        }
        let scheduler_config =
            read_python_json(&dir.join("scheduler").join("scheduler_config.json"))?;
        tracing::info!(model = %dir.display(), "loading Stable Diffusion");
        let unet_config = UNetConfig::from_file(&dir.join("unet").join("config.json"))?;
        let vae_config = VaeConfig::from_file(&dir.join("vae").join("config.json"))?;
        let weights = crate::memory::model_weight_files(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tokenizer: ClipTokenizer::from_dir(dir.join("tokenizer"))
                .map_err(sonic_clip::ClipError::from)?,
            text_encoder: ClipTextModel::from_dir(&dir.join("text_encoder"), device)?,
            unet: UNet2DConditionModel::from_weights(&unet_config, &weights[1], device)?,
            vae: AutoencoderKL::from_weights(&vae_config, &weights[2], device)?,
            tiny_vae: None,
            unet_config,
            vae_config,
            scheduler_config,
            device: device.clone(),
        })
    }

    /// Adds the SonicDiffusion gated adapters found in `path` (an adapter-only safetensors
    /// file or the official `landscape.pt` / `greatest_hits.pt` pickle) to the UNet.
    pub fn with_adapters(mut self, path: &Path) -> Result<Self, PipelineError> {
        let unet = self.unet;
        let (unet, placement) = unet.with_adapters(path, &self.device)?;
        tracing::info!(file = %path.display(), ?placement, "loaded adapters");
        self.unet = unet;
        Ok(self)
    }

    /// Merges a LoRA file (diffusers, PEFT or kohya layout) into the UNet and, when it has
    /// layers for it, the text encoder, at `scale` (`1.0` as trained; several LoRAs add up).
    /// The weights change once, here: sampling costs nothing more.
    pub fn with_lora(mut self, path: &Path, scale: f32) -> Result<Self, PipelineError> {
        let lora = LoraFile::open(path)?;
        let (unet, merged) = lora.merge_into(
            self.unet,
            LoraComponent::Unet,
            scale,
            false,
            &UNet2DConditionModel::load_options(),
        )?;
        self.unet = unet;
        let (text_encoder, merged_te) = lora.merge_into(
            self.text_encoder,
            LoraComponent::TextEncoder,
            scale,
            false,
            &ClipTextModel::load_options(),
        )?;
        self.text_encoder = text_encoder;
        tracing::info!(
            file = %path.display(),
            layout = ?lora.layout(),
            scale,
            unet = merged.len(),
            text_encoder = merged_te.len(),
            "merged LoRA"
        );
        Ok(self)
    }

    /// Uses the tiny autoencoder in `dir` (a diffusers `AutoencoderTiny` folder, e.g.
    /// `madebyollin/taesd`) for decoding and encoding instead of the full VAE.
    pub fn with_tiny_vae(mut self, dir: &Path) -> Result<Self, PipelineError> {
        let tiny = AutoencoderTiny::from_dir(dir, &self.device)?;
        if tiny.latent_channels != self.vae.latent_channels
            || tiny.downsampling_factor() != self.vae.downsampling_factor()
        {
            return Err(PipelineError::InvalidParameter {
                name: "tiny VAE",
                value: dir.display().to_string(),
                reason: format!(
                    "its latent space ({} channels, factor {}) is not the model's ({} channels, \
                     factor {})",
                    tiny.latent_channels,
                    tiny.downsampling_factor(),
                    self.vae.latent_channels,
                    self.vae.downsampling_factor()
                ),
            });
        }
        self.tiny_vae = Some(tiny);
        Ok(self)
    }

    /// Encodes images in `[-1, 1]` to latents scaled for the UNet (the posterior mean of the
    /// VAE, or the tiny autoencoder's latents when one is set).
    pub fn encode_images(&self, images: Tensor<4>) -> Result<Tensor<4>, PipelineError> {
        Ok(match &self.tiny_vae {
            Some(tiny) => tiny.encode(images)?.mul_scalar(tiny.scaling_factor()),
            None => self
                .vae
                .encode(images)?
                .mean
                .mul_scalar(self.vae.scaling_factor()),
        })
    }

    /// Builds a scheduler by name (`model`, `ddim`, `pndm`, `euler`, `euler-karras`,
    /// `dpm++2m`, `dpm++2m-karras`, or a diffusers class name) from the model's config.
    pub fn scheduler(&self, name: &str) -> Result<Box<dyn Scheduler>, PipelineError> {
        Ok(scheduler_by_name(name, &self.scheduler_config)?)
    }

    /// Encodes prompts to text embeddings `[N, 77, width]` (prompts longer than the tokenizer's
    /// 77-token window are truncated, with a warning in the log, as diffusers does).
    pub fn encode_prompts(&self, prompts: &[String]) -> Result<Tensor<3>, PipelineError> {
        let ids = self
            .tokenizer
            .encode_batch_tensor(prompts, &self.device)
            .map_err(sonic_clip::ClipError::from)?;
        Ok(self.text_encoder.forward(ids)?)
    }

    /// The VAE's spatial factor (8 for SD).
    pub fn vae_scale_factor(&self) -> usize {
        self.vae.downsampling_factor()
    }

    /// The image side the model was trained at: the UNet config's `sample_size` times
    /// [`Self::vae_scale_factor`] (512 for SD 1.x); 512 when the config does not say.
    pub fn default_image_size(&self) -> usize {
        default_image_size(&self.dir, self.vae_scale_factor())
    }

    /// Decodes latents (scaled by the VAE's scaling factor) to images in `[0, 1]`, with the
    /// tiny autoencoder when one is set.
    pub fn decode_latents(&self, latents: Tensor<4>) -> Result<Tensor<4>, PipelineError> {
        let image = match &self.tiny_vae {
            Some(tiny) => tiny.decode(latents.div_scalar(tiny.scaling_factor()))?,
            None => self
                .vae
                .decode(latents.div_scalar(self.vae.scaling_factor()))?,
        };
        Ok(image.div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0))
    }
}

/// The image side a model folder was trained at: `unet/config.json`'s `sample_size` times
/// `vae_scale_factor`; 512 when the config does not say (or cannot be read).
pub fn default_image_size(dir: &Path, vae_scale_factor: usize) -> usize {
    std::fs::read_to_string(dir.join("unet").join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("sample_size")?.as_u64())
        .and_then(|s| usize::try_from(s).ok()?.checked_mul(vae_scale_factor))
        .unwrap_or(512)
}
