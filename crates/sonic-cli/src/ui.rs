//! What the image-making subcommands share: progress (model loading, audio encoding, denoising,
//! VAE decoding), seeds (random when omitted, printed) and output names that never overwrite.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sonic_pipeline::Progress;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A spinner with `message` on stderr (hidden when stderr is not a terminal); finish it with
/// [`ProgressBar::finish_and_clear`].
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Runs `f` under a spinner showing `message`.
pub fn with_spinner<T>(message: &str, f: impl FnOnce() -> T) -> T {
    let bar = spinner(message);
    let out = f();
    bar.finish_and_clear();
    out
}

/// A step bar labelled `label` that turns into a "decoding" spinner once the last step is done
/// (the VAE decoder runs then), and back into a bar when steps start again (PnP editing runs
/// the inversion, then the sampling).
pub struct StepBar {
    bar: ProgressBar,
    label: String,
    decoding: bool,
}

impl StepBar {
    /// A bar of `steps` steps.
    pub fn new(label: &str, steps: usize) -> Self {
        let this = Self {
            bar: ProgressBar::new(steps as u64),
            label: label.to_string(),
            decoding: false,
        };
        this.bar_style();
        this
    }

    fn bar_style(&self) {
        self.bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}} eta {{eta}}",
                self.label
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
    }

    /// Records a step.
    pub fn update(&mut self, p: &Progress) {
        let done = p.step >= p.total;
        if done != self.decoding {
            self.decoding = done;
            if done {
                self.bar.set_style(
                    ProgressStyle::with_template("{spinner} decoding the image (VAE) {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                self.bar.enable_steady_tick(Duration::from_millis(120));
            } else {
                self.bar.disable_steady_tick();
                self.bar_style();
            }
        }
        self.bar.set_length(p.total as u64);
        self.bar.set_position(p.step as u64);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The seed to use: `seed` when given, else a random one; printed either way, so any picture
/// can be made again.
pub fn seed(seed: Option<u64>) -> u64 {
    let seed = seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    eprintln!("seed: {seed}");
    seed
}

/// The output path: `out` when given (overwritten), else the first `STEM-NNNN.png` in the
/// current folder for which no file (nor, for `count` > 1, any of its numbered variants)
/// exists, so default names never overwrite.
pub fn output_path(out: Option<&Path>, stem: &str, count: usize) -> Result<PathBuf> {
    if let Some(out) = out {
        if sonic_pipeline::output::ImageFormat::from_path(out).is_none() {
            anyhow::bail!(
                "--out {}: unknown image format; use a .png, .jpg / .jpeg or .webp name",
                out.display()
            );
        }
        return Ok(out.to_path_buf());
    }
    for n in 1..=99_999u32 {
        let candidate = PathBuf::from(format!("{stem}-{n:04}.png"));
        let taken = sonic_pipeline::output::numbered_paths(&candidate, count.max(1))
            .iter()
            .any(|p| p.exists());
        if !taken {
            return Ok(candidate);
        }
    }
    anyhow::bail!("no free name {stem}-NNNN.png left in the current folder; pass --out")
}

/// The SonicDiffusion files of `generate`, `edit` and `eval`: a released checkpoint from the
/// cache, or paths (a path given overrides the preset's file).
#[derive(clap::Args, Debug, Clone)]
pub struct SonicModelArgs {
    /// Use a released SonicDiffusion checkpoint: landscape or greatest-hits (SD v1.4, CLAP and
    /// the checkpoint are resolved from the Hugging Face cache, downloaded on first use unless
    /// --offline); the paths below override single files.
    #[arg(long, value_parser = crate::values::checkpoint_parser())]
    pub preset: Option<sonic_pipeline::hub::Checkpoint>,
    #[command(flatten)]
    pub hub: crate::download::HubArgs,
    /// A diffusers-layout Stable Diffusion folder (model_index.json, unet/, vae/, ...).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The CLAP checkpoint (CLAP_weights_2022.pth or safetensors).
    #[arg(long)]
    pub clap: Option<PathBuf>,
    /// The audio projector weights (audio_projector_*.pth or safetensors).
    #[arg(long)]
    pub projector: Option<PathBuf>,
    /// A projector config JSON, when the weights do not tell the head count.
    #[arg(long)]
    pub projector_config: Option<PathBuf>,
    /// The adapter weights (landscape.pt, greatest_hits.pt or safetensors).
    #[arg(long)]
    pub adapters: Option<PathBuf>,
}

impl SonicModelArgs {
    /// The paths given, without the preset's.
    pub fn given(&self) -> ModelPaths {
        ModelPaths {
            model: self.model.clone(),
            clap: self.clap.clone(),
            projector: self.projector.clone(),
            adapters: self.adapters.clone(),
        }
    }

    /// The paths given, the preset's filling the others (downloaded on first use unless
    /// `--offline`).
    pub fn paths(&self) -> Result<ModelPaths> {
        let mut paths = self.given();
        paths.fill_from(self.preset, &self.hub)?;
        Ok(paths)
    }

    /// A pipeline builder over `paths` (each required: `command` names who needs it), with
    /// the projector config, the LoRAs and the tiny autoencoder of `parts` (TAESD from the
    /// cache for `--vae tiny`); also the tiny autoencoder's folder, for the metadata.
    pub fn pipeline(
        &self,
        paths: &ModelPaths,
        command: &str,
        parts: &crate::values::ModelParts,
        device: &burn::tensor::Device,
    ) -> Result<(sonic_pipeline::sonic::SonicPipelineBuilder, Option<PathBuf>)> {
        let tiny_vae =
            crate::values::tiny_vae_dir(parts.tiny_vae.as_deref(), parts.vae, false, &self.hub)?;
        let need = |p: &Option<PathBuf>, flag: &str| {
            p.clone().with_context(|| {
                format!("{command} needs {flag} FILE, or --preset landscape|greatest-hits")
            })
        };
        let pipe = sonic_pipeline::sonic::SonicPipeline::builder()
            .model(need(&paths.model, "--model")?)
            .clap(need(&paths.clap, "--clap")?)
            .projector(need(&paths.projector, "--projector")?)
            .adapters(need(&paths.adapters, "--adapters")?)
            .device(device.clone());
        let pipe = crate::values::with_fast_parts(pipe, &parts.lora, tiny_vae.as_deref());
        let pipe = match &self.projector_config {
            Some(c) => pipe.projector_config(c),
            None => pipe,
        };
        Ok((pipe, tiny_vae))
    }
}

/// The model files of `--preset` (resolved through the Hugging Face cache with progress bars,
/// downloaded on first use unless `--offline`), for the paths the user did not give.
#[derive(Debug, Default, Clone)]
pub struct ModelPaths {
    /// The diffusers Stable Diffusion folder.
    pub model: Option<PathBuf>,
    /// The CLAP checkpoint.
    pub clap: Option<PathBuf>,
    /// The projector weights.
    pub projector: Option<PathBuf>,
    /// The adapter weights.
    pub adapters: Option<PathBuf>,
}

impl ModelPaths {
    /// Fills the unset paths from `preset` (nothing to do when `None`).
    pub fn fill_from(
        &mut self,
        preset: Option<sonic_pipeline::hub::Checkpoint>,
        hub: &crate::download::HubArgs,
    ) -> Result<()> {
        let Some(which) = preset else {
            return Ok(());
        };
        let files = crate::download::resolve_preset(which.preset(), hub)?;
        let ckpt = files
            .checkpoint(which)
            .with_context(|| format!("preset {} resolved without its checkpoint", which.name()))?;
        self.model.get_or_insert(files.sd_dir.clone());
        self.clap.get_or_insert(files.clap.clone());
        self.projector.get_or_insert(ckpt.projector.clone());
        self.adapters.get_or_insert(ckpt.adapters.clone());
        Ok(())
    }
}
