//! Shared by the examples: the pipeline from a released preset (downloaded into the Hugging
//! Face cache on first use) or from local files.

use sonic_diffusion::pipeline::hub::Checkpoint;
use sonic_diffusion::pipeline::sonic::SonicPipeline;

/// The models the example's arguments name, consumed from the front of `args`:
/// `--preset landscape|greatest-hits`, or `MODEL_DIR CLAP PROJECTOR ADAPTERS` optionally
/// followed by `--projector-config FILE` (when the projector weights do not state their head
/// count, as the tiny test fixtures).
pub fn pipeline(
    args: &mut Vec<String>,
    usage: &str,
) -> Result<SonicPipeline, Box<dyn std::error::Error>> {
    let device = sonic_diffusion::core::device::default_device()?;
    let builder = SonicPipeline::builder().device(device);
    let take = |args: &mut Vec<String>| -> Result<String, Box<dyn std::error::Error>> {
        if args.is_empty() {
            return Err(format!("usage: {usage}").into());
        }
        Ok(args.remove(0))
    };
    let first = take(args)?;
    let builder = if first == "--preset" {
        let name: Checkpoint = take(args)?.parse()?;
        builder.preset(name)
    } else {
        let builder = builder
            .model(first)
            .clap(take(args)?)
            .projector(take(args)?)
            .adapters(take(args)?);
        if args.first().map(String::as_str) == Some("--projector-config") {
            take(args)?;
            builder.projector_config(take(args)?)
        } else {
            builder
        }
    };
    Ok(builder.build()?)
}
