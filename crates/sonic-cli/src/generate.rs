//! `sonic generate`: text-to-image from a local diffusers folder.

use anyhow::{Context, Result};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use sonic_pipeline::{StableDiffusion, TextToImage, text_to_image};
use std::path::PathBuf;

/// Arguments of `sonic generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A diffusers-layout Stable Diffusion folder (model_index.json, unet/, vae/, ...).
    #[arg(long)]
    pub model: PathBuf,
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
}

/// The UNet's `sample_size` from its config (latent pixels), if present.
fn sample_size(model: &std::path::Path) -> Option<usize> {
    let text = std::fs::read_to_string(model.join("unet").join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("sample_size")?.as_u64().map(|x| x as usize)
}

/// Runs `sonic generate`.
pub fn run(args: &GenerateArgs, device: &Device) -> Result<()> {
    let sd = StableDiffusion::from_dir(&args.model, device)
        .with_context(|| format!("loading model {}", args.model.display()))?;
    let default_px = sample_size(&args.model).unwrap_or(64) * sd.vae_scale_factor();
    let mut req = TextToImage::new(args.prompt.clone());
    req.negative_prompt = args.negative_prompt.clone();
    req.steps = args.steps;
    req.guidance_scale = args.guidance;
    req.scheduler = args.scheduler.clone();
    req.seed = args.seed;
    req.width = args.width.unwrap_or(default_px);
    req.height = args.height.unwrap_or(default_px);
    req.batch_size = args.batch;

    let bar = ProgressBar::new(args.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} denoising [{bar:30}] {pos}/{len} {elapsed} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let result = text_to_image(&sd, &req, &mut |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.step as u64);
    });
    bar.finish_and_clear();
    let out = result?;
    let metadata = vec![
        ("sonic:prompt".to_string(), req.prompt.clone()),
        ("sonic:negative_prompt".to_string(), req.negative_prompt.clone()),
        ("sonic:model".to_string(), args.model.display().to_string()),
        ("sonic:steps".to_string(), req.steps.to_string()),
        ("sonic:guidance".to_string(), req.guidance_scale.to_string()),
        ("sonic:scheduler".to_string(), req.scheduler.clone()),
        ("sonic:seed".to_string(), req.seed.to_string()),
        ("sonic:size".to_string(), format!("{}x{}", req.width, req.height)),
        ("Software".to_string(), format!("sonic {}", env!("CARGO_PKG_VERSION"))),
    ];
    let paths = sonic_pipeline::output::save_pngs(&out.images, &args.out, &metadata)?;
    for p in paths {
        println!("{}", p.display());
    }
    Ok(())
}
