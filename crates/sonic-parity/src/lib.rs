//! Parity with the PyTorch references: one runner per section of a fixture folder's
//! `reference/cases.json`, behind one trait ([`ParitySection`]) and one registry
//! ([`SECTIONS`], [`section`]) used by `sonic parity` and by the tests.
//!
//! Each runner opens what it needs from the fixture folder, replays every case of its section
//! and returns one [`CaseResult`] per compared tensor (ids begin with the section name, e.g.
//! `unet.0.down_blocks.1`), with the section's tolerance. Numeric disagreement shows in the
//! results; an error means the fixture or the model could not be read.
//!
//! ```no_run
//! use sonic_core::fixtures::Fixture;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let fixture = Fixture::open("../shared/fixtures/sd15-tiny".as_ref())?;
//! for name in sonic_parity::fixture_sections(&fixture)? {
//!     let Some(section) = sonic_parity::section(&name) else { continue };
//!     for r in section.run(&fixture, &device)? {
//!         println!("{} {} max_rel={:.3e}", if r.passed() { "ok" } else { "FAIL" }, r.id, r.cmp.max_rel);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod audio;
pub mod caption;
pub mod clip;
pub mod eval;
pub mod lora;
pub mod pipeline;
pub mod projector;
pub mod schedulers;
pub mod unet;
pub mod vae;

use burn::tensor::Device;
use sonic_core::fixtures::{CaseResult, Fixture};

/// Everything that can stop a section from running: a fixture that cannot be read or does not
/// follow the schema, or a model that cannot be built from it.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// A fixture case lacks a field, has one of the wrong type or asks for something these
    /// runners do not implement.
    #[error("fixture case `{case}`: {message}")]
    Fixture {
        /// The case (or section) name.
        case: String,
        /// What is wrong with it.
        message: String,
    },
    /// Files, fixture tensors, readback.
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// The CLAP audio encoder.
    #[error(transparent)]
    Audio(#[from] sonic_audio::AudioError),
    /// The CLIP tokenizer or text encoder.
    #[error(transparent)]
    Clip(#[from] sonic_clip::ClipError),
    /// The VAE.
    #[error(transparent)]
    Vae(#[from] sonic_vae::VaeError),
    /// The UNet.
    #[error(transparent)]
    UNet(#[from] sonic_unet::UNetError),
    /// The audio projector.
    #[error(transparent)]
    Projector(#[from] sonic_projector::ProjectorError),
    /// A scheduler.
    #[error(transparent)]
    Scheduler(#[from] sonic_schedulers::SchedulerError),
    /// A pipeline.
    #[error(transparent)]
    Pipeline(#[from] sonic_pipeline::PipelineError),
    /// An evaluation model or metric.
    #[error(transparent)]
    Eval(#[from] sonic_eval::EvalError),
    /// The captioner (BLIP).
    #[error(transparent)]
    Caption(#[from] sonic_caption::CaptionError),
}

impl ParityError {
    /// A [`ParityError::Fixture`].
    pub fn fixture(case: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Fixture {
            case: case.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`ParityError`].
pub type Result<T, E = ParityError> = std::result::Result<T, E>;

/// One section of the fixture format.
pub trait ParitySection: Sync {
    /// The key of the section in `cases.json`.
    fn name(&self) -> &'static str;

    /// Runs every case of the section (none when the fixture lacks it).
    fn run(&self, fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>>;
}

/// A section run by a function.
pub struct Runner {
    /// The key of the section in `cases.json`.
    pub name: &'static str,
    /// The runner.
    pub run: fn(&Fixture, &Device) -> Result<Vec<CaseResult>>,
}

impl ParitySection for Runner {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&self, fixture: &Fixture, device: &Device) -> Result<Vec<CaseResult>> {
        (self.run)(fixture, device)
    }
}

/// A case's id (its `id` field, else its index) and tolerance (its `tol` field, else
/// `default_tol`).
pub fn case_id_and_tol(case: &serde_json::Value, index: usize, default_tol: f64) -> (String, f64) {
    let id = case
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| index.to_string(), str::to_string);
    let tol = case
        .get("tol")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(default_tol);
    (id, tol)
}

/// Every section these runners cover.
pub static SECTIONS: &[&dyn ParitySection] = &[
    &Runner {
        name: "audio_clips",
        run: audio::run_audio_clips,
    },
    &Runner {
        name: "resample",
        run: audio::run_resample,
    },
    &Runner {
        name: "repeat_pad",
        run: audio::run_repeat_pad,
    },
    &Runner {
        name: "clap_frontend",
        run: audio::run_clap_frontend,
    },
    &Runner {
        name: "clap_cnn14",
        run: audio::run_clap_cnn14,
    },
    &Runner {
        name: "clap_projection",
        run: audio::run_clap_projection,
    },
    &Runner {
        name: "clap_e2e",
        run: audio::run_clap_e2e,
    },
    &Runner {
        name: "text_encoder",
        run: clip::run_text_encoder,
    },
    &Runner {
        name: "vae",
        run: vae::run_vae,
    },
    &Runner {
        name: "vae_tiny",
        run: vae::run_vae_tiny,
    },
    &Runner {
        name: "unet",
        run: unet::run_unet,
    },
    &Runner {
        name: "unet_lora",
        run: lora::run_unet_lora,
    },
    &Runner {
        name: "text_encoder_lora",
        run: lora::run_text_encoder_lora,
    },
    &Runner {
        name: "projector",
        run: projector::run_projector,
    },
    &Runner {
        name: "pipeline",
        run: pipeline::run_pipeline,
    },
    &Runner {
        name: "lcm_pipeline",
        run: pipeline::run_lcm_pipeline,
    },
    &Runner {
        name: "clip_vision",
        run: eval::clip::run_clip_vision,
    },
    &Runner {
        name: "clip_image_preprocess",
        run: eval::clip::run_clip_image_preprocess,
    },
    &Runner {
        name: "clip_text",
        run: eval::clip::run_clip_text,
    },
    &Runner {
        name: "clip_score",
        run: eval::clip::run_clip_score,
    },
    &Runner {
        name: "inception",
        run: eval::fid::run_inception,
    },
    &Runner {
        name: "fid",
        run: eval::fid::run_fid,
    },
    &Runner {
        name: "wav2clip",
        run: eval::wav2clip::run_wav2clip,
    },
    &Runner {
        name: "lpips",
        run: eval::lpips::run_lpips,
    },
    &Runner {
        name: "blip_vision",
        run: caption::run_blip_vision,
    },
    &Runner {
        name: "blip_image_preprocess",
        run: caption::run_blip_image_preprocess,
    },
    &Runner {
        name: "blip_logits",
        run: caption::run_blip_logits,
    },
    &Runner {
        name: "blip_generate",
        run: caption::run_blip_generate,
    },
    &Runner {
        name: "schedulers",
        run: schedulers::run_schedulers,
    },
    &Runner {
        name: "ddpm_training",
        run: schedulers::run_ddpm_training,
    },
];

/// The runner of a section, by its key in `cases.json` (`None`: not implemented).
pub fn section(name: &str) -> Option<&'static dyn ParitySection> {
    SECTIONS.iter().copied().find(|s| s.name() == name)
}

/// Top-level keys of `cases.json` that describe the fixture rather than hold cases.
pub const METADATA_KEYS: &[&str] = &[
    "variant",
    "dtype",
    "versions",
    "tensors",
    "unet_adapter_effect_maxabs",
];

/// The sections of a fixture, in the order of its `cases.json` (keys starting with `_` and
/// [`METADATA_KEYS`] left out).
pub fn fixture_sections(fixture: &Fixture) -> Result<Vec<String>> {
    let obj = fixture.cases.as_object().ok_or_else(|| {
        ParityError::fixture(
            fixture
                .dir
                .join("reference/cases.json")
                .display()
                .to_string(),
            "not a JSON object",
        )
    })?;
    Ok(obj
        .keys()
        .filter(|k| !k.starts_with('_') && !METADATA_KEYS.contains(&k.as_str()))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_is_registered_once() {
        let mut names: Vec<&str> = SECTIONS.iter().map(|s| s.name()).collect();
        for name in audio::SECTIONS {
            assert!(section(name).is_some(), "{name}");
        }
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a section is registered twice");
        assert!(section("no_such_section").is_none());
    }
}
