//! Value parsers that list their values, so `--help` shows them and shells complete them:
//! presets, checkpoints and schedulers (the device is in [`crate::device`]).

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use sonic_pipeline::hub::{Checkpoint, Preset};
use sonic_schedulers::SchedulerChoice;

/// `--scheduler`: the names of [`SchedulerChoice`].
pub fn scheduler_parser() -> impl TypedValueParser<Value = SchedulerChoice> {
    PossibleValuesParser::new(
        SchedulerChoice::ALL.map(|c| PossibleValue::new(c.name()).help(c.description())),
    )
    .try_map(|s| s.parse::<SchedulerChoice>())
}

/// `--preset` where one released checkpoint is loaded: landscape or greatest-hits.
pub fn checkpoint_parser() -> impl TypedValueParser<Value = Checkpoint> {
    PossibleValuesParser::new(
        Checkpoint::ALL.map(|c| PossibleValue::new(c.name()).help(checkpoint_help(c))),
    )
    .try_map(|s| s.parse::<Checkpoint>())
}

/// `--preset` of `sonic download`: a checkpoint or `all`.
pub fn preset_parser() -> impl TypedValueParser<Value = Preset> {
    PossibleValuesParser::new(Preset::ALL.map(|p| {
        let help = match p.checkpoints() {
            [one] => checkpoint_help(*one),
            _ => "every released checkpoint",
        };
        PossibleValue::new(p.name()).help(help)
    }))
    .try_map(|s| s.parse::<Preset>())
}

/// One line on what a released checkpoint was trained on.
pub fn checkpoint_help(c: Checkpoint) -> &'static str {
    match c {
        Checkpoint::Landscape => {
            "nature and city sounds to landscapes (the Landscape + Into the Wild data)"
        }
        Checkpoint::GreatestHits => {
            "hitting and scratching sounds to materials (The Greatest Hits data)"
        }
    }
}

/// Parses `--max-memory` (`8G`, `512MiB`, bytes) with the library's rules.
pub fn memory_size(text: &str) -> Result<u64, String> {
    sonic_pipeline::memory::parse_size(text).map_err(|e| e.to_string())
}

/// `--lora FILE[:SCALE]`: a LoRA file and the scale it is merged at (1 when not given).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraArg {
    /// The LoRA file.
    pub path: std::path::PathBuf,
    /// Its scale.
    pub scale: f32,
}

impl std::str::FromStr for LoraArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A trailing `:number` is the scale; any other colon belongs to the path.
        if let Some((path, scale)) = s.rsplit_once(':')
            && let Ok(scale) = scale.trim().parse::<f32>()
        {
            if !scale.is_finite() {
                return Err(format!("the scale of `{s}` is not a finite number"));
            }
            if path.is_empty() {
                return Err(format!("`{s}` names no file"));
            }
            return Ok(Self {
                path: path.into(),
                scale,
            });
        }
        if s.is_empty() {
            return Err("empty --lora".into());
        }
        Ok(Self {
            path: s.into(),
            scale: 1.0,
        })
    }
}

/// The model parts `generate` and `edit` add at load: LoRAs and the decoder.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ModelParts {
    /// A LoRA merged into the model at load, `FILE[:SCALE]` (scale 1 when not given; diffusers,
    /// PEFT or kohya layout, e.g. LCM-LoRA with `--scheduler lcm --steps 4 --guidance 1`);
    /// repeat for several.
    #[arg(long = "lora", value_name = "FILE[:SCALE]")]
    pub lora: Vec<crate::values::LoraArg>,
    /// A tiny autoencoder folder (TAESD: diffusers `AutoencoderTiny`) used instead of the full
    /// VAE: decoding in a fraction of the time, at some cost in detail.
    #[arg(long, value_name = "DIR")]
    pub tiny_vae: Option<std::path::PathBuf>,
    /// Which decoder: `full` (the model's VAE) or `tiny` (TAESD: `--tiny-vae DIR`, else from
    /// the cache, downloaded on first use unless --offline) [default: full; tiny with --fast].
    #[arg(long, value_enum)]
    pub vae: Option<crate::values::VaeChoice>,
}

/// `--vae`: which decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VaeChoice {
    /// The model's own VAE.
    Full,
    /// TAESD (the tiny autoencoder): `--tiny-vae DIR`, else from the Hugging Face cache.
    Tiny,
}

/// The tiny VAE folder a run uses: `--tiny-vae DIR` when given; else, when `--vae tiny` (or
/// `fast` without `--vae full`), TAESD from the hub cache (downloaded on first use unless
/// `--offline`); else none.
pub fn tiny_vae_dir(
    given: Option<&std::path::Path>,
    vae: Option<VaeChoice>,
    fast: bool,
    hub: &crate::download::HubArgs,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    if vae == Some(VaeChoice::Full) {
        return Ok(None);
    }
    if let Some(dir) = given {
        return Ok(Some(dir.to_path_buf()));
    }
    if vae == Some(VaeChoice::Tiny) || fast {
        return Ok(Some(crate::download::resolve_taesd_dir(hub)?));
    }
    Ok(None)
}

/// The pipeline builder with `--lora` files merged and `--tiny-vae` set.
pub fn with_fast_parts(
    pipe: sonic_pipeline::sonic::SonicPipelineBuilder,
    loras: &[LoraArg],
    tiny_vae: Option<&std::path::Path>,
) -> sonic_pipeline::sonic::SonicPipelineBuilder {
    let pipe = loras
        .iter()
        .fold(pipe, |pipe, l| pipe.lora(&l.path, l.scale));
    match tiny_vae {
        Some(dir) => pipe.tiny_vae(dir),
        None => pipe,
    }
}

/// The PNG metadata entries of the LoRAs and tiny VAE a run used (`sonic:lora` as
/// `file:scale` list, `sonic:tiny_vae`); none when there are none.
pub fn lora_metadata(
    loras: &[LoraArg],
    tiny_vae: Option<&std::path::Path>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !loras.is_empty() {
        let list: Vec<String> = loras
            .iter()
            .map(|l| format!("{}:{}", l.path.display(), l.scale))
            .collect();
        out.push(("sonic:lora".to_string(), list.join(",")));
    }
    if let Some(dir) = tiny_vae {
        out.push(("sonic:tiny_vae".to_string(), dir.display().to_string()));
    }
    out
}

#[cfg(test)]
mod lora_arg_tests {
    use super::LoraArg;

    #[test]
    fn file_and_scale_split_at_the_last_numeric_colon() {
        let a: LoraArg = "lcm.safetensors:0.5".parse().unwrap();
        assert_eq!(
            (a.path.to_str().unwrap(), a.scale),
            ("lcm.safetensors", 0.5)
        );
        let b: LoraArg = "dir:x/lcm.safetensors".parse().unwrap();
        assert_eq!(
            (b.path.to_str().unwrap(), b.scale),
            ("dir:x/lcm.safetensors", 1.0)
        );
        assert!("x.safetensors:inf".parse::<LoraArg>().is_err());
        assert!(":0.5".parse::<LoraArg>().is_err());
        assert!("".parse::<LoraArg>().is_err());
    }
}
