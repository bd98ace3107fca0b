//! Audio-driven editing of real images (docs/EDITING.md):
//! DDIM inversion, Plug-and-Play sampling with in-batch feature injection, and SDEdit.
//!
//! - [`encode_image`]: VAE posterior mean x scaling factor.
//! - [`ddim_invert`]: deterministic DDIM inversion with the plain UNet (adapters off, as the
//!   official `preprocess.py`, which loads the stock diffusers UNet), the inversion prompt
//!   (default `""`) and no guidance, keeping the latent of every step. The latents are kept **in memory**: one latent of SD at 512x512
//!   is `4 x 64 x 64` f32 = 64 KiB, so 50 steps hold 3.2 MiB (1024x1024: 12.5 MiB), far below
//!   the UNet's own activations (hundreds of MiB), while writing them to disk would cost a
//!   file per step for no gain.
//! - [`pnp_sample`]: samples from the inverted latent with the batch `[source, uncond, cond]`
//!   (branch-major). The source branch re-runs the UNet on the stored latent of each step with
//!   the **empty** prompt and the null audio tokens (official `pnp.py`: `pnp_guidance_embeds`
//!   is the embedding of `""` whatever the inversion prompt, and `audio_context` is
//!   `[null, null, audio]`); a [`PnpHook`] replaces the other branches' rows with the source
//!   rows for the residual features (conv2 output before the skip add) of
//!   [`PnpOptions::resnets`] during the first `floor(T * pnp_f_t)` steps and for the
//!   self-attention Q and K of [`PnpOptions::attentions`] during the first
//!   `floor(T * pnp_attn_t)` steps (official: `int(n_timesteps * pnp_f_t)`). Names missing
//!   from a (smaller) UNet are never called, so the SD 1.x defaults work on every UNet: only
//!   the layers that exist are injected.
//! - [`sdedit`]: noises the image latent to step `T - floor(T * s)` of the sampling
//!   scheduler with `sqrt(a) x + sqrt(1 - a) eps` (seeded `eps`) and denoises from there;
//!   `s = 0` returns the input latent unchanged.
//!
//! The conditioning of the uncond / cond branches follows [`AudioToImage`]: the unconditional
//! branch is (negative prompt, null audio tokens), the conditional (prompt, audio tokens), with
//! one guidance scale or separate text / audio scales; every branch, the source included,
//! runs the adapters at the request's audio strength (the official UNet call takes one
//! `f_multiplier`). Cross-checked against a PyTorch run of the official method
//! (`tools/pnp_reference.py`, `tests-data/pnp-reference/`, docs/EDITING.md).

use crate::audio_to_image::AudioToImage;
use crate::error::PipelineError;
use crate::sampling::{
    Conditioning, Guidance, ProgressOnly, SamplingObserver, StepTensors, denoise,
};
use crate::stable_diffusion::StableDiffusion;
use crate::text_to_image::{Progress, ensure_finite, seeded_noise};
use burn::tensor::Tensor;
use sonic_schedulers::{DdimConfig, DdimScheduler, DdimStepRule, Scheduler};
use sonic_unet::hooks::{NoHook, UNetHook};

/// Encodes images `[B, 3, H, W]` in `[-1, 1]` to latents: the VAE posterior mean times the
/// scaling factor (0.18215 for SD 1.x).
pub fn encode_image(sd: &StableDiffusion, image: Tensor<4>) -> Result<Tensor<4>, PipelineError> {
    let post = sd.vae.encode(image)?;
    Ok(post.mean.mul_scalar(sd.vae.scaling_factor()))
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

/// Text rows `[n * b, S, C]` for prompts `[n]`, each repeated `b` times (branch-major).
fn text_rows(
    sd: &StableDiffusion,
    prompts: &[String],
    b: usize,
) -> Result<Tensor<3>, PipelineError> {
    let emb = sd.encode_prompts(prompts)?;
    let [n, s, c] = emb.dims();
    Ok(emb
        .reshape([n, 1, s, c])
        .repeat_dim(1, b)
        .reshape([n * b, s, c]))
}

/// The DDIM scheduler of the model (its config with the DDIM class), for inversion and PnP.
pub fn ddim_scheduler(
    sd: &StableDiffusion,
    steps: usize,
) -> Result<Box<dyn Scheduler>, PipelineError> {
    check_positive("steps", steps)?;
    let mut s = sd.scheduler("ddim")?;
    s.set_timesteps(steps)?;
    Ok(s)
}

fn check_positive(name: &'static str, v: usize) -> Result<(), PipelineError> {
    if v == 0 {
        return Err(PipelineError::InvalidParameter {
            name,
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

fn alpha_at(ac: &[f64], t: f64) -> Result<f64, PipelineError> {
    ac.get(t.round().max(0.0) as usize)
        .copied()
        .ok_or_else(|| PipelineError::InvalidParameter {
            name: "timestep",
            value: t.to_string(),
            reason: format!("outside the {} training timesteps", ac.len()),
        })
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
struct InversionObserver<'a> {
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

/// The text conditioning of the inversion and of the PnP source branch, as the official code:
/// the inversion runs on the inversion prompt (default `""`), while the source branch of PnP
/// sampling always uses the empty prompt (`pnp_guidance_embeds = get_text_embeds("", "")`),
/// whatever the inversion prompt was. (With the default inversion prompt both are `""`.)
#[derive(Debug, Clone)]
pub struct SourceConditioning {
    /// Text embedding `[1, S, C]` of the inversion prompt.
    pub inversion_text: Tensor<3>,
    /// Text embedding `[1, S, C]` of the source branch during PnP sampling: the empty prompt.
    pub source_text: Tensor<3>,
}

impl SourceConditioning {
    /// Encodes the inversion `prompt` and the empty prompt of the source branch.
    pub fn new(sd: &StableDiffusion, prompt: &str) -> Result<Self, PipelineError> {
        let emb = sd.encode_prompts(&[prompt.to_string(), String::new()])?;
        Ok(Self {
            inversion_text: emb.clone().narrow(0, 0, 1),
            source_text: emb.narrow(0, 1, 1),
        })
    }
}

/// `t` `[1 or b, T, C]` as `b` rows.
fn token_rows(t: &Tensor<3>, b: usize) -> Result<Tensor<3>, PipelineError> {
    match t.dims()[0] {
        1 => Ok(t.clone().repeat_dim(0, b)),
        n if n == b => Ok(t.clone()),
        n => Err(PipelineError::InvalidParameter {
            name: "audio tokens",
            value: format!("{n} rows"),
            reason: format!("need 1 or {b}"),
        }),
    }
}

/// The Plug-and-Play settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PnpOptions {
    /// Fraction of the steps with residual-feature injection (official demo 0.8); the first
    /// `floor(T * pnp_f_t)` steps are injected.
    pub pnp_f_t: f64,
    /// Fraction of the steps with self-attention Q/K injection (official demo 0.8); the first
    /// `floor(T * pnp_attn_t)` steps are injected.
    pub pnp_attn_t: f64,
    /// Resnets whose residual branch is injected. Default: SonicDiffusion's `pnp_utils.py`,
    /// `up_blocks.1.resnets.{1,2}` (pnp-diffusers injects `up_blocks.1.resnets.1` only).
    pub resnets: Vec<String>,
    /// Self-attentions whose queries and keys are injected. Default: pnp-diffusers' and
    /// SonicDiffusion's list, `attn1` of `up_blocks.1.attentions.{1,2}`,
    /// `up_blocks.2.attentions.{0,1,2}`, `up_blocks.3.attentions.{0,1,2}` (every decoder
    /// self-attention of the cross-attention up blocks except the first at the lowest
    /// resolution). On a UNet with fewer levels the missing names are skipped, which keeps the
    /// same rule: on the 3-level sd15-tiny UNet, `up_blocks.1.attentions.{1,2}` and
    /// `up_blocks.2.attentions.{0,1,2}`.
    pub attentions: Vec<String>,
}

impl Default for PnpOptions {
    fn default() -> Self {
        let attn =
            |b: usize, a: usize| format!("up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1");
        Self {
            pnp_f_t: 0.8,
            pnp_attn_t: 0.8,
            resnets: vec![
                "up_blocks.1.resnets.1".into(),
                "up_blocks.1.resnets.2".into(),
            ],
            attentions: vec![
                attn(1, 1),
                attn(1, 2),
                attn(2, 0),
                attn(2, 1),
                attn(2, 2),
                attn(3, 0),
                attn(3, 1),
                attn(3, 2),
            ],
        }
    }
}

impl PnpOptions {
    /// `(residual steps, attention steps)` = `(floor(T pnp_f_t), floor(T pnp_attn_t))`, the
    /// official `int(n_timesteps * pnp_f_t)`: the same f64 product truncated, so e.g.
    /// `T = 10, pnp_f_t = 0.75` injects 7 steps (rounding would give 8).
    pub fn step_counts(&self, steps: usize) -> Result<(usize, usize), PipelineError> {
        let mut out = [0usize; 2];
        for (i, (name, v)) in [("pnp_f_t", self.pnp_f_t), ("pnp_attn_t", self.pnp_attn_t)]
            .into_iter()
            .enumerate()
        {
            if !(0.0..=1.0).contains(&v) {
                return Err(PipelineError::InvalidParameter {
                    name,
                    value: v.to_string(),
                    reason: "must be in [0, 1]".into(),
                });
            }
            // `v` is in [0, 1]: the product is non-negative, so floor = Python's int().
            out[i] = (steps as f64 * v).floor() as usize;
        }
        Ok((out[0], out[1]))
    }
}

/// The in-batch injection hook: rows `[0, b)` are the source branch; when active, every other
/// branch's rows of the chosen features are replaced with the source rows.
#[derive(Debug, Clone)]
pub struct PnpHook {
    /// Rows per branch.
    pub batch: usize,
    /// Resnets to inject.
    pub resnets: Vec<String>,
    /// Self-attentions to inject.
    pub attentions: Vec<String>,
    /// Whether residual injection is on for this step.
    pub inject_resnets: bool,
    /// Whether Q/K injection is on for this step.
    pub inject_attention: bool,
}

impl PnpHook {
    fn spread<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let rows = x.dims()[0];
        if self.batch == 0 || !rows.is_multiple_of(self.batch) || rows == self.batch {
            return x;
        }
        let src = x.narrow(0, 0, self.batch);
        src.repeat_dim(0, rows / self.batch)
    }
}

impl UNetHook for PnpHook {
    fn active(&self) -> bool {
        self.inject_resnets || self.inject_attention
    }

    fn wants_resnet(&self, name: &str) -> bool {
        self.inject_resnets && self.resnets.iter().any(|n| n == name)
    }

    fn resnet_residual(&mut self, _name: &str, h: Tensor<4>) -> Tensor<4> {
        self.spread(h)
    }

    fn wants_self_attention(&self, name: &str) -> bool {
        self.inject_attention && self.attentions.iter().any(|n| n == name)
    }

    fn self_attention_qk(
        &mut self,
        _name: &str,
        q: Tensor<4>,
        k: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        (self.spread(q), self.spread(k))
    }
}

/// The guidance rule, the branches' prompts and (with adapters) their audio tokens.
pub type BranchConditioning = (Guidance, Vec<String>, Option<Vec<Tensor<3>>>);

/// The uncond / cond branches' conditioning for an edit, built as in [`AudioToImage`]: the
/// guidance rule from `req.guidance_scale` / `req.audio_guidance_scale` and, per branch, text
/// rows and audio tokens (`[1 or b, T, C]`; `None` for a UNet without adapters: text only).
pub fn branch_conditioning(
    sd: &StableDiffusion,
    req: &AudioToImage,
    b: usize,
    tokens: Option<(&Tensor<3>, &Tensor<3>)>,
) -> Result<BranchConditioning, PipelineError> {
    let scales = [Some(req.guidance_scale), req.audio_guidance_scale];
    if let Some(bad) = scales.iter().flatten().find(|s| !s.is_finite()) {
        return Err(PipelineError::InvalidParameter {
            name: "guidance_scale",
            value: bad.to_string(),
            reason: "must be finite".into(),
        });
    }
    let guidance = match req.audio_guidance_scale {
        Some(a) => Guidance::TextAudio {
            text: req.guidance_scale,
            audio: a,
        },
        None if req.guidance_scale > 1.0 => Guidance::Single(req.guidance_scale),
        None => Guidance::None,
    };
    let prompts: Vec<String> = match guidance {
        Guidance::None => vec![req.prompt.clone()],
        Guidance::Single(_) => vec![req.negative_prompt.clone(), req.prompt.clone()],
        Guidance::TextAudio { .. } => vec![
            req.negative_prompt.clone(),
            req.prompt.clone(),
            req.prompt.clone(),
        ],
    };
    let tokens = match tokens {
        Some((audio, null)) if sd.unet.adapter_count() > 0 => {
            let (a, n) = (token_rows(audio, b)?, token_rows(null, b)?);
            Some(match guidance {
                Guidance::None => vec![a],
                Guidance::Single(_) => vec![n, a],
                Guidance::TextAudio { .. } => vec![n.clone(), n, a],
            })
        }
        _ => None,
    };
    Ok((guidance, prompts, tokens))
}

/// Plug-and-Play in the shared loop: step `i` puts the inversion's level `i` in front as the
/// source rows and switches the injection on for the first `steps` steps.
struct PnpObserver<'a> {
    hook: PnpHook,
    levels: &'a [Tensor<4>],
    /// `(residual steps, attention steps)`.
    steps: (usize, usize),
    progress: &'a mut dyn FnMut(usize, usize, f64),
}

impl SamplingObserver for PnpObserver<'_> {
    fn before_step(&mut self, index: usize, _t: f64) {
        self.hook.inject_resnets = index < self.steps.0;
        self.hook.inject_attention = index < self.steps.1;
    }

    fn leading_rows(&mut self, index: usize) -> Option<Tensor<4>> {
        self.levels.get(index).cloned()
    }

    fn unet_hook(&mut self) -> &mut dyn UNetHook {
        &mut self.hook
    }

    fn after_step(&mut self, step: &StepTensors) {
        (self.progress)(step.index + 1, self.levels.len(), step.timestep);
    }
}

/// Plug-and-Play sampling from an inversion. `tokens` = `(audio tokens, null tokens)` for a UNet
/// with adapters (strength `req.audio_strength`, every branch); the source branch gets
/// `source.source_text` (the empty prompt) and the null tokens.
/// `req.steps` must equal the inversion's step count; `req.scheduler` is ignored (DDIM, as the
/// inversion). Returns the final latents `[b, C, h, w]`.
pub fn pnp_sample(
    sd: &StableDiffusion,
    inversion: &Inversion,
    req: &AudioToImage,
    pnp: &PnpOptions,
    source: &SourceConditioning,
    tokens: Option<(&Tensor<3>, &Tensor<3>)>,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Tensor<4>, PipelineError> {
    let steps = inversion.latents_per_step.len();
    if req.steps != steps {
        return Err(PipelineError::InvalidParameter {
            name: "steps",
            value: req.steps.to_string(),
            reason: format!("the inversion has {steps} steps"),
        });
    }
    let (n_res, n_attn) = pnp.step_counts(steps)?;
    let mut scheduler = ddim_scheduler(sd, steps)?;
    let b = inversion.start.dims()[0];
    let (guidance, prompts, branch_tokens) = branch_conditioning(sd, req, b, tokens)?;
    let text = Tensor::cat(
        vec![
            source.source_text.clone().repeat_dim(0, b),
            text_rows(sd, &prompts, b)?,
        ],
        0,
    );
    let adapter = match (branch_tokens, tokens) {
        (Some(bt), Some((_, null))) => {
            let mut all = vec![token_rows(null, b)?];
            all.extend(bt);
            Some(
                sd.unet
                    .prepare_adapters(Tensor::cat(all, 0), req.audio_strength.clone()),
            )
        }
        _ => None,
    };
    let mut observer = PnpObserver {
        hook: PnpHook {
            batch: b,
            resnets: pnp.resnets.clone(),
            attentions: pnp.attentions.clone(),
            inject_resnets: false,
            inject_attention: false,
        },
        levels: &inversion.latents_per_step,
        steps: (n_res, n_attn),
        progress,
    };
    let cond = Conditioning { text, adapter };
    let x = denoise(
        &sd.unet,
        scheduler.as_mut(),
        inversion.noisiest(),
        &cond,
        guidance,
        0,
        &mut observer,
    )?;
    ensure_finite(&x, "the edited latents")?;
    Ok(x)
}

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
    if (scheduler.init_noise_sigma() - 1.0).abs() > 1e-9 {
        return Err(PipelineError::InvalidParameter {
            name: "scheduler",
            value: req.scheduler.clone(),
            reason: "SDEdit needs a variance-preserving scheduler (ddim, pndm, dpm++2m)".into(),
        });
    }
    let timesteps = scheduler.timesteps().to_vec();
    let start = timesteps.len().saturating_sub(run);
    let a = alpha_at(scheduler.alphas_cumprod(), timesteps[start])?;
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
        &mut observer,
    )?;
    ensure_finite(&out, "the edited latents")?;
    Ok(out)
}

/// Which editing method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EditMode {
    /// DDIM inversion + Plug-and-Play injection (the paper's method).
    #[default]
    Pnp,
    /// Noise to a strength and denoise.
    SdEdit,
}

/// An edit request: generation options as [`AudioToImage`] (its size and batch fields are
/// taken from the image), plus the editing settings.
#[derive(Debug, Clone)]
pub struct EditRequest {
    /// Method.
    pub mode: EditMode,
    /// Prompt, guidance, audio strength, steps, seed (`scheduler` is used by SDEdit only).
    pub generation: AudioToImage,
    /// The DDIM inversion prompt (default `""`); the PnP source branch always uses `""`.
    pub inversion_prompt: String,
    /// Plug-and-Play settings.
    pub pnp: PnpOptions,
    /// SDEdit strength in `[0, 1]`.
    pub strength: f64,
}

impl Default for EditRequest {
    fn default() -> Self {
        Self {
            mode: EditMode::Pnp,
            generation: AudioToImage {
                seed: 42,
                scheduler: "ddim".into(),
                ..AudioToImage::default()
            },
            inversion_prompt: String::new(),
            pnp: PnpOptions::default(),
            strength: 0.6,
        }
    }
}

/// The result of an edit.
#[derive(Debug, Clone)]
pub struct EditOutput {
    /// The source latent (VAE mean x scaling factor).
    pub source: Tensor<4>,
    /// The edited latents.
    pub latents: Tensor<4>,
    /// The decoded images in `[0, 1]`.
    pub images: Tensor<4>,
}

/// Edits `image` `[b, 3, H, W]` in `[-1, 1]` with audio tokens `(audio, null)` (or `None` for a
/// UNet without adapters). Progress counts the inversion and sampling steps together (PnP) or
/// the denoising steps (SDEdit).
pub fn edit(
    sd: &StableDiffusion,
    image: Tensor<4>,
    req: &EditRequest,
    tokens: Option<(&Tensor<3>, &Tensor<3>)>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<EditOutput, PipelineError> {
    let source = encode_image(sd, image)?;
    let latents = match req.mode {
        EditMode::SdEdit => sdedit(
            sd,
            source.clone(),
            req.strength,
            &req.generation,
            tokens,
            &mut |step, total, timestep| {
                progress(&Progress {
                    step,
                    total,
                    timestep,
                })
            },
        )?,
        EditMode::Pnp => {
            let steps = req.generation.steps;
            let src = SourceConditioning::new(sd, &req.inversion_prompt)?;
            let inv = ddim_invert(sd, source.clone(), steps, &src, &mut |s, _, t| {
                progress(&Progress {
                    step: s,
                    total: 2 * steps,
                    timestep: t,
                })
            })?;
            pnp_sample(
                sd,
                &inv,
                &req.generation,
                &req.pnp,
                &src,
                tokens,
                &mut |s, _, t| {
                    progress(&Progress {
                        step: steps + s,
                        total: 2 * steps,
                        timestep: t,
                    })
                },
            )?
        }
    };
    let images = sd.decode_latents(latents.clone())?;
    Ok(EditOutput {
        source,
        latents,
        images,
    })
}

impl crate::sonic::SonicPipeline {
    /// Edits `image` `[1, 3, H, W]` in `[-1, 1]` (see [`crate::image_input::load_image`]) with
    /// the sound of `embedding` `[1, d]` (a CLAP embedding from [`Self::embed`] / [`Self::mix`]).
    pub fn edit(
        &self,
        image: Tensor<4>,
        embedding: Tensor<2>,
        req: &EditRequest,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<EditOutput, PipelineError> {
        let tokens = self.projector.forward(embedding)?;
        let null = self.projector.null_tokens(1, &self.sd.device)?;
        edit(&self.sd, image, req, Some((&tokens, &null)), progress)
    }
}

/// Reads `image` (see [`crate::image_input`]), edits it with the CLAP `embedding` `[1, d]` and
/// writes the result to `out` as PNG (atomically: a failure at any point leaves no output
/// file). Returns the written paths.
#[allow(clippy::too_many_arguments)]
pub fn edit_file(
    pipe: &crate::sonic::SonicPipeline,
    image: &std::path::Path,
    opts: &crate::image_input::ImageOptions,
    embedding: Tensor<2>,
    req: &EditRequest,
    out: &std::path::Path,
    metadata: &[(String, String)],
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<std::path::PathBuf>, PipelineError> {
    let mut opts = opts.clone();
    opts.factor = pipe.sd.vae_scale_factor();
    let pixels = crate::image_input::load_image(image, &opts, &pipe.sd.device)?;
    let result = pipe.edit(pixels, embedding, req, progress)?;
    ensure_finite(&result.images, "the edited image")?;
    crate::output::save_pngs(&result.images, out, metadata)
}
