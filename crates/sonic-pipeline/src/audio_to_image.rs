//! Audio-to-image generation (SonicDiffusion): audio tokens from the projector condition the
//! UNet's gated adapters, optionally together with a text prompt.

use crate::error::PipelineError;
use crate::sampling::{Conditioning, Guidance, SamplingObserver, denoise};
use crate::stable_diffusion::StableDiffusion;
use crate::text_to_image::{Generation, check_run, check_size, ensure_finite, initial_latents};
use burn::tensor::Tensor;
use sonic_unet::AdapterStrength;

/// Parameters of an audio-to-image generation; [`AudioToImage::default`] gives the official
/// demo's settings (guidance 7.5 for text and audio together, 50 steps, strength 1).
#[derive(Debug, Clone)]
pub struct AudioToImage {
    /// Optional text prompt (`""`: audio only).
    pub prompt: String,
    /// The text of the unconditional branch (`""` in the official pipeline).
    pub negative_prompt: String,
    /// The guidance scale (official: one scale for text and audio together).
    pub guidance_scale: f64,
    /// When set, separate guidance: `guidance_scale` for the text and this for the audio
    /// (`u + s_t (t - u) + s_a (ta - t)`, three branches).
    pub audio_guidance_scale: Option<f64>,
    /// Audio strength `f` of the adapters (global or per adapter).
    pub audio_strength: AdapterStrength,
    /// Denoising steps.
    pub steps: usize,
    /// Scheduler name.
    pub scheduler: String,
    /// Seed of the initial noise.
    pub seed: u64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Images to generate.
    pub batch_size: usize,
    /// Initial latents `[batch, C, h, w]` (unscaled), drawn from `seed` when `None`.
    pub latents: Option<Tensor<4>>,
    /// Stops the run at the next step when cancelled (a server's `DELETE`); `None`: runs to
    /// the end.
    pub cancel: Option<crate::sampling::CancelToken>,
}

impl Default for AudioToImage {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            guidance_scale: 7.5,
            audio_guidance_scale: None,
            audio_strength: AdapterStrength::Global(1.0),
            steps: 50,
            scheduler: "model".into(),
            seed: 0,
            width: 512,
            height: 512,
            batch_size: 1,
            latents: None,
            cancel: None,
        }
    }
}

impl AudioToImage {
    /// The guidance of this request: separate text and audio scales when
    /// `audio_guidance_scale` is set, else one scale when it is above 1, else none.
    pub fn guidance(&self) -> Guidance {
        match self.audio_guidance_scale {
            Some(a) => Guidance::TextAudio {
                text: self.guidance_scale,
                audio: a,
            },
            None if self.guidance_scale > 1.0 => Guidance::Single(self.guidance_scale),
            None => Guidance::None,
        }
    }
}

/// Repeats a `[1 or b, ...]` tensor's rows to `b` rows.
fn rows3(t: &Tensor<3>, b: usize) -> Result<Tensor<3>, PipelineError> {
    let [n, s, c] = t.dims();
    match n {
        1 => Ok(t.clone().repeat_dim(0, b)),
        n if n == b => Ok(t.clone()),
        _ => Err(PipelineError::InvalidParameter {
            name: "audio tokens",
            value: format!("{:?}", t.dims()),
            reason: format!("need 1 or {b} rows of [{s}, {c}]"),
        }),
    }
}

/// Generates images from audio tokens (`[1 or batch, T, C]`, the projector's output) and the
/// unconditional tokens (`projector(zeros)`, `[1, T, C]`). The UNet must carry adapters.
pub fn audio_to_image(
    sd: &StableDiffusion,
    req: &AudioToImage,
    audio_tokens: &Tensor<3>,
    null_tokens: &Tensor<3>,
    observer: &mut dyn SamplingObserver,
) -> Result<Generation, PipelineError> {
    if sd.unet.adapter_count() == 0 {
        return Err(PipelineError::InvalidParameter {
            name: "adapters",
            value: "none".into(),
            reason: "audio-to-image needs a UNet with SonicDiffusion adapters loaded".into(),
        });
    }
    let scales: Vec<f64> = std::iter::once(req.guidance_scale)
        .chain(req.audio_guidance_scale)
        .collect();
    check_run(req.steps, req.batch_size, &scales)?;
    let f = sd.vae_scale_factor();
    let h = check_size("height", req.height, f)?;
    let w = check_size("width", req.width, f)?;
    let b = req.batch_size;
    let guidance = req.guidance();
    let branches = match guidance {
        Guidance::None => 1,
        Guidance::Single(_) => 2,
        Guidance::TextAudio { .. } => 3,
    };
    let run = crate::memory::ImageRun::new(req.width, req.height, b, branches, &sd.device);
    crate::memory::check_loaded_run(sd, &run, "audio-to-image")?;
    let audio = rows3(audio_tokens, b)?;
    let null = rows3(null_tokens, b)?;
    // Branches: text rows and token rows, branch-major.
    let (prompts, tokens): (Vec<&str>, Vec<Tensor<3>>) = match guidance {
        Guidance::None => (vec![&req.prompt], vec![audio]),
        Guidance::Single(_) => (vec![&req.negative_prompt, &req.prompt], vec![null, audio]),
        Guidance::TextAudio { .. } => (
            vec![&req.negative_prompt, &req.prompt, &req.prompt],
            vec![null.clone(), null, audio],
        ),
    };
    let prompts: Vec<String> = prompts.into_iter().map(str::to_string).collect();
    let emb = sd.encode_prompts(&prompts)?;
    let [n, s, c] = emb.dims();
    let text = emb
        .reshape([n, 1, s, c])
        .repeat_dim(1, b)
        .reshape([n * b, s, c]);
    let tokens = Tensor::cat(tokens, 0);
    let adapter = sd.unet.prepare_adapters(tokens, req.audio_strength.clone());
    let cond = Conditioning {
        text,
        adapter: Some(adapter),
    };

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
        &sd.device,
    )?;
    let latents = denoise(
        &sd.unet,
        scheduler.as_mut(),
        latents,
        &cond,
        guidance,
        0,
        &mut crate::sampling::Cancellable::new(observer, req.cancel.clone()),
    )?;
    ensure_finite(&latents, "the final latents")?;
    let images = sd.decode_latents(latents.clone())?;
    Ok(Generation { latents, images })
}
