//! SDEdit: the image latent noised to an intermediate step and denoised from there with the
//! audio / text conditioning.

use super::*;

/// SDEdit: noises `latent` with `sqrt(a) x + sqrt(1 - a) eps` (`eps` drawn from `req.seed`) to
/// step `T - floor(T * strength)` of `req.scheduler`'s timesteps and denoises from there with
/// the audio / text conditioning: `floor(T * strength)` steps run, diffusers' img2img rule
/// (`int(num_inference_steps * strength)`). When that is 0 (e.g. `strength = 0`) `latent`
/// itself is returned.
pub fn sdedit(
    sd: &StableDiffusion,
    latent: Tensor<4>,
    strength: f64,
    req: &AudioToImage,
    tokens: Option<(&Tensor<3>, &Tensor<3>)>,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Tensor<4>, PipelineError> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(PipelineError::InvalidParameter {
            name: "strength",
            value: strength.to_string(),
            reason: "must be in [0, 1]".into(),
        });
    }
    check_positive("steps", req.steps)?;
    let run = (req.steps as f64 * strength).floor() as usize;
    if run == 0 {
        return Ok(latent);
    }
    let mut scheduler = sd.scheduler(&req.scheduler)?;
    scheduler.set_timesteps(req.steps)?;
    // Stochastic schedulers (LCM) draw their step noise from the request's seed.
    scheduler.set_noise_seed(req.seed);
    if (scheduler.init_noise_sigma() - 1.0).abs() > 1e-9 {
        return Err(PipelineError::InvalidParameter {
            name: "scheduler",
            value: req.scheduler.clone(),
            reason: "SDEdit needs a variance-preserving scheduler (ddim, pndm, dpm++2m)".into(),
        });
    }
    let timesteps = scheduler.timesteps().to_vec();
    let start = timesteps.len().saturating_sub(run);
    let t = timesteps[start];
    let a = *scheduler
        .alphas_cumprod()
        .get(t.round().max(0.0) as usize)
        .ok_or_else(|| PipelineError::InvalidParameter {
            name: "timestep",
            value: t.to_string(),
            reason: "outside the training timesteps".into(),
        })?;
    let dims = latent.dims();
    let noise = seeded_noise(dims, req.seed, &latent.device());
    let noisy = latent.mul_scalar(a.sqrt()) + noise.mul_scalar((1.0 - a).sqrt());
    let b = dims[0];
    let (guidance, prompts, branch_tokens) = branch_conditioning(sd, req, b, tokens)?;
    let text = text_rows(sd, &prompts, b)?;
    let adapter = branch_tokens.map(|bt| {
        sd.unet
            .prepare_adapters(Tensor::cat(bt, 0), req.audio_strength.clone())
    });
    let cond = Conditioning { text, adapter };
    let total = timesteps.len();
    let mut cb = |i: usize, _total: usize, t: f64| progress(i - start, total - start, t);
    let mut observer = ProgressOnly::new(&mut cb, total);
    let out = denoise(
        &sd.unet,
        scheduler.as_mut(),
        noisy,
        &cond,
        guidance,
        start,
        &mut crate::sampling::Cancellable::new(&mut observer, req.cancel.clone()),
    )?;
    ensure_finite(&out, "the edited latents")?;
    Ok(out)
}
