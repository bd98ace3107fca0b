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
