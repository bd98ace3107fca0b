//! Text-to-image generation with classifier-free guidance, as diffusers'
//! `StableDiffusionPipeline`.

use crate::error::PipelineError;
use crate::sampling::{Conditioning, Guidance, ReportProgress, denoise};
use crate::stable_diffusion::StableDiffusion;
use burn::tensor::Tensor;

/// Progress of a long-running job, reported through a callback after each step.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// The timestep just processed.
    pub timestep: f64,
    /// The estimate of the final latents after this step (scaled as the UNet's latents;
    /// decode with [`crate::StableDiffusion::decode_latents`], fast with a tiny VAE), for
    /// previews; `None` where the job has none.
    pub preview: Option<Tensor<4>>,
}

/// Parameters of a text-to-image generation. `TextToImage::new(prompt)` gives diffusers'
/// defaults (50 steps, guidance 7.5, the model's scheduler, 512x512 for SD 1.x sizes).
#[derive(Debug, Clone)]
pub struct TextToImage {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt (`""` by default).
    pub negative_prompt: String,
    /// Classifier-free guidance scale; guidance is skipped when `<= 1`.
    pub guidance_scale: f64,
    /// Number of denoising steps.
    pub steps: usize,
    /// Scheduler name (see [`StableDiffusion::scheduler`]).
    pub scheduler: String,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Image width in pixels (a multiple of the VAE factor, 8).
    pub width: usize,
    /// Image height in pixels (a multiple of the VAE factor, 8).
    pub height: usize,
    /// Images per prompt.
    pub batch_size: usize,
    /// Initial latents `[batch, C, h, w]` (unscaled); drawn from `seed` when `None`.
    pub latents: Option<Tensor<4>>,
}

impl TextToImage {
    /// A request with diffusers' defaults.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: String::new(),
            guidance_scale: 7.5,
            steps: 50,
            scheduler: "model".into(),
            seed: 0,
            width: 512,
            height: 512,
            batch_size: 1,
            latents: None,
        }
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Final latents `[batch, C, h, w]`.
    pub latents: Tensor<4>,
    /// Decoded images `[batch, 3, H, W]` in `[0, 1]`.
    pub images: Tensor<4>,
}

/// Draws `shape` standard normal values from a ChaCha8 generator seeded with `seed` (stream
/// 0 of [`sonic_core::noise::seeded_normal`]).
pub fn seeded_noise(shape: [usize; 4], seed: u64, device: &burn::tensor::Device) -> Tensor<4> {
    sonic_core::noise::seeded_normal(shape, seed, 0, device)
}

/// Checks a pixel size against the VAE factor.
pub fn check_size(name: &'static str, value: usize, factor: usize) -> Result<usize, PipelineError> {
    if value == 0 || !value.is_multiple_of(factor) {
        return Err(PipelineError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: format!(
                "must be a positive multiple of {factor} (the VAE's downsampling factor)"
            ),
        });
    }
    Ok(value / factor)
}

/// Checks that `steps` and `batch_size` are positive and the guidance scales finite.
pub fn check_run(steps: usize, batch_size: usize, scales: &[f64]) -> Result<(), PipelineError> {
    for (name, v) in [("steps", steps), ("batch_size", batch_size)] {
        if v == 0 {
            return Err(PipelineError::InvalidParameter {
                name,
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
    }
    if let Some(bad) = scales.iter().find(|s| !s.is_finite()) {
        return Err(PipelineError::InvalidParameter {
            name: "guidance_scale",
            value: bad.to_string(),
            reason: "must be finite".into(),
        });
    }
    Ok(())
}

/// The starting latents `[b, channels, h, w]`: the given ones (shape-checked) or seeded noise,
/// scaled by the scheduler's `init_noise_sigma`.
pub fn initial_latents(
    given: Option<&Tensor<4>>,
    shape: [usize; 4],
    seed: u64,
    init_noise_sigma: f64,
    device: &burn::tensor::Device,
) -> Result<Tensor<4>, PipelineError> {
    let init = match given {
        Some(l) if l.dims() == shape => l.clone(),
        Some(l) => {
            return Err(PipelineError::InvalidParameter {
                name: "latents",
                value: format!("{:?}", l.dims()),
                reason: format!("expected shape {shape:?}"),
            });
        }
        None => seeded_noise(shape, seed, device),
    };
    Ok(init.mul_scalar(init_noise_sigma))
}

/// Fails with [`PipelineError::NonFinite`] when `t` holds NaN or infinity.
pub fn ensure_finite<const D: usize>(t: &Tensor<D>, what: &str) -> Result<(), PipelineError> {
    let bad = t.clone().is_nan().any().into_scalar() || t.clone().is_inf().any().into_scalar();
    if bad {
        return Err(PipelineError::NonFinite(what.to_string()));
    }
    Ok(())
}

/// Runs text-to-image generation; `progress` is called after every step.
pub fn text_to_image(
    sd: &StableDiffusion,
    req: &TextToImage,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Generation, PipelineError> {
    check_run(req.steps, req.batch_size, &[req.guidance_scale])?;
    let f = sd.vae_scale_factor();
    let h = check_size("height", req.height, f)?;
    let w = check_size("width", req.width, f)?;
    let b = req.batch_size;
    let cfg = req.guidance_scale > 1.0;
    let device = &sd.device;
    let run = crate::memory::ImageRun::new(req.width, req.height, b, 1 + cfg as usize, device);
    crate::memory::check_loaded_run(sd, &run, "text-to-image")?;

    // Text embeddings: [uncond x b, cond x b] with guidance, [cond x b] without.
    let mut prompts = Vec::with_capacity(2);
    if cfg {
        prompts.push(req.negative_prompt.clone());
    }
    prompts.push(req.prompt.clone());
    let emb = sd.encode_prompts(&prompts)?;
    let [n, s, c] = emb.dims();
    let text = emb
        .reshape([n, 1, s, c])
        .repeat_dim(1, b)
        .reshape([n * b, s, c]);

    let mut scheduler = sd.scheduler(&req.scheduler)?;
    scheduler.set_timesteps(req.steps)?;
    // Stochastic schedulers (LCM) draw their step noise from the request's seed.
    scheduler.set_noise_seed(req.seed);
    let lc = sd.unet.in_channels;
    let latents = initial_latents(
        req.latents.as_ref(),
        [b, lc, h, w],
        req.seed,
        scheduler.init_noise_sigma(),
        device,
    )?;
    let cond = Conditioning {
        text,
        adapter: None,
    };
    let guidance = if cfg {
        Guidance::Single(req.guidance_scale)
    } else {
        Guidance::None
    };
    let total = scheduler.timesteps().len();
    let mut observer = ReportProgress::new(progress, total);
    let latents = denoise(
        &sd.unet,
        scheduler.as_mut(),
        latents,
        &cond,
        guidance,
        0,
        &mut observer,
    )?;
    ensure_finite(&latents, "the final latents")?;
    let images = sd.decode_latents(latents.clone())?;
    Ok(Generation { latents, images })
}
