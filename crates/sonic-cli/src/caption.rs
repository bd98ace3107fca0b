//! `sonic train caption` and `sonic train import-labels --caption`: a manifest's missing
//! captions written by an image captioner (BLIP), cached by picture content, resumable, with a
//! progress bar.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sonic_train::cache::EmbeddingCache;
use sonic_train::caption::{BlipCaptioner, caption_dataset};
use sonic_train::dataset::Dataset;
use std::path::{Path, PathBuf};

/// The captioner and its settings.
#[derive(Args, Debug, Clone)]
pub struct CaptionArgs {
    /// A transformers BLIP captioning folder; default: Salesforce/blip-image-captioning-base
    /// from the Hugging Face cache (downloaded on first use unless --offline).
    #[arg(long)]
    pub captioner: Option<PathBuf>,
    #[command(flatten)]
    pub hub: crate::download::HubArgs,
    /// The cache folder (default: `sonic-cache` beside the written manifest).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// A text every caption starts from, e.g. "a picture of" (it stays in the caption, as
    /// transformers decodes it).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Beam-search width (1: greedy) [default: the folder's generation_config.json, else 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub beams: Option<u64>,
    /// New tokens at most [default: the folder's generation_config.json, else 20].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub max_new_tokens: Option<u64>,
    /// The shortest sequence, prompt included [default: generation_config.json, else 0].
    #[arg(long)]
    pub min_length: Option<usize>,
    /// Repetition penalty (1: none) [default: generation_config.json, else 1].
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Pictures per model call.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch: u64,
}

impl CaptionArgs {
    fn load(&self, device: &burn::tensor::Device) -> Result<BlipCaptioner> {
        let dir = match &self.captioner {
            Some(d) => d.clone(),
            None => {
                crate::download::resolve_blip_dir(sonic_pipeline::hub::BLIP_BASE_REPO, &self.hub)?
            }
        };
        let overrides = |g: &mut sonic_caption::GenerationConfig| {
            if let Some(b) = self.beams {
                g.num_beams = b as usize;
            }
            if let Some(m) = self.min_length {
                g.min_length = m;
            }
            if let Some(p) = self.repetition_penalty {
                g.repetition_penalty = p;
            }
        };
        let mut captioner = crate::ui::with_spinner("loading the captioner", || {
            BlipCaptioner::from_dir(&dir, &self.prefix, &overrides, device)
        })
        .with_context(|| format!("loading the captioner from {}", dir.display()))?;
        if let Some(n) = self.max_new_tokens {
            captioner.generation.max_length = captioner.prompt_len() + n as usize;
        }
        Ok(captioner)
    }
}

/// Captions `dataset`'s empty captions (all with `overwrite`) and writes it to `out`.
pub fn caption_manifest(
    dataset: &Dataset,
    out: &Path,
    overwrite: bool,
    args: &CaptionArgs,
    device: &burn::tensor::Device,
) -> Result<()> {
    let mut captioner = args.load(device)?;
    let cache_dir = args
        .cache
        .clone()
        .unwrap_or_else(|| out.parent().unwrap_or(Path::new(".")).join("sonic-cache"));
    let mut cache = EmbeddingCache::open(&cache_dir)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("captions [{bar:30}] {pos}/{len} {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (captioned, report) = caption_dataset(
        dataset,
        &mut captioner,
        &mut cache,
        overwrite,
        args.batch as usize,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    captioned.write_csv(out)?;
    println!(
        "wrote {} records to {} ({} captioned: {} computed, {} from the cache; {} kept)",
        captioned.len(),
        out.display(),
        report.filled,
        report.computed,
        report.cached,
        report.kept
    );
    Ok(())
}
