//! Plug-and-Play sampling: the source branch re-run on the inverted latents, its residual and
//! self-attention features injected into the other branches ([`PnpHook`]).

use super::*;

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
pub(super) fn token_rows(t: &Tensor<3>, b: usize) -> Result<Tensor<3>, PipelineError> {
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
    let guidance = req.guidance();
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
pub(super) struct PnpObserver<'a> {
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
        &mut crate::sampling::Cancellable::new(&mut observer, req.cancel.clone()),
    )?;
    ensure_finite(&x, "the edited latents")?;
    Ok(x)
}
