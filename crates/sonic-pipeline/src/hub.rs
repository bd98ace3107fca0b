//! Downloading SD v1.4, MS-CLAP and the released SonicDiffusion checkpoints from the Hugging
//! Face hub into the standard Hugging Face cache, and finding them there offline.
//!
//! ```no_run
//! use sonic_pipeline::hub::{HubOptions, Preset, resolve};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = HubOptions::from_env()?; // HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE
//! let files = resolve(Preset::Landscape, &options, &mut |p| {
//!     eprintln!("{} {}: {}/{:?}", p.repo, p.file, p.bytes_done, p.total)
//! })?;
//! println!("SD folder {}", files.sd_dir.display());
//! # Ok(()) }
//! ```
//!
//! # Files
//!
//! | repository | files |
//! |---|---|
//! | model `CompVis/stable-diffusion-v1-4` | `model_index.json`, `scheduler/scheduler_config.json`, `tokenizer/{tokenizer_config.json, vocab.json, merges.txt, special_tokens_map.json}`, `{text_encoder,unet,vae}/config.json` and their weights (`model.safetensors` / `diffusion_pytorch_model.safetensors`, or the `.fp16.safetensors` variants) |
//! | model `microsoft/msclap` | `CLAP_weights_2022.pth` |
//! | space `burakcanbiner/SonicDiffusion` | `ckpts/landscape.pt`, `ckpts/audio_projector_landscape.pth` (landscape); `ckpts/greatest_hits.pt`, `ckpts/audio_projector_gh.pth` (greatest hits) |
//! | model `latent-consistency/lcm-lora-sdv1-5` | `pytorch_lora_weights.safetensors` (fast generation, [`resolve_fast`]) |
//! | model `madebyollin/taesd` | `config.json`, `diffusion_pytorch_model.safetensors` (fast generation) |
//!
//! The client itself (cache layout, resumable and verified transfers, offline lookups) is the
//! `sonic-hub` crate, re-exported here; this module holds the catalogue: which repositories and
//! files the presets need, and [`resolve`], which fetches a whole preset.
//!
//! All files of one repository are taken from one commit: the first request resolves the
//! revision (`main`) to a commit, the rest are fetched at that commit, and the returned
//! [`RepoSnapshot::dir`] is a diffusers-layout folder.

pub use sonic_hub::*;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Stable Diffusion v1.4 (diffusers layout).
pub const SD_REPO: &str = "CompVis/stable-diffusion-v1-4";
/// Microsoft CLAP.
pub const CLAP_REPO: &str = "microsoft/msclap";
/// The CLAP 2022 checkpoint in [`CLAP_REPO`].
pub const CLAP_FILE: &str = "CLAP_weights_2022.pth";
/// The SonicDiffusion space holding the released projector and adapter checkpoints.
pub const SONIC_SPACE: &str = "burakcanbiner/SonicDiffusion";
/// LCM-LoRA for SD 1.5 (it loads on SD 1.4, the same architecture): 4-8 step sampling.
pub const LCM_LORA_REPO: &str = "latent-consistency/lcm-lora-sdv1-5";
/// The LoRA file in [`LCM_LORA_REPO`].
pub const LCM_LORA_FILE: &str = "pytorch_lora_weights.safetensors";
/// TAESD, the tiny autoencoder of SD 1.x / 2.x latents (diffusers `AutoencoderTiny`).
pub const TAESD_REPO: &str = "madebyollin/taesd";
/// OpenAI CLIP ViT-B/32, the image and text towers of the evaluation metrics (CLIP score, IIS,
/// AIC, and AIS, whose Wav2CLIP audio embeddings live in this model's image space).
pub const CLIP_EVAL_REPO: &str = "openai/clip-vit-base-patch32";
/// BLIP base, the image captioner of `sonic train caption`.
pub const BLIP_BASE_REPO: &str = "Salesforce/blip-image-captioning-base";
/// BLIP large, a larger captioner.
pub const BLIP_LARGE_REPO: &str = "Salesforce/blip-image-captioning-large";
/// OpenAI CLIP ViT-L/14 (SD 1.x's text encoder's full model), an alternative metric model.
pub const CLIP_LARGE_REPO: &str = "openai/clip-vit-large-patch14";

/// The repositories the presets fetch from, as constructors on [`HubRepo`]
/// (`HubRepo::stable_diffusion()`).
pub trait KnownRepos {
    /// `CompVis/stable-diffusion-v1-4`.
    fn stable_diffusion() -> Self;
    /// `microsoft/msclap`.
    fn clap() -> Self;
    /// The space `burakcanbiner/SonicDiffusion`.
    fn sonic_space() -> Self;
    /// `latent-consistency/lcm-lora-sdv1-5`.
    fn lcm_lora() -> Self;
    /// `madebyollin/taesd`.
    fn taesd() -> Self;
}

impl KnownRepos for HubRepo {
    fn stable_diffusion() -> Self {
        Self::model(SD_REPO)
    }

    fn clap() -> Self {
        Self::model(CLAP_REPO)
    }

    fn sonic_space() -> Self {
        Self::space(SONIC_SPACE)
    }

    fn lcm_lora() -> Self {
        Self::model(LCM_LORA_REPO)
    }

    fn taesd() -> Self {
        Self::model(TAESD_REPO)
    }
}

/// One released SonicDiffusion checkpoint (projector + adapters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// Trained on landscape videos.
    Landscape,
    /// Trained on the Greatest Hits dataset.
    GreatestHits,
}

impl Checkpoint {
    /// Both checkpoints.
    pub const ALL: [Checkpoint; 2] = [Checkpoint::Landscape, Checkpoint::GreatestHits];

    /// The adapter checkpoint in the space (`ckpts/landscape.pt`).
    pub fn adapters_file(self) -> &'static str {
        match self {
            Checkpoint::Landscape => "ckpts/landscape.pt",
            Checkpoint::GreatestHits => "ckpts/greatest_hits.pt",
        }
    }

    /// The projector checkpoint in the space (`ckpts/audio_projector_landscape.pth`).
    pub fn projector_file(self) -> &'static str {
        match self {
            Checkpoint::Landscape => "ckpts/audio_projector_landscape.pth",
            Checkpoint::GreatestHits => "ckpts/audio_projector_gh.pth",
        }
    }

    /// `landscape` / `greatest-hits`.
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Landscape => "landscape",
            Checkpoint::GreatestHits => "greatest-hits",
        }
    }

    /// The preset that fetches this checkpoint alone.
    pub fn preset(self) -> Preset {
        match self {
            Checkpoint::Landscape => Preset::Landscape,
            Checkpoint::GreatestHits => Preset::GreatestHits,
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Checkpoint {
    type Err = HubError;

    /// `landscape`, `greatest-hits` (aliases `greatest_hits`, `gh`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<Preset>() {
            Ok(Preset::Landscape) => Ok(Checkpoint::Landscape),
            Ok(Preset::GreatestHits) => Ok(Checkpoint::GreatestHits),
            _ => Err(HubError::InvalidOption {
                name: "checkpoint",
                value: s.to_string(),
                reason: "expected landscape or greatest-hits",
            }),
        }
    }
}

/// What to fetch: SD v1.4 + CLAP + one or both released checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preset {
    /// The landscape checkpoint.
    #[default]
    Landscape,
    /// The greatest-hits checkpoint.
    GreatestHits,
    /// Both checkpoints.
    All,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::Landscape, Preset::GreatestHits, Preset::All];

    /// `landscape`, `greatest-hits`, `all` (what [`FromStr`] accepts, with `greatest_hits` and
    /// `gh` as aliases).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Landscape => "landscape",
            Preset::GreatestHits => "greatest-hits",
            Preset::All => "all",
        }
    }

    /// The released checkpoints this preset needs.
    pub fn checkpoints(self) -> &'static [Checkpoint] {
        match self {
            Preset::Landscape => &[Checkpoint::Landscape],
            Preset::GreatestHits => &[Checkpoint::GreatestHits],
            Preset::All => &Checkpoint::ALL,
        }
    }

    /// Every file this preset needs, per repository, in download order.
    pub fn files(self, fp16: bool) -> Vec<(HubRepo, Vec<String>)> {
        let space = self
            .checkpoints()
            .iter()
            .flat_map(|c| {
                [
                    c.projector_file().to_string(),
                    c.adapters_file().to_string(),
                ]
            })
            .collect();
        vec![
            (HubRepo::stable_diffusion(), sd_files(fp16)),
            (HubRepo::clap(), vec![CLAP_FILE.to_string()]),
            (HubRepo::sonic_space(), space),
        ]
    }

    /// The command that downloads this preset (`sonic download --preset landscape`).
    pub fn download_command(self, fp16: bool) -> String {
        format!(
            "sonic download --preset {}{}",
            self.name(),
            if fp16 { " --fp16" } else { "" }
        )
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = HubError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "landscape" => Ok(Preset::Landscape),
            "greatest-hits" | "greatest_hits" | "greatesthits" | "gh" => Ok(Preset::GreatestHits),
            "all" => Ok(Preset::All),
            _ => Err(HubError::InvalidOption {
                name: "preset",
                value: s.to_string(),
                reason: "expected landscape, greatest-hits or all",
            }),
        }
    }
}

/// The Stable Diffusion v1.4 files (`fp16`: the `.fp16.safetensors` weight variants).
pub fn sd_files(fp16: bool) -> Vec<String> {
    let weights = if fp16 {
        "fp16.safetensors"
    } else {
        "safetensors"
    };
    let mut files: Vec<String> = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "text_encoder/config.json",
        "unet/config.json",
        "vae/config.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    files.push(format!("text_encoder/model.{weights}"));
    files.push(format!("unet/diffusion_pytorch_model.{weights}"));
    files.push(format!("vae/diffusion_pytorch_model.{weights}"));
    files
}

/// The local paths of one released checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFiles {
    /// Which checkpoint.
    pub checkpoint: Checkpoint,
    /// The audio projector (`audio_projector_*.pth`).
    pub projector: PathBuf,
    /// The gated adapters (`landscape.pt` / `greatest_hits.pt`).
    pub adapters: PathBuf,
}

/// Everything a preset needs, as local paths in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The Stable Diffusion folder (diffusers layout; load with
    /// [`crate::StableDiffusion::from_dir`]).
    pub sd_dir: PathBuf,
    /// `CLAP_weights_2022.pth`.
    pub clap: PathBuf,
    /// The released checkpoints of the preset, in [`Preset::checkpoints`] order.
    pub checkpoints: Vec<CheckpointFiles>,
}

impl ModelFiles {
    /// The paths of one checkpoint, if the preset included it.
    pub fn checkpoint(&self, which: Checkpoint) -> Option<&CheckpointFiles> {
        self.checkpoints.iter().find(|c| c.checkpoint == which)
    }
}

/// Makes every file of `plan` available: from the cache when a cached snapshot holds a
/// repository's files, else downloading what is missing; offline, the missing files of every
/// repository are listed together, with `hint` (the command that fetches them).
fn fetch_plan(
    plan: &[(HubRepo, Vec<String>)],
    options: &HubOptions,
    hint: &str,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<Vec<RepoSnapshot>, HubError> {
    let mut snapshots = Vec::with_capacity(plan.len());
    if options.offline {
        let mut missing = Vec::new();
        for (repo, files) in plan {
            match cached_snapshot(repo, files, &options.cache_dir)? {
                Ok(s) => {
                    report_cached(&s, files, progress);
                    snapshots.push(s);
                }
                Err(m) => missing.extend(m),
            }
        }
        if !missing.is_empty() {
            return Err(HubError::Missing {
                missing,
                cache_dir: options.cache_dir.clone(),
                hint: hint.to_string(),
            });
        }
    } else {
        for (repo, files) in plan {
            snapshots.push(fetch(repo, files, options, progress)?);
        }
    }
    Ok(snapshots)
}

/// The fast-generation extras: LCM-LoRA and TAESD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastFiles {
    /// `pytorch_lora_weights.safetensors` of [`LCM_LORA_REPO`] (kohya layout).
    pub lcm_lora: PathBuf,
    /// The diffusers `AutoencoderTiny` folder of [`TAESD_REPO`].
    pub taesd_dir: PathBuf,
}

/// The files of the fast-generation extras, per repository: LCM-LoRA, then TAESD.
pub fn fast_files() -> Vec<(HubRepo, Vec<String>)> {
    let mut files = vec![(HubRepo::lcm_lora(), vec![LCM_LORA_FILE.to_string()])];
    files.extend(taesd_files());
    files
}

/// The files of TAESD.
pub fn taesd_files() -> Vec<(HubRepo, Vec<String>)> {
    vec![(
        HubRepo::taesd(),
        vec![
            "config.json".to_string(),
            "diffusion_pytorch_model.safetensors".to_string(),
        ],
    )]
}

/// The files of a transformers CLIP repository the metrics read: both towers' weights and
/// config, the image processor's config and the tokenizer.
pub fn clip_files(repo: &str) -> Vec<(HubRepo, Vec<String>)> {
    vec![(
        HubRepo::model(repo),
        [
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "vocab.json",
            "merges.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ]
        .map(String::from)
        .to_vec(),
    )]
}

/// Makes a CLIP repository ([`CLIP_EVAL_REPO`], [`CLIP_LARGE_REPO`] or another with the same
/// files) available locally and returns its folder, which `ClipVisionModelWithProjection`,
/// `ClipTextModelWithProjection`, `ClipImageProcessor` and `ClipTokenizer` all read.
pub fn resolve_clip(
    repo: &str,
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, HubError> {
    fetch_folder(
        &clip_files(repo),
        options,
        "sonic download --eval",
        progress,
    )
}

/// The files of a transformers BLIP captioning repository: weights, config, the image
/// processor's config and the WordPiece tokenizer.
pub fn blip_files(repo: &str) -> Vec<(HubRepo, Vec<String>)> {
    vec![(
        HubRepo::model(repo),
        [
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
            "vocab.txt",
        ]
        .map(String::from)
        .to_vec(),
    )]
}

/// Makes a BLIP captioning repository ([`BLIP_BASE_REPO`], [`BLIP_LARGE_REPO`]) available
/// locally and returns its folder.
pub fn resolve_blip(
    repo: &str,
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, HubError> {
    fetch_folder(
        &blip_files(repo),
        options,
        "sonic download --caption",
        progress,
    )
}

/// Makes TAESD alone available locally (as [`resolve_fast`] does) and returns its folder.
pub fn resolve_taesd(
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, HubError> {
    fetch_folder(&taesd_files(), options, "sonic download --fast", progress)
}

/// [`fetch_plan`] for a plan of one repository: its snapshot folder.
fn fetch_folder(
    plan: &[(HubRepo, Vec<String>)],
    options: &HubOptions,
    hint: &str,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<PathBuf, HubError> {
    fetch_plan(plan, options, hint, progress)?
        .into_iter()
        .next()
        .map(|s| s.dir)
        .ok_or_else(|| HubError::Protocol {
            url: options.endpoint.clone(),
            message: "internal: a one-repository plan resolved to no snapshot".into(),
        })
}

/// Makes LCM-LoRA and TAESD available locally (as [`resolve`] does for a preset) and returns
/// their paths.
pub fn resolve_fast(
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<FastFiles, HubError> {
    let snapshots = fetch_plan(&fast_files(), options, "sonic download --fast", progress)?;
    let [lora, taesd] =
        <[RepoSnapshot; 2]>::try_from(snapshots).map_err(|_| HubError::Protocol {
            url: options.endpoint.clone(),
            message: "internal: the fast extras span two repositories".into(),
        })?;
    Ok(FastFiles {
        lcm_lora: lora.path(LCM_LORA_FILE),
        taesd_dir: taesd.dir,
    })
}

/// Makes every file of `preset` available locally and returns their paths: from the cache
/// when a cached snapshot holds them all, else downloading what is missing (resuming partial
/// transfers, verifying size and sha256). With `options.offline`, only the cache is used and
/// missing files give [`HubError::Missing`], which lists them and names the
/// `sonic download` command that fetches them.
pub fn resolve(
    preset: Preset,
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<ModelFiles, HubError> {
    let plan = preset.files(options.fp16);
    let snapshots = fetch_plan(
        &plan,
        options,
        &preset.download_command(options.fp16),
        progress,
    )?;
    let [sd, clap, space] =
        <[RepoSnapshot; 3]>::try_from(snapshots).map_err(|_| HubError::Protocol {
            url: options.endpoint.clone(),
            message: "internal: a preset spans three repositories".into(),
        })?;
    Ok(ModelFiles {
        sd_dir: sd.dir,
        clap: clap.path(CLAP_FILE),
        checkpoints: preset
            .checkpoints()
            .iter()
            .map(|&c| CheckpointFiles {
                checkpoint: c,
                projector: space.path(c.projector_file()),
                adapters: space.path(c.adapters_file()),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_name_their_files() {
        assert_eq!("landscape".parse::<Preset>().unwrap(), Preset::Landscape);
        assert_eq!(
            "greatest-hits".parse::<Preset>().unwrap(),
            Preset::GreatestHits
        );
        assert_eq!("GH".parse::<Preset>().unwrap(), Preset::GreatestHits);
        assert_eq!("all".parse::<Preset>().unwrap(), Preset::All);
        assert!("nope".parse::<Preset>().is_err());
        assert_eq!(
            "gh".parse::<Checkpoint>().unwrap(),
            Checkpoint::GreatestHits
        );
        assert!("all".parse::<Checkpoint>().is_err());
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        let all = Preset::All.files(false);
        assert_eq!(all[0].0.id, SD_REPO);
        assert_eq!(all[0].1.len(), 12);
        assert!(
            all[0]
                .1
                .contains(&"unet/diffusion_pytorch_model.safetensors".to_string())
        );
        assert_eq!(all[1].1, vec![CLAP_FILE.to_string()]);
        assert_eq!(all[2].0.kind, RepoKind::Space);
        assert_eq!(all[2].1.len(), 4);
        let land = Preset::Landscape.files(true);
        assert!(
            land[0]
                .1
                .contains(&"vae/diffusion_pytorch_model.fp16.safetensors".to_string())
        );
        assert!(
            !land[0]
                .1
                .contains(&"vae/diffusion_pytorch_model.safetensors".to_string())
        );
        assert_eq!(
            land[2].1,
            vec!["ckpts/audio_projector_landscape.pth", "ckpts/landscape.pt"]
        );
        let gh = Preset::GreatestHits.files(false);
        assert_eq!(
            gh[2].1,
            vec!["ckpts/audio_projector_gh.pth", "ckpts/greatest_hits.pt"]
        );
        assert_eq!(
            Preset::GreatestHits.download_command(false),
            "sonic download --preset greatest-hits"
        );
    }

    #[test]
    fn urls_follow_the_hub() {
        let e = "https://huggingface.co/";
        assert_eq!(
            HubRepo::stable_diffusion().file_url(e, "main", "unet/config.json"),
            "https://huggingface.co/CompVis/stable-diffusion-v1-4/resolve/main/unet/config.json"
        );
        assert_eq!(
            HubRepo::sonic_space().file_url(e, "main", "ckpts/landscape.pt"),
            "https://huggingface.co/spaces/burakcanbiner/SonicDiffusion/resolve/main/ckpts/landscape.pt"
        );
        assert_eq!(
            HubRepo::clap().file_url(e, "refs/pr/1", CLAP_FILE),
            "https://huggingface.co/microsoft/msclap/resolve/refs%2Fpr%2F1/CLAP_weights_2022.pth"
        );
        assert_eq!(
            HubRepo::sonic_space().cache_folder_name(),
            "spaces--burakcanbiner--SonicDiffusion"
        );
        assert_eq!(
            HubRepo::sonic_space().to_string(),
            "spaces/burakcanbiner/SonicDiffusion"
        );
    }
}
