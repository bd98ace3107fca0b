//! The denoising loop shared by every pipeline: a batch of conditioning branches through the
//! UNet, guidance that combines the branches' predictions, and a scheduler step.

use crate::error::PipelineError;
use crate::text_to_image::Progress;
use burn::tensor::Tensor;
use sonic_schedulers::Scheduler;
use sonic_unet::hooks::{NoHook, UNetHook};
use sonic_unet::{AdapterInput, UNet2DConditionModel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Stops a run from another thread: once [`CancelToken::cancel`] is called, the sampling loop
/// returns [`PipelineError::Cancelled`] before its next step. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop at its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// An observer that forwards everything to another and stops the loop when its token is
/// cancelled (what the pipelines wrap their observer in when a request carries a token).
pub struct Cancellable<'a> {
    inner: &'a mut dyn SamplingObserver,
    token: Option<CancelToken>,
}

impl<'a> Cancellable<'a> {
    /// Wraps `inner`; `token: None` never stops.
    pub fn new(inner: &'a mut dyn SamplingObserver, token: Option<CancelToken>) -> Self {
        Self { inner, token }
    }
}

impl SamplingObserver for Cancellable<'_> {
    fn before_step(&mut self, index: usize, t: f64) {
        self.inner.before_step(index, t);
    }
    fn leading_rows(&mut self, index: usize) -> Option<Tensor<4>> {
        self.inner.leading_rows(index)
    }
    fn unet_hook(&mut self) -> &mut dyn UNetHook {
        self.inner.unet_hook()
    }
    fn after_step(&mut self, step: &StepTensors) {
        self.inner.after_step(step);
    }
    fn should_stop(&mut self) -> bool {
        self.token.as_ref().is_some_and(CancelToken::is_cancelled) || self.inner.should_stop()
    }
}

/// How the branches' noise predictions are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Guidance {
    /// One branch, used as is.
    None,
    /// Two branches `[uncond, cond]`: `u + s (c - u)` (classifier-free guidance; the official
    /// SonicDiffusion rule with `uncond = ("" text, null audio)`, `cond = (prompt, audio)`).
    Single(f64),
    /// Three branches `[("" text, null audio), (prompt, null audio), (prompt, audio)]`:
    /// `u + s_text (t - u) + s_audio (ta - t)`.
    TextAudio {
        /// Text scale.
        text: f64,
        /// Audio scale.
        audio: f64,
    },
}

impl Guidance {
    /// The number of branches this guidance needs.
    pub fn branches(&self) -> usize {
        match self {
            Guidance::None => 1,
            Guidance::Single(_) => 2,
            Guidance::TextAudio { .. } => 3,
        }
    }

    /// Combines per-branch predictions; `None` unless there are exactly `branches()`.
    pub fn combine(&self, eps: &[Tensor<4>]) -> Option<Tensor<4>> {
        match (self, eps) {
            (Guidance::None, [e]) => Some(e.clone()),
            (Guidance::Single(s), [u, c]) => {
                Some(u.clone() + (c.clone() - u.clone()).mul_scalar(*s))
            }
            (Guidance::TextAudio { text, audio }, [u, t, ta]) => Some(
                u.clone()
                    + (t.clone() - u.clone()).mul_scalar(*text)
                    + (ta.clone() - t.clone()).mul_scalar(*audio),
            ),
            _ => None,
        }
    }
}

/// The conditioning of all branches, stacked branch-major: rows `[k*b, (k+1)*b)` belong to
/// branch `k`.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// Text embeddings `[branches * b, S, C]`.
    pub text: Tensor<3>,
    /// Adapter inputs with batch `branches * b`, if any.
    pub adapter: Option<AdapterInput>,
}

/// What one step produced, for observers (parity checks, previews).
#[derive(Debug, Clone)]
pub struct StepTensors {
    /// Index of the step in the scheduler's timesteps.
    pub index: usize,
    /// The timestep.
    pub timestep: f64,
    /// Per-branch noise predictions.
    pub branch_eps: Vec<Tensor<4>>,
    /// The guided prediction.
    pub eps: Tensor<4>,
    /// The scheduler's estimate of the clean latents at this step
    /// ([`Scheduler::predict_original_sample`]), for previews; `None` where it has none.
    pub denoised: Option<Tensor<4>>,
    /// The latents after the step.
    pub latents: Tensor<4>,
}

/// Observes the loop and may provide a UNet hook per step (Plug-and-Play injection) and rows
/// of its own in front of the model input (Plug-and-Play's source branch).
pub trait SamplingObserver {
    /// Called before step `index` (timestep `t`) runs.
    fn before_step(&mut self, _index: usize, _t: f64) {}
    /// Latent rows put in front of the branches' rows in step `index`'s model input (their
    /// conditioning leads [`Conditioning`] too); their predictions are not guided, only seen by
    /// the hook. Default: none.
    fn leading_rows(&mut self, _index: usize) -> Option<Tensor<4>> {
        None
    }
    /// The hook for the current step's UNet call.
    fn unet_hook(&mut self) -> &mut dyn UNetHook;
    /// Called after each step.
    fn after_step(&mut self, _step: &StepTensors) {}
    /// Asked before each step; `true` ends the loop with [`PipelineError::Cancelled`].
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that only forwards progress.
pub struct ProgressOnly<'a> {
    /// Called with `(steps done, steps in all, timestep)`.
    pub progress: &'a mut dyn FnMut(usize, usize, f64),
    /// Steps in all.
    pub total: usize,
    hook: NoHook,
}

impl<'a> ProgressOnly<'a> {
    /// Wraps a progress callback.
    pub fn new(progress: &'a mut dyn FnMut(usize, usize, f64), total: usize) -> Self {
        Self {
            progress,
            total,
            hook: NoHook,
        }
    }
}

impl SamplingObserver for ProgressOnly<'_> {
    fn unet_hook(&mut self) -> &mut dyn UNetHook {
        &mut self.hook
    }

    fn after_step(&mut self, step: &StepTensors) {
        (self.progress)(step.index + 1, self.total, step.timestep);
    }
}

/// An observer that reports [`Progress`] after each step, with the step's estimate of the
/// final latents as its preview.
pub struct ReportProgress<'a> {
    progress: &'a mut dyn FnMut(&Progress),
    total: usize,
    hook: NoHook,
}

impl<'a> ReportProgress<'a> {
    /// Reports to `progress`; `total` steps in all.
    pub fn new(progress: &'a mut dyn FnMut(&Progress), total: usize) -> Self {
        Self {
            progress,
            total,
            hook: NoHook,
        }
    }
}

impl SamplingObserver for ReportProgress<'_> {
    fn unet_hook(&mut self) -> &mut dyn UNetHook {
        &mut self.hook
    }

    fn after_step(&mut self, step: &StepTensors) {
        (self.progress)(&Progress {
            step: step.index + 1,
            total: self.total,
            timestep: step.timestep,
            preview: step.denoised.clone(),
        });
    }
}

/// Runs the scheduler's steps from index `start` on `latents` (batch `b`, already scaled by
/// the scheduler's `init_noise_sigma` or noised to the start step). Each step's model input is
/// the observer's leading rows (if any), then `latents` once per guidance branch; `cond` holds
/// the conditioning of all those rows in that order.
pub fn denoise(
    unet: &UNet2DConditionModel,
    scheduler: &mut dyn Scheduler,
    mut latents: Tensor<4>,
    cond: &Conditioning,
    guidance: Guidance,
    start: usize,
    observer: &mut dyn SamplingObserver,
) -> Result<Tensor<4>, PipelineError> {
    let b = latents.dims()[0];
    let n = guidance.branches();
    let rows = cond.text.dims()[0];
    let timesteps = scheduler.timesteps().to_vec();
    // The text is the same at every step: its cross-attention keys / values once per run.
    let text_kv = unet.prepare_text(cond.text.clone());
    for (i, &t) in timesteps.iter().enumerate().skip(start) {
        if observer.should_stop() {
            return Err(PipelineError::Cancelled);
        }
        observer.before_step(i, t);
        let mut parts: Vec<Tensor<4>> = observer.leading_rows(i).into_iter().collect();
        let lead: usize = parts.iter().map(|p| p.dims()[0]).sum();
        if rows != lead + n * b {
            return Err(PipelineError::InvalidParameter {
                name: "conditioning",
                value: format!("{rows} text rows"),
                reason: format!(
                    "{lead} leading rows + {n} branches x batch {b} = {} expected",
                    lead + n * b
                ),
            });
        }
        parts.extend(std::iter::repeat_n(latents.clone(), n));
        let input = if parts.len() == 1 {
            latents.clone()
        } else {
            Tensor::cat(parts, 0)
        };
        let input = scheduler.scale_model_input(input, i)?;
        let eps_all = unet.forward_with(
            input,
            &[t as f32],
            sonic_unet::UNetInputs::new(cond.text.clone())
                .text_kv(&text_kv)
                .maybe_adapters(cond.adapter.as_ref())
                .hook(observer.unet_hook()),
        )?;
        let branch_eps: Vec<Tensor<4>> = (0..n)
            .map(|k| eps_all.clone().narrow(0, lead + k * b, b))
            .collect();
        let eps = guidance
            .combine(&branch_eps)
            .ok_or_else(|| PipelineError::InvalidParameter {
                name: "guidance",
                value: format!("{} branches", branch_eps.len()),
                reason: format!("{guidance:?} needs {n}"),
            })?;
        let denoised = scheduler.predict_original_sample(eps.clone(), i, latents.clone());
        latents = scheduler.step(eps.clone(), i, latents)?;
        observer.after_step(&StepTensors {
            index: i,
            timestep: t,
            branch_eps,
            eps,
            denoised,
            latents: latents.clone(),
        });
    }
    Ok(latents)
}
