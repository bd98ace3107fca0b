//! `sonic edit`: audio-driven editing of a real image (Plug-and-Play or SDEdit).

use crate::ui::{StepBar, with_spinner};
use anyhow::{Context, Result};
use burn::tensor::Device;
use sonic_pipeline::AudioToImage;
use sonic_pipeline::edit::{EditMode, EditRequest, PnpOptions, edit_file};
use sonic_pipeline::image_input::ImageOptions;
use sonic_pipeline::memory;
use sonic_pipeline::sonic::AudioSource;
use sonic_schedulers::SchedulerChoice;
use sonic_unet::AdapterStrength;
use std::path::PathBuf;

/// The editing method.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// DDIM inversion + Plug-and-Play feature injection.
    Pnp,
    /// Noise to --strength, then denoise.
    Sdedit,
}

/// How a photo is edited (shared by `sonic edit` and `sonic video --image`).
#[derive(clap::Args, Debug, Clone)]
pub struct EditMethodArgs {
    /// The DDIM inversion prompt (PnP). As in the official code, the source branch of the
    /// sampling always uses the empty prompt, whatever this is.
    #[arg(long, default_value = "")]
    pub inversion_prompt: String,
    /// pnp (DDIM inversion + feature injection) or sdedit.
    #[arg(long, value_enum, default_value_t = Mode::Pnp)]
    pub mode: Mode,
    /// SDEdit strength in [0, 1] (0 returns the image).
    #[arg(long, default_value_t = 0.6)]
    pub strength: f64,
    /// Fraction of the steps with residual-feature injection (PnP).
    #[arg(long, default_value_t = 0.8)]
    pub pnp_f_t: f64,
    /// Fraction of the steps with self-attention Q/K injection (PnP).
    #[arg(long, default_value_t = 0.8)]
    pub pnp_attn_t: f64,
    /// Injected resnets (PnP), comma separated; default up_blocks.1.resnets.1,2.
    #[arg(long, value_delimiter = ',')]
    pub pnp_resnets: Vec<String>,
    /// Injected self-attentions (PnP), comma separated; default the official list.
    #[arg(long, value_delimiter = ',')]
    pub pnp_attentions: Vec<String>,
}

impl EditMethodArgs {
    /// The library's mode.
    pub fn mode(&self) -> EditMode {
        match self.mode {
            Mode::Pnp => EditMode::Pnp,
            Mode::Sdedit => EditMode::SdEdit,
        }
    }

    /// The Plug-and-Play settings (the official lists when none are given).
    pub fn pnp_options(&self) -> PnpOptions {
        let defaults = PnpOptions::default();
        PnpOptions {
            pnp_f_t: self.pnp_f_t,
            pnp_attn_t: self.pnp_attn_t,
            resnets: if self.pnp_resnets.is_empty() {
                defaults.resnets
            } else {
                self.pnp_resnets.clone()
            },
            attentions: if self.pnp_attentions.is_empty() {
                defaults.attentions
            } else {
                self.pnp_attentions.clone()
            },
        }
    }
}

/// Arguments of `sonic edit`.
#[derive(clap::Args, Debug, Clone)]
pub struct EditArgs {
    /// The image to edit (PNG, JPEG or WebP; EXIF orientation applied).
    #[arg(long)]
    pub image: PathBuf,
    /// The sound that drives the edit (WAV, FLAC, MP3, OGG).
    #[arg(long)]
    pub audio: PathBuf,
    /// Optional text prompt.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// The negative prompt (unconditional branch).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    #[command(flatten)]
    pub method: EditMethodArgs,
    #[command(flatten)]
    pub models: crate::ui::SonicModelArgs,
    #[command(flatten)]
    pub parts: crate::values::ModelParts,
    /// Steps (inversion and sampling for PnP; the full schedule for SDEdit).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Guidance scale (no guidance when <= 1).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Separate audio guidance scale (then --guidance applies to the text only).
    #[arg(long)]
    pub audio_guidance: Option<f64>,
    /// Audio strength `f` of the adapters.
    #[arg(long, default_value_t = 1.0)]
    pub audio_strength: f32,
    /// SDEdit scheduler (PnP always uses DDIM, as its inversion).
    #[arg(long, default_value = "ddim", value_parser = crate::values::scheduler_parser())]
    pub scheduler: SchedulerChoice,
    /// Seed (SDEdit noise); random when omitted (printed and stored in the image).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Resize to WIDTHxHEIGHT (multiples of 8) after a centre crop to that aspect ratio;
    /// default: keep the pixels, centre-cropped to multiples of 8.
    #[arg(long)]
    pub size: Option<String>,
    /// Budget on the pixels entering the VAE.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_pixels: u64,
    /// Refuse the edit when its memory estimate (weights + activations for the size)
    /// exceeds this: bytes or K / M / G / T (powers of 1024), e.g. 8G. Default: the memory
    /// available, on CPU devices.
    #[arg(long, value_parser = crate::values::memory_size)]
    pub max_memory: Option<u64>,
    /// The output image (.png, .jpg / .jpeg or .webp). Default: the first free
    /// edited-NNNN.png here (never overwritten; an explicit name is).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--size `{s}` is not WIDTHxHEIGHT"))?;
    Ok((
        w.trim()
            .parse()
            .with_context(|| format!("bad width in `{s}`"))?,
        h.trim()
            .parse()
            .with_context(|| format!("bad height in `{s}`"))?,
    ))
}

/// Refuses an edit whose memory estimate exceeds `--max-memory` (or the memory available)
/// before any model is loaded. The picture's size is `--size`, else the largest square
/// `--max-pixels` allows (the file is not decoded yet); PnP runs three UNet rows.
fn check_memory(
    args: &EditArgs,
    paths: &crate::ui::ModelPaths,
    size: Option<(usize, usize)>,
    device: &Device,
) -> Result<()> {
    let Some(model) = &paths.model else {
        return Ok(());
    };
    let side = ((args.max_pixels as f64).sqrt() as usize).max(8);
    let (width, height) = size.unwrap_or((side, side));
    let run = memory::ImageRun::new(width, height, 1, 3, device);
    let extra: Vec<PathBuf> = [&paths.clap, &paths.projector, &paths.adapters]
        .into_iter()
        .flatten()
        .filter(|p| p.is_file())
        .cloned()
        .collect();
    let estimate = memory::estimate_model_run(model, &extra, &run)
        .with_context(|| format!("loading model {}", model.display()))?;
    let (budget, from) = memory::budget_or_default(args.max_memory, device);
    memory::check_budget(&run.describe("edit"), &estimate, budget, from)?;
    Ok(())
}

/// Runs `sonic edit`.
pub fn run(args: &EditArgs, device: &Device) -> Result<()> {
    let paths = args.models.paths()?;
    let (pipe, tiny_vae) = args
        .models
        .pipeline(&paths, "sonic edit", &args.parts, device)?;
    let seed = crate::ui::seed(args.seed);
    let out = crate::ui::output_path(args.out.as_deref(), "edited", 1)?;
    let size = args.size.as_deref().map(parse_size).transpose()?;
    check_memory(args, &paths, size, device)?;
    let pipe = with_spinner("loading the models", || pipe.build())?;
    let embedding = with_spinner("encoding the audio (CLAP)", || {
        pipe.embed(&[AudioSource::File(args.audio.clone())])
    })?;
    let req = EditRequest {
        mode: args.method.mode(),
        generation: AudioToImage {
            prompt: args.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            guidance_scale: args.guidance,
            audio_guidance_scale: args.audio_guidance,
            audio_strength: AdapterStrength::Global(args.audio_strength),
            steps: args.steps,
            scheduler: args.scheduler.to_string(),
            seed,
            ..AudioToImage::default()
        },
        inversion_prompt: args.method.inversion_prompt.clone(),
        pnp: args.method.pnp_options(),
        strength: args.method.strength,
    };
    let opts = ImageOptions {
        size,
        max_pixels: args.max_pixels,
        ..ImageOptions::default()
    };
    let label = match args.method.mode {
        Mode::Pnp => "inverting + editing",
        Mode::Sdedit => "editing",
    };
    let mut bar = StepBar::new(label, args.steps);
    let mut metadata = vec![
        ("sonic:mode".to_string(), format!("{:?}", args.method.mode)),
        ("sonic:image".to_string(), args.image.display().to_string()),
        ("sonic:audio".to_string(), args.audio.display().to_string()),
        ("sonic:prompt".to_string(), args.prompt.clone()),
        ("sonic:steps".to_string(), args.steps.to_string()),
        ("sonic:guidance".to_string(), args.guidance.to_string()),
        ("sonic:seed".to_string(), seed.to_string()),
        ("sonic:scheduler".to_string(), args.scheduler.to_string()),
        (
            "Software".to_string(),
            format!("sonic {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    metadata.extend(crate::values::lora_metadata(
        &args.parts.lora,
        tiny_vae.as_deref(),
    ));
    let result = edit_file(
        &pipe,
        &args.image,
        &opts,
        embedding,
        &req,
        &out,
        &metadata,
        &mut |p| bar.update(p),
    );
    bar.finish();
    for p in result? {
        println!("{}", p.display());
    }
    Ok(())
}
