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

mod inversion;
mod pnp;
mod sdedit;

pub use inversion::{Inversion, ddim_invert, encode_image};
pub use pnp::{PnpHook, PnpOptions, SourceConditioning, branch_conditioning, pnp_sample};
pub use sdedit::sdedit;

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
                    preview: None,
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
                    preview: None,
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
                        preview: None,
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
