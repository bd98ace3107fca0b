//! `sonic bench toy-world`: the learnability benchmark of the training recipe (issue #9; see
//! `docs/TRAINING.md`, "Toy world"), with a progress bar per phase.

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sonic_bench::toy_world::video::ToyVideoOptions;
use sonic_bench::toy_world::{self, ToyProgress, ToyWorldOptions};
use std::path::PathBuf;

/// Arguments of `sonic bench toy-world`.
#[derive(clap::Args, Debug, Clone)]
pub struct ToyWorldArgs {
    /// The shorter CI variant (bars: accuracy >= 0.75, accuracy at strength 0 <= 0.5).
    #[arg(long)]
    pub quick: bool,
    /// Folder for `toy_world_samples.png`.
    #[arg(long, default_value = "toy-world")]
    pub out: PathBuf,
    /// Seed of the world, the initial weights and the sampling noise.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides one option, `KEY=VALUE` (repeatable; for experiments: the defaults are the
    /// benchmark). Keys: seed, train_per_class, test_per_class, base_widths, base_steps,
    /// base_batch, base_lr, caption_drop, standardize_captions, base_weights, stage1_steps,
    /// stage1_batch, stage1_lr, token_weight_centre, token_weight_width, stage2_steps,
    /// stage2_batch, stage2_lr, audio_drop, stage2_train_projector, adapters_down,
    /// sample_steps, guidance, eval_batch.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// The fixture folder holding `sd15-tiny` and `sonic-tiny` (default: `../shared/fixtures`
    /// or `$SONIC_FIXTURES`).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// The device: flex, ndarray, wgpu, wgpu-cpu, cuda[:N], metal.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The options of a run from the arguments.
fn options(args: &ToyWorldArgs) -> Result<ToyWorldOptions> {
    let fixtures = crate::bench::fixtures_dir(args.fixtures.as_deref())?;
    let device = sonic_core::device::parse_device(&args.device)?;
    let mut options = if args.quick {
        ToyWorldOptions::quick(fixtures, device)
    } else {
        ToyWorldOptions::full(fixtures, device)
    };
    if let Some(seed) = args.seed {
        options.seed = seed;
    }
    for kv in &args.sets {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set `{kv}`: expected KEY=VALUE"))?;
        options.set(k, v)?;
    }
    options.out_dir = Some(args.out.clone());
    Ok(options)
}

/// A progress bar per phase on stderr (nothing when `quiet`).
fn progress_bars(quiet: bool) -> impl FnMut(&ToyProgress) {
    let mut bar: Option<ProgressBar> = None;
    move |p: &ToyProgress| {
        if quiet {
            return;
        }
        match p {
            ToyProgress::Phase(name) => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:7} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(name.to_string());
                bar = Some(b);
            }
            ToyProgress::Step {
                step, total, loss, ..
            } => {
                if let Some(b) = &bar {
                    b.set_length(*total as u64);
                    b.set_position(*step as u64);
                    if loss.is_finite() {
                        b.set_message(format!("loss {loss:.4}"));
                    }
                }
            }
            ToyProgress::PhaseDone { phase, seconds } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                eprintln!("{phase}: {seconds:.1} s");
            }
        }
    }
}

/// Runs the benchmark; prints the summary line on stdout and fails when a bar is missed.
pub fn run(args: &ToyWorldArgs) -> Result<()> {
    let options = options(args)?;
    let mut progress = progress_bars(args.quiet);
    let report = toy_world::run(&options, &mut progress)?;
    if !args.quiet {
        eprint!("{}", report.details());
    }
    println!("{}", report.summary_line());
    if !report.passed(&options) {
        bail!(
            "below the bar: accuracy >= {} and accuracy_f0 <= {} required",
            options.min_accuracy,
            options.max_accuracy_f0
        );
    }
    Ok(())
}

/// Runs `sonic bench toy-video`: trains the toy world as `toy-world` does, renders a clip
/// whose class changes every 2 s, prints `toy-video: frame_accuracy=<a> frames=<n>
/// seconds=<s>` and writes `OUT/toy_video.mp4`; fails below frame accuracy 0.9.
pub fn run_video(args: &ToyWorldArgs) -> Result<()> {
    let world = options(args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let options = ToyVideoOptions::full(world);
    let mut progress = progress_bars(args.quiet);
    let report = toy_world::video::run(&options, &mut progress)?;
    if !args.quiet {
        let drawn: String = report
            .frame_classes
            .iter()
            .map(|(t, d)| match t {
                None => '.',
                Some(t) if t == d => '+',
                Some(_) => 'x',
            })
            .collect();
        eprintln!("frames (+ right, x wrong, . excluded near a change): {drawn}");
        if let Some(v) = &report.video {
            eprintln!("video: {}", v.display());
        }
    }
    println!("{}", report.summary_line());
    if report.frame_accuracy < options.min_accuracy {
        bail!(
            "below the bar: frame_accuracy >= {} required",
            options.min_accuracy
        );
    }
    Ok(())
}
