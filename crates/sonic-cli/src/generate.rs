//! `sonic generate`: text-to-image from a local diffusers folder.

use anyhow::{Context, Result};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use sonic_pipeline::sonic::{AudioSource, SonicPipeline};
use sonic_pipeline::{AudioToImage, StableDiffusion, TextToImage, text_to_image};
use sonic_unet::AdapterStrength;
use std::path::PathBuf;

/// Arguments of `sonic generate`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenerateArgs {
    /// A diffusers-layout Stable Diffusion folder (model_index.json, unet/, vae/, ...);
    /// with --preset, taken from the Hugging Face cache.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Use a released SonicDiffusion checkpoint: landscape or greatest-hits (SD v1.4, CLAP and
    /// the checkpoint are resolved from the cache, downloaded on first use unless --offline).
    #[arg(long)]
    pub preset: Option<sonic_pipeline::hub::Checkpoint>,
    #[command(flatten)]
    pub hub: crate::download::HubArgs,
    /// The text prompt (longer than 77 CLIP tokens: truncated, with a warning).
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// The negative prompt.
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale (no guidance when <= 1).
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// Scheduler: model, ddim, pndm, euler, euler-karras, dpm++2m, dpm++2m-karras.
    #[arg(long, default_value = "model")]
    pub scheduler: String,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Width in pixels (a multiple of 8); default: the UNet's sample size x 8.
    #[arg(long)]
    pub width: Option<usize>,
    /// Height in pixels (a multiple of 8); default: the UNet's sample size x 8.
    #[arg(long)]
    pub height: Option<usize>,
    /// Images to generate.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Output PNG (with several images: NAME-0.png, NAME-1.png, ...).
    #[arg(long, default_value = "sonic.png")]
    pub out: PathBuf,
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

impl GenerateArgs {
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

fn progress_bar(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} denoising [{bar:30}] {pos}/{len} {elapsed} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Fills the model paths of `args` from `--preset`, downloading on first use.
fn apply_preset(args: &GenerateArgs) -> Result<GenerateArgs> {
    let mut args = args.clone();
    if let Some(which) = args.preset {
        let files = crate::download::resolve_preset(which.preset(), &args.hub)?;
        let ckpt = files
            .checkpoint(which)
            .with_context(|| format!("preset {} resolved without its checkpoint", which.name()))?;
        args.model.get_or_insert(files.sd_dir.clone());
        args.clap.get_or_insert(files.clap.clone());
        args.projector.get_or_insert(ckpt.projector.clone());
        args.adapters.get_or_insert(ckpt.adapters.clone());
    }
    Ok(args)
}

fn model_dir(args: &GenerateArgs) -> Result<PathBuf> {
    args.model
        .clone()
        .context("needs --model DIR (a diffusers folder) or --preset landscape|greatest-hits")
}

fn run_audio(args: &GenerateArgs, device: &Device) -> Result<()> {
    let model = model_dir(args)?;
    let need = |p: &Option<PathBuf>, flag: &str| {
        p.clone()
            .with_context(|| format!("audio generation needs {flag} (or --preset once downloaded)"))
    };
    let pipe = SonicPipeline::builder()
        .model(&model)
        .clap(need(&args.clap, "--clap")?)
        .projector(need(&args.projector, "--projector")?)
        .adapters(need(&args.adapters, "--adapters")?)
        .device(device.clone());
    let pipe = match &args.projector_config {
        Some(c) => pipe.projector_config(c),
        None => pipe,
    }
    .build()?;
    let default_px = sample_size(&model).unwrap_or(64) * pipe.sd.vae_scale_factor();
    let embeddings = if !args.interpolate.is_empty() {
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
        let audio = need(&args.audio, "--audio")?;
        pipe.embed(&[AudioSource::File(audio)])?
    };
    let req = AudioToImage {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        guidance_scale: args.guidance,
        audio_guidance_scale: args.audio_guidance,
        audio_strength: AdapterStrength::Global(args.audio_strength),
        steps: args.steps,
        scheduler: args.scheduler.clone(),
        seed: args.seed,
        width: args.width.unwrap_or(default_px),
        height: args.height.unwrap_or(default_px),
        batch_size: args.batch,
        latents: None,
    };
    let bar = progress_bar(args.steps);
    let result = pipe.generate(embeddings, &req, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64);
    });
    bar.finish_and_clear();
    let out = result?;
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
    let mut metadata = common_metadata(args, &model, &req.scheduler, req.width, req.height);
    metadata.push(("sonic:audio".to_string(), sounds.join(",")));
    metadata.push((
        "sonic:audio_strength".to_string(),
        args.audio_strength.to_string(),
    ));
    if let Some(a) = args.audio_guidance {
        metadata.push(("sonic:audio_guidance".to_string(), a.to_string()));
    }
    for p in sonic_pipeline::output::save_pngs(&out.images, &args.out, &metadata)? {
        println!("{}", p.display());
    }
    Ok(())
}

fn common_metadata(
    args: &GenerateArgs,
    model: &std::path::Path,
    scheduler: &str,
    width: usize,
    height: usize,
) -> Vec<(String, String)> {
    vec![
        ("sonic:prompt".to_string(), args.prompt.clone()),
        (
            "sonic:negative_prompt".to_string(),
            args.negative_prompt.clone(),
        ),
        ("sonic:model".to_string(), model.display().to_string()),
        ("sonic:steps".to_string(), args.steps.to_string()),
        ("sonic:guidance".to_string(), args.guidance.to_string()),
        ("sonic:scheduler".to_string(), scheduler.to_string()),
        ("sonic:seed".to_string(), args.seed.to_string()),
        ("sonic:size".to_string(), format!("{width}x{height}")),
        (
            "Software".to_string(),
            format!("sonic {}", env!("CARGO_PKG_VERSION")),
        ),
    ]
}

/// The UNet's `sample_size` from its config (latent pixels), if present.
fn sample_size(model: &std::path::Path) -> Option<usize> {
    let text = std::fs::read_to_string(model.join("unet").join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("sample_size")?.as_u64().map(|x| x as usize)
}

/// Runs `sonic generate`.
pub fn run(args: &GenerateArgs, device: &Device) -> Result<()> {
    let args = &apply_preset(args)?;
    if args.wants_audio() {
        return run_audio(args, device);
    }
    let model = model_dir(args)?;
    let sd = StableDiffusion::from_dir(&model, device)
        .with_context(|| format!("loading model {}", model.display()))?;
    let default_px = sample_size(&model).unwrap_or(64) * sd.vae_scale_factor();
    let mut req = TextToImage::new(args.prompt.clone());
    req.negative_prompt = args.negative_prompt.clone();
    req.steps = args.steps;
    req.guidance_scale = args.guidance;
    req.scheduler = args.scheduler.clone();
    req.seed = args.seed;
    req.width = args.width.unwrap_or(default_px);
    req.height = args.height.unwrap_or(default_px);
    req.batch_size = args.batch;

    let bar = progress_bar(args.steps);
    let result = text_to_image(&sd, &req, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64);
    });
    bar.finish_and_clear();
    let out = result?;
    let metadata = common_metadata(args, &model, &req.scheduler, req.width, req.height);
    let paths = sonic_pipeline::output::save_pngs(&out.images, &args.out, &metadata)?;
    for p in paths {
        println!("{}", p.display());
    }
    Ok(())
}
