//! The SonicDiffusion pipeline: sound files to CLAP embeddings to audio tokens to images.
//!
//! ```no_run
//! use sonic_pipeline::sonic::{AudioSource, SonicPipeline};
//! use sonic_pipeline::AudioToImage;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipe = SonicPipeline::builder()
//!     .model("stable-diffusion-v1-4")
//!     .clap("CLAP_weights_2022.pth")
//!     .projector("audio_projector_landscape.pth")
//!     .adapters("landscape.pt")
//!     .build()?;
//! let emb = pipe.embed(&[AudioSource::File("thunder.wav".into())])?;
//! let req = AudioToImage { steps: 30, seed: 42, ..AudioToImage::default() };
//! let out = pipe.generate(emb, &req, &mut |p| eprintln!("{}/{}", p.step, p.total))?;
//! # Ok(()) }
//! ```
//!
//! Or from a released checkpoint, fetched into the Hugging Face cache on first use:
//!
//! ```no_run
//! use sonic_pipeline::hub::{Checkpoint, HubOptions};
//! use sonic_pipeline::sonic::SonicPipeline;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipe = SonicPipeline::builder()
//!     .preset(Checkpoint::Landscape)
//!     .hub_options(HubOptions::from_env()?.with_offline(false))
//!     .build()?;
//! # Ok(()) }
//! ```

use crate::audio_to_image::{AudioToImage, audio_to_image};
use crate::error::PipelineError;
use crate::hub::{Checkpoint, HubOptions};
use crate::sampling::ReportProgress;
use crate::stable_diffusion::StableDiffusion;
use crate::text_to_image::{Generation, Progress, seeded_noise};
use burn::tensor::{Device, Tensor, TensorData};
use sonic_audio::{ClapAudioEncoder, CropStart};
use sonic_projector::Projector;
use std::path::PathBuf;

/// A sound to condition on.
#[derive(Debug, Clone)]
pub enum AudioSource {
    /// A WAV / FLAC / MP3 / OGG file.
    File(PathBuf),
    /// Samples (mono, any rate).
    Samples {
        /// The samples.
        samples: Vec<f32>,
        /// Their sample rate.
        sample_rate: u32,
    },
}

/// SD with adapters, the CLAP audio encoder and the audio projector.
pub struct SonicPipeline {
    /// Stable Diffusion with the gated adapters loaded.
    pub sd: StableDiffusion,
    /// The CLAP audio encoder.
    pub clap: ClapAudioEncoder,
    /// The audio projector.
    pub projector: Projector,
}

/// Builds a [`SonicPipeline`] from local files.
#[derive(Debug, Default, Clone)]
pub struct SonicPipelineBuilder {
    model: Option<PathBuf>,
    clap: Option<PathBuf>,
    projector: Option<PathBuf>,
    projector_config: Option<PathBuf>,
    adapters: Option<PathBuf>,
    device: Option<Device>,
    crop: Option<CropStart>,
    preset: Option<Checkpoint>,
    hub: Option<HubOptions>,
    loras: Vec<(PathBuf, f32)>,
    tiny_vae: Option<PathBuf>,
}

fn missing(name: &'static str) -> PipelineError {
    PipelineError::InvalidParameter {
        name,
        value: "unset".into(),
        reason: format!("the builder needs `.{name}(path)` or `.preset(checkpoint)`"),
    }
}

impl SonicPipelineBuilder {
    /// The diffusers-layout Stable Diffusion folder.
    pub fn model(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model = Some(dir.into());
        self
    }
    /// The CLAP checkpoint (`CLAP_weights_2022.pth` or safetensors with the same keys).
    pub fn clap(mut self, path: impl Into<PathBuf>) -> Self {
        self.clap = Some(path.into());
        self
    }
    /// The projector weights (`audio_projector_*.pth` or safetensors).
    pub fn projector(mut self, path: impl Into<PathBuf>) -> Self {
        self.projector = Some(path.into());
        self
    }
    /// A projector config (JSON) when the weights alone do not tell the head count.
    pub fn projector_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.projector_config = Some(path.into());
        self
    }
    /// The adapter weights (`landscape.pt`, `greatest_hits.pt` or safetensors).
    pub fn adapters(mut self, path: impl Into<PathBuf>) -> Self {
        self.adapters = Some(path.into());
        self
    }
    /// A LoRA file merged into the UNet (and text encoder) at `scale`; call again for more
    /// ([`StableDiffusion::with_lora`]).
    pub fn lora(mut self, path: impl Into<PathBuf>, scale: f32) -> Self {
        self.loras.push((path.into(), scale));
        self
    }
    /// A tiny autoencoder folder (TAESD) that decodes and encodes instead of the full VAE
    /// ([`StableDiffusion::with_tiny_vae`]).
    pub fn tiny_vae(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tiny_vae = Some(dir.into());
        self
    }
    /// The device (default: [`sonic_core::device::default_device`]).
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }
    /// Where clips longer than 10 s are cropped (default: seeded random, as the original).
    pub fn crop(mut self, crop: CropStart) -> Self {
        self.crop = Some(crop);
        self
    }

    /// A released checkpoint: Stable Diffusion v1.4, CLAP and the checkpoint's projector and
    /// adapters are taken from the Hugging Face cache at [`Self::build`], downloaded on first
    /// use (unless the hub options say offline). Paths set with the other methods win.
    pub fn preset(mut self, checkpoint: Checkpoint) -> Self {
        self.preset = Some(checkpoint);
        self
    }
    /// Where and how [`Self::preset`] downloads (default: [`HubOptions::from_env`]).
    pub fn hub_options(mut self, options: HubOptions) -> Self {
        self.hub = Some(options);
        self
    }

    /// Fills the paths not set from the preset's files (resolving them through the hub).
    fn resolve_preset(mut self) -> Result<Self, PipelineError> {
        let Some(which) = self.preset else {
            return Ok(self);
        };
        let options = match self.hub.take() {
            Some(o) => o,
            None => HubOptions::from_env()?,
        };
        let files = crate::hub::resolve(which.preset(), &options, &mut |_| {})?;
        let ckpt = files
            .checkpoint(which)
            .ok_or_else(|| PipelineError::InvalidParameter {
                name: "preset",
                value: which.name().into(),
                reason: "resolved without its checkpoint files".into(),
            })?;
        self.model.get_or_insert(files.sd_dir.clone());
        self.clap.get_or_insert(files.clap.clone());
        self.projector.get_or_insert(ckpt.projector.clone());
        self.adapters.get_or_insert(ckpt.adapters.clone());
        Ok(self)
    }

    /// Loads everything (resolving [`Self::preset`] first).
    pub fn build(self) -> Result<SonicPipeline, PipelineError> {
        let this = self.resolve_preset()?;
        let device = match this.device {
            Some(d) => d,
            None => sonic_core::device::default_device()?,
        };
        let SonicPipelineBuilder {
            model,
            clap,
            projector,
            projector_config,
            adapters,
            crop,
            loras,
            tiny_vae,
            ..
        } = this;
        let model = model.ok_or_else(|| missing("model"))?;
        let clap_path = clap.ok_or_else(|| missing("clap"))?;
        let projector_path = projector.ok_or_else(|| missing("projector"))?;
        let adapters = adapters.ok_or_else(|| missing("adapters"))?;
        let mut sd = StableDiffusion::from_dir(&model, &device)?.with_adapters(&adapters)?;
        for (path, scale) in &loras {
            sd = sd.with_lora(path, *scale)?;
        }
        if let Some(dir) = &tiny_vae {
            sd = sd.with_tiny_vae(dir)?;
        }
        let mut clap = ClapAudioEncoder::from_file(&clap_path, &device)?;
        if let Some(c) = crop {
            clap = clap.with_crop(c);
        }
        let projector = match &projector_config {
            Some(cfg) => Projector::from_files(&projector_path, cfg, &device)?,
            None => Projector::from_file(&projector_path, &device)?,
        };
        Ok(SonicPipeline {
            sd,
            clap,
            projector,
        })
    }
}

/// L2-normalises each row (`x / max(||x||, 1e-12)`), as `F.normalize`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Spherical interpolation at `t` in `[0, 1]` between two unit vectors `a` and `b` (linear when
/// they are parallel).
pub fn slerp_unit(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let omega = dot.clamp(-1.0, 1.0).acos();
    let (wa, wb) = if omega.abs() < 1e-6 {
        (1.0 - t, t)
    } else {
        (
            ((1.0 - t) * omega).sin() / omega.sin(),
            (t * omega).sin() / omega.sin(),
        )
    };
    a.iter()
        .zip(b)
        .map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32)
        .collect()
}

/// Spherical interpolation between two unit rows `a`, `b` (`[1, d]`) at `frames` evenly spaced
/// points from `a` to `b`, each normalised twice as the official wrapper's embeddings.
pub fn slerp_frames(a: &[f32], b: &[f32], frames: usize) -> Vec<Vec<f32>> {
    (0..frames)
        .map(|i| {
            let t = if frames == 1 {
                0.0
            } else {
                i as f64 / (frames - 1) as f64
            };
            slerp_unit(a, b, t)
        })
        .collect()
}

impl SonicPipeline {
    /// A builder.
    pub fn builder() -> SonicPipelineBuilder {
        SonicPipelineBuilder::default()
    }

    /// CLAP embeddings `[n, d]` (normalised twice) of the sources.
    pub fn embed(&self, sources: &[AudioSource]) -> Result<Tensor<2>, PipelineError> {
        let mut rows = Vec::with_capacity(sources.len());
        for s in sources {
            let e = match s {
                AudioSource::File(p) => self.clap.encode_files(std::slice::from_ref(p))?,
                AudioSource::Samples {
                    samples,
                    sample_rate,
                } => self
                    .clap
                    .encode_samples(&[samples.as_slice()], *sample_rate)?,
            };
            rows.push(e);
        }
        if rows.is_empty() {
            return Err(PipelineError::InvalidParameter {
                name: "audio",
                value: "[]".into(),
                reason: "needs at least one sound".into(),
            });
        }
        Ok(Tensor::cat(rows, 0))
    }

    /// Mixes sounds in CLAP-embedding space: the weighted sum of their (unit) embeddings,
    /// normalised back onto the unit sphere (twice, as the official wrapper), so the projector
    /// sees an input like those it was trained on. Returns `[1, d]`.
    pub fn mix(&self, sources: &[(AudioSource, f32)]) -> Result<Tensor<2>, PipelineError> {
        let emb = self.embed(&sources.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>())?;
        let n = sources.len();
        let w: Vec<f32> = sources.iter().map(|(_, w)| *w).collect();
        if w.iter().any(|x| !x.is_finite()) || w.iter().all(|x| *x == 0.0) {
            return Err(PipelineError::InvalidParameter {
                name: "mix weights",
                value: format!("{w:?}"),
                reason: "must be finite and not all zero".into(),
            });
        }
        let weights = Tensor::<2>::from_data(TensorData::new(w, [n, 1]), &self.sd.device);
        let mixed = (emb * weights).sum_dim(0);
        Ok(l2_normalize(l2_normalize(mixed)))
    }

    /// `frames` embeddings on the great circle from `a` to `b` (spherical interpolation of the
    /// unit CLAP embeddings), `[frames, d]`.
    pub fn interpolate(
        &self,
        a: &AudioSource,
        b: &AudioSource,
        frames: usize,
    ) -> Result<Tensor<2>, PipelineError> {
        if frames == 0 {
            return Err(PipelineError::InvalidParameter {
                name: "frames",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let emb = self.embed(&[a.clone(), b.clone()])?;
        let host = sonic_core::fixtures::to_host(&emb)?;
        let d = host.len() / 2;
        // The frames are built on the host, copied once into a tensor: about 3 copies.
        let bytes = (frames as f64 * d as f64 * 4.0 * 3.0) as u64;
        crate::memory::check_budget(
            &format!("interpolating {frames} frames"),
            &crate::memory::MemoryEstimate {
                weights: 0,
                activations: bytes,
            },
            crate::memory::available_memory(),
            "the memory available now",
        )?;
        let rows: Vec<f32> = slerp_frames(&host[..d], &host[d..], frames)
            .into_iter()
            .flatten()
            .collect();
        let t = Tensor::<2>::from_data(TensorData::new(rows, [frames, d]), &self.sd.device);
        Ok(l2_normalize(l2_normalize(t)))
    }

    /// Generates one image per embedding row (rows > 1: the same initial noise for every row,
    /// so interpolation frames differ only by the sound), or `req.batch_size` images for a
    /// single row.
    pub fn generate(
        &self,
        embeddings: Tensor<2>,
        req: &AudioToImage,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Generation, PipelineError> {
        let rows = embeddings.dims()[0];
        let tokens = self.projector.forward(embeddings)?;
        let null = self.projector.null_tokens(1, &self.sd.device)?;
        let mut req = req.clone();
        if rows > 1 {
            req.batch_size = rows;
            if req.latents.is_none() {
                let f = self.sd.vae_scale_factor();
                let lc = self.sd.unet.in_channels;
                let one = seeded_noise(
                    [1, lc, req.height / f.max(1), req.width / f.max(1)],
                    req.seed,
                    &self.sd.device,
                );
                req.latents = Some(one.repeat_dim(0, rows));
            }
        }
        let mut observer = ReportProgress::new(progress, req.steps);
        audio_to_image(&self.sd, &req, &tokens, &null, &mut observer)
    }
}
