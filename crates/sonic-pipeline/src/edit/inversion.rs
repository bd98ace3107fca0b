//! DDIM inversion of an image latent with the plain UNet (pnp-diffusers' `preprocess.py`),
//! keeping every step's latent, and the VAE encoding of the image.

use super::*;

/// Encodes images `[B, 3, H, W]` in `[-1, 1]` to latents: the VAE posterior mean times the
/// scaling factor (0.18215 for SD 1.x), or the tiny autoencoder's latents when one is set
/// ([`StableDiffusion::encode_images`]).
pub fn encode_image(sd: &StableDiffusion, image: Tensor<4>) -> Result<Tensor<4>, PipelineError> {
    sd.encode_images(image)
}

/// The result of a DDIM inversion.
#[derive(Debug, Clone)]
pub struct Inversion {
    /// The sampling timesteps (descending, the DDIM scheduler's order).
    pub timesteps: Vec<f64>,
    /// `latents_per_step[i]` is the inverted latent at `timesteps[i]` (the input of sampling
    /// step `i`); `latents_per_step[0]` is the fully inverted latent x_T.
    pub latents_per_step: Vec<Tensor<4>>,
    /// The clean latent that was inverted.
    pub start: Tensor<4>,
}

impl Inversion {
    /// The fully inverted latent (the start of sampling).
    pub fn noisiest(&self) -> Tensor<4> {
        self.latents_per_step[0].clone()
    }
}

/// Inverts `latent` `[b, C, h, w]` (already scaled) with deterministic DDIM over `steps` steps
/// conditioned on the inversion prompt of `source` (no guidance), with the plain UNet: adapters
/// off, as the official `preprocess.py`. Keeps every step's latent.
///
/// Step `j` (ascending timesteps `t_j`) evaluates the UNet at `t_j` on the latent of level
/// `t_{j-1}` (the final alpha for `j = 0`) and moves it to level `t_j`:
/// `x_{t_j} = sqrt(a_j) x0 + sqrt(1 - a_j) eps`, `x0 = (x - sqrt(1 - a_{j-1}) eps) / sqrt(a_{j-1})`
/// (pnp-diffusers' `ddim_inversion`): the shared [`denoise`] loop with the model's DDIM run
/// backwards over its own sampling timesteps ([`DdimStepRule::Schedule`], no x0 clipping).
pub fn ddim_invert(
    sd: &StableDiffusion,
    latent: Tensor<4>,
    steps: usize,
    source: &SourceConditioning,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Inversion, PipelineError> {
    check_positive("steps", steps)?;
    let mut config = DdimConfig::from_json(&sd.scheduler_config)?;
    // pnp-diffusers' inversion never clips the predicted x0.
    config.clip_sample = false;
    let mut scheduler = DdimScheduler::inverse(config).with_step_rule(DdimStepRule::Schedule);
    scheduler.set_timesteps(steps)?;
    let b = latent.dims()[0];
    let cond = Conditioning {
        text: source.inversion_text.clone().repeat_dim(0, b),
        adapter: None,
    };
    let mut observer = InversionObserver {
        levels: Vec::with_capacity(steps),
        progress,
        hook: NoHook,
    };
    let x = denoise(
        &sd.unet,
        &mut scheduler,
        latent.clone(),
        &cond,
        Guidance::None,
        0,
        &mut observer,
    )?;
    ensure_finite(&x, "the inverted latent")?;
    let mut levels = observer.levels;
    levels.reverse();
    let mut timesteps = scheduler.timesteps().to_vec();
    timesteps.reverse();
    Ok(Inversion {
        timesteps,
        latents_per_step: levels,
        start: latent,
    })
}

/// Keeps every level of the inversion and reports progress.
pub(super) struct InversionObserver<'a> {
    levels: Vec<Tensor<4>>,
    progress: &'a mut dyn FnMut(usize, usize, f64),
    hook: NoHook,
}

impl SamplingObserver for InversionObserver<'_> {
    fn unet_hook(&mut self) -> &mut dyn UNetHook {
        &mut self.hook
    }

    fn after_step(&mut self, step: &StepTensors) {
        self.levels.push(step.latents.clone());
        (self.progress)(step.index + 1, self.levels.capacity(), step.timestep);
    }
}
