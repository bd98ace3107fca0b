//! `sonic generate`: images from a sound and / or a text prompt.

use crate::ui::{StepBar, with_spinner};
use anyhow::{Context, Result};
use burn::tensor::Device;
use sonic_pipeline::memory;
use sonic_pipeline::sonic::AudioSource;
use sonic_pipeline::{AudioToImage, StableDiffusion, TextToImage, text_to_image};
use sonic_schedulers::SchedulerChoice;
use sonic_unet::AdapterStrength;
use std::path::PathBuf;

/// Arguments of `sonic generate`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub models: crate::ui::SonicModelArgs,
    /// The text prompt (longer than 77 CLIP tokens: truncated, with a warning).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// The negative prompt.
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Denoising steps [default: 50; 4 with --fast].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (no guidance when <= 1) [default: 7.5; 1 with --fast].
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Fast generation: LCM-LoRA merged into the model, the LCM scheduler, 4 steps without
    /// guidance and the tiny autoencoder (TAESD) for decoding; LCM-LoRA and TAESD come from the
    /// cache (downloaded on first use unless --offline). --steps, --guidance, --scheduler and
    /// --tiny-vae still override.
    #[arg(long)]
    pub fast: bool,
    /// Write a preview of the picture every N steps to `<out>-preview.png` (decoded from the
    /// step's estimate of the final latents; quick with --tiny-vae or --fast, a full VAE decode
    /// otherwise).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub preview_every: Option<u64>,
    /// The scheduler (`sonic schedulers` describes them).
    #[arg(long, default_value = "model", value_parser = crate::values::scheduler_parser())]
    pub scheduler: SchedulerChoice,
    /// Seed of the initial noise; random when omitted (printed and stored in the image).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Width in pixels (a multiple of 8); default: the UNet's sample size x 8.
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels (a multiple of 8); default: the UNet's sample size x 8.
    #[arg(long)]
    pub height: Option<usize>,
    /// Images to generate.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Refuse the run when its memory estimate (weights + activations for the size, batch and
    /// frames) exceeds this: bytes or K / M / G / T (powers of 1024), e.g. 8G. Default: the
    /// memory available, on CPU devices.
    #[arg(long, value_parser = crate::values::memory_size)]
    pub max_memory: Option<u64>,
    /// The output image; the format follows the extension: .png, .jpg / .jpeg or .webp (with
    /// several images: NAME-0.png, NAME-1.png, ...). Default: the first free sonic-NNNN.png
    /// here (never overwritten; an explicit name is).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A sound to turn into a picture (WAV, FLAC, MP3, OGG).
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Mix several sounds with weights: `a.wav:0.7,b.wav:0.3` (mixed in CLAP-embedding space).
    #[arg(long, value_delimiter = ',')]
    pub mix: Vec<String>,
    /// Interpolate between two sounds: `a.wav,b.wav` (with --frames images).
    #[arg(long, value_delimiter = ',')]
    pub interpolate: Vec<PathBuf>,
    /// Number of interpolation frames.
    #[arg(long, default_value_t = 5)]
    pub frames: usize,
    /// Audio strength `f` of the adapters (0: text only).
    #[arg(long, default_value_t = 1.0)]
    pub audio_strength: f32,
    /// Separate audio guidance scale (then --guidance applies to the text only).
    #[arg(long)]
    pub audio_guidance: Option<f64>,
    #[command(flatten)]
    pub parts: crate::values::ModelParts,
}

impl GenerateArgs {
    /// The denoising steps (`--steps`, else 4 with `--fast`, else 50).
    fn steps(&self) -> usize {
        self.steps.unwrap_or(if self.fast { 4 } else { 50 })
    }

    /// The guidance scale (`--guidance`, else 1 with `--fast`, else 7.5).
    fn guidance(&self) -> f64 {
        self.guidance.unwrap_or(if self.fast { 1.0 } else { 7.5 })
    }

    fn wants_audio(&self) -> bool {
        self.audio.is_some() || !self.mix.is_empty() || !self.interpolate.is_empty()
    }
}

fn parse_mix(items: &[String]) -> Result<Vec<(AudioSource, f32)>> {
    items
        .iter()
        .map(|item| {
            let (path, w) = item
                .rsplit_once(':')
                .with_context(|| format!("--mix entry `{item}` is not PATH:WEIGHT"))?;
            let w: f32 = w
                .parse()
                .with_context(|| format!("--mix weight `{w}` is not a number"))?;
            Ok((AudioSource::File(PathBuf::from(path)), w))
        })
        .collect()
}

/// Fills the model paths of `args` from `--preset`, downloading on first use.
fn apply_preset(args: &GenerateArgs) -> Result<GenerateArgs> {
    let mut args = args.clone();
    let paths = args.models.paths()?;
    let m = &mut args.models;
    (m.model, m.clap, m.projector, m.adapters) =
        (paths.model, paths.clap, paths.projector, paths.adapters);
    if args.fast {
        let fast = crate::download::resolve_fast_files(&args.models.hub)?;
        args.parts.lora.insert(
            0,
            crate::values::LoraArg {
                path: fast.lcm_lora,
                scale: 1.0,
            },
        );
        if args.parts.tiny_vae.is_none() && args.parts.vae != Some(crate::values::VaeChoice::Full) {
            args.parts.tiny_vae = Some(fast.taesd_dir);
        }
        if args.scheduler == SchedulerChoice::Model {
            args.scheduler = SchedulerChoice::Lcm;
        }
    }
    args.parts.tiny_vae = crate::values::tiny_vae_dir(
        args.parts.tiny_vae.as_deref(),
        args.parts.vae,
        args.fast,
        &args.models.hub,
    )?;
    Ok(args)
}

/// Refuses a run whose memory estimate exceeds `--max-memory` (or the memory available)
/// before any model is loaded or any frame is built.
fn check_memory(args: &GenerateArgs, device: &Device) -> Result<()> {
    let model = model_dir(args)?;
    let context = || format!("loading model {}", model.display());
    let side = memory::default_side(&model).with_context(context)?;
    // Interpolation makes one image per frame; otherwise --batch images.
    let images = if args.interpolate.is_empty() {
        args.batch
    } else {
        args.frames
    };
    let branches = match (args.wants_audio(), args.audio_guidance) {
        (true, Some(_)) => 3,
        _ if args.guidance() > 1.0 => 2,
        _ => 1,
    };
    let run = memory::ImageRun::new(
        args.width.unwrap_or(side),
        args.height.unwrap_or(side),
        images,
        branches,
        device,
    );
    let extra: Vec<PathBuf> = [
        &args.models.clap,
        &args.models.projector,
        &args.models.adapters,
    ]
    .into_iter()
    .flatten()
    .filter(|p| p.is_file())
    .cloned()
    .collect();
    let estimate = memory::estimate_model_run(&model, &extra, &run).with_context(context)?;
    let (budget, from) = memory::budget_or_default(args.max_memory, device);
    memory::check_budget(&run.describe("generate"), &estimate, budget, from)?;
    Ok(())
}

fn model_dir(args: &GenerateArgs) -> Result<PathBuf> {
    args.models
        .model
        .clone()
        .context("needs --model DIR (a diffusers folder) or --preset landscape|greatest-hits")
}

fn run_audio(args: &GenerateArgs, seed: u64, out: &std::path::Path, device: &Device) -> Result<()> {
    let model = model_dir(args)?;
    let (pipe, _) = args.models.pipeline(
        &args.models.given(),
        "audio generation",
        &args.parts,
        device,
    )?;
    let pipe = with_spinner("loading the models", || pipe.build())?;
    let default_px = pipe.sd.default_image_size();
    let encoding = crate::ui::spinner("encoding the audio (CLAP)");
    let embeddings = (|| -> Result<_> {
        Ok(if !args.interpolate.is_empty() {
            let [a, b] = args.interpolate.as_slice() else {
                anyhow::bail!("--interpolate takes exactly two files: a.wav,b.wav");
            };
            pipe.interpolate(
                &AudioSource::File(a.clone()),
                &AudioSource::File(b.clone()),
                args.frames,
            )?
        } else if !args.mix.is_empty() {
            pipe.mix(&parse_mix(&args.mix)?)?
        } else {
            let audio = args
                .audio
                .clone()
                .context("audio generation needs --audio (or --mix / --interpolate)")?;
            pipe.embed(&[AudioSource::File(audio)])?
        })
    })();
    encoding.finish_and_clear();
    let embeddings = embeddings?;
    let req = AudioToImage {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        guidance_scale: args.guidance(),
        audio_guidance_scale: args.audio_guidance,
        audio_strength: AdapterStrength::Global(args.audio_strength),
        steps: args.steps(),
        scheduler: args.scheduler.to_string(),
        seed,
        width: args.width.unwrap_or(default_px),
        height: args.height.unwrap_or(default_px),
        batch_size: args.batch,
        latents: None,
        cancel: None,
    };
    let mut bar = StepBar::new("denoising", args.steps());
    let mut preview = Preview::new(args.preview_every, out);
    let result = pipe.generate(embeddings, &req, &mut |p| {
        bar.update(p);
        preview.update(&pipe.sd, p);
    });
    bar.finish();
    let images = result?;
    let sounds: Vec<String> = if !args.interpolate.is_empty() {
        args.interpolate
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    } else if !args.mix.is_empty() {
        args.mix.clone()
    } else {
        args.audio.iter().map(|p| p.display().to_string()).collect()
    };
    let mut metadata = common_metadata(args, seed, &model, &req.scheduler, req.width, req.height);
    metadata.push(("sonic:audio".to_string(), sounds.join(",")));
    metadata.push((
        "sonic:audio_strength".to_string(),
        args.audio_strength.to_string(),
    ));
    if let Some(a) = args.audio_guidance {
        metadata.push(("sonic:audio_guidance".to_string(), a.to_string()));
    }
    for p in sonic_pipeline::output::save_images(&images.images, out, &metadata)? {
        println!("{}", p.display());
    }
    Ok(())
}

/// `--preview-every N`: decodes the step's estimate of the final latents every N steps (and
/// at the last step) to `<out stem>-preview.png`, written atomically. A failed preview is a
/// warning, never the end of the run.
struct Preview {
    every: Option<u64>,
    path: PathBuf,
}

impl Preview {
    fn new(every: Option<u64>, out: &std::path::Path) -> Self {
        let stem = out
            .file_stem()
            .map_or_else(|| "sonic".to_string(), |s| s.to_string_lossy().into_owned());
        Self {
            every,
            path: out.with_file_name(format!("{stem}-preview.png")),
        }
    }

    fn update(&mut self, sd: &StableDiffusion, p: &sonic_pipeline::Progress) {
        let (Some(every), Some(latents)) = (self.every, &p.preview) else {
            return;
        };
        if !(p.step as u64).is_multiple_of(every) && p.step != p.total {
            return;
        }
        let written = sd
            .decode_latents(latents.clone())
            .and_then(|images| sonic_pipeline::output::save_images(&images, &self.path, &[]));
        if let Err(e) = written {
            eprintln!("warning: preview at step {}: {e}", p.step);
            self.every = None;
        }
    }
}

fn common_metadata(
    args: &GenerateArgs,
    seed: u64,
    model: &std::path::Path,
    scheduler: &str,
    width: usize,
    height: usize,
) -> Vec<(String, String)> {
    let mut meta = vec![
        ("sonic:prompt".to_string(), args.prompt.clone()),
        (
            "sonic:negative_prompt".to_string(),
            args.negative_prompt.clone(),
        ),
        ("sonic:model".to_string(), model.display().to_string()),
        ("sonic:steps".to_string(), args.steps().to_string()),
        ("sonic:guidance".to_string(), args.guidance().to_string()),
        ("sonic:scheduler".to_string(), scheduler.to_string()),
        ("sonic:seed".to_string(), seed.to_string()),
        ("sonic:size".to_string(), format!("{width}x{height}")),
        (
            "Software".to_string(),
            format!("sonic {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    meta.extend(crate::values::lora_metadata(
        &args.parts.lora,
        args.parts.tiny_vae.as_deref(),
    ));
    meta
}

/// Runs `sonic generate`.
pub fn run(args: &GenerateArgs, device: &Device) -> Result<()> {
    if let Some(preset) = args.models.preset
        && !args.wants_audio()
    {
        eprintln!(
            "warning: --preset {} without --audio, --mix or --interpolate: the sound adapters \
             stay idle and the picture comes from the text prompt alone",
            preset.name()
        );
    }
    let args = &apply_preset(args)?;
    check_memory(args, device)?;
    let seed = crate::ui::seed(args.seed);
    let out = crate::ui::output_path(args.out.as_deref(), "sonic", args.batch)?;
    if args.wants_audio() {
        return run_audio(args, seed, &out, device);
    }
    let model = model_dir(args)?;
    let sd = with_spinner("loading the models", || {
        let mut sd = StableDiffusion::from_dir(&model, device)
            .with_context(|| format!("loading model {}", model.display()))?;
        for l in &args.parts.lora {
            sd = sd
                .with_lora(&l.path, l.scale)
                .with_context(|| format!("merging LoRA {}", l.path.display()))?;
        }
        if let Some(dir) = &args.parts.tiny_vae {
            sd = sd
                .with_tiny_vae(dir)
                .with_context(|| format!("loading the tiny VAE {}", dir.display()))?;
        }
        anyhow::Ok(sd)
    })?;
    let default_px = sd.default_image_size();
    let mut req = TextToImage::new(args.prompt.clone());
    req.negative_prompt = args.negative_prompt.clone();
    req.steps = args.steps();
    req.guidance_scale = args.guidance();
    req.scheduler = args.scheduler.to_string();
    req.seed = seed;
    req.width = args.width.unwrap_or(default_px);
    req.height = args.height.unwrap_or(default_px);
    req.batch_size = args.batch;

    let mut bar = StepBar::new("denoising", args.steps());
    let mut preview = Preview::new(args.preview_every, &out);
    let result = text_to_image(&sd, &req, &mut |p| {
        bar.update(p);
        preview.update(&sd, p);
    });
    bar.finish();
    let images = result?;
    let metadata = common_metadata(args, seed, &model, &req.scheduler, req.width, req.height);
    for p in sonic_pipeline::output::save_images(&images.images, &out, &metadata)? {
        println!("{}", p.display());
    }
    Ok(())
}
