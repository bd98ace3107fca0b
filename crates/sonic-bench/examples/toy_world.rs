//! The toy-world learnability benchmark (issue #9; see `docs/TRAINING.md`, "Toy world").
//!
//! ```text
//! cargo run --release -p sonic-bench --example toy_world -- [--quick] [--out DIR] [--seed N]
//!     [--fixtures DIR] [--quiet] [--set KEY=VALUE]...
//! cargo run --release -p sonic-bench --example toy_world -- --rescore DIR/toy_world_samples.png \
//!     --seed N [--set KEY=VALUE]...
//! ```
//!
//! The same run is `sonic bench toy-world`; `--set` takes the keys of
//! `ToyWorldOptions::KEYS` (e.g. `--set base_weights=base.safetensors` to train the base model
//! once and reuse it).
//!
//! Prints `toy-world: accuracy=<a> accuracy_f0=<b> seconds=<s>` and writes
//! `DIR/toy_world_samples.png` (default DIR: `target/toy-world`). Exits with status 1 when the
//! run misses its bars (full: accuracy >= 0.95 and accuracy_f0 <= 0.35; quick: 0.75 / 0.5).
//!
//! `--rescore GRID` trains nothing: it scores the samples of a grid an earlier run wrote (8-bit,
//! as the grid stores them) with today's classifier against the prototypes of that run's
//! training pictures (give the run's `--seed` and any `--set` that changed them): the
//! accuracies, the confusion matrix with audio and each sample's class, row by row.

use sonic_bench::toy_world::{self, ToyProgress, ToyWorldOptions};
use std::io::Write;
use std::path::PathBuf;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<(), Box<dyn std::error::Error>> {
    let mut quick = false;
    let mut quiet = false;
    let mut out = PathBuf::from("target/toy-world");
    let mut seed: Option<u64> = None;
    let mut fixtures: Option<PathBuf> = None;
    let mut sets: Vec<(String, String)> = Vec::new();
    let mut rescore: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--quiet" => quiet = true,
            "--out" => out = PathBuf::from(args.next().ok_or("--out needs a folder")?),
            "--seed" => seed = Some(args.next().ok_or("--seed needs a number")?.parse()?),
            "--fixtures" => {
                fixtures = Some(PathBuf::from(
                    args.next().ok_or("--fixtures needs a folder")?,
                ))
            }
            "--rescore" => {
                rescore = Some(PathBuf::from(
                    args.next().ok_or("--rescore needs a grid PNG")?,
                ))
            }
            "--set" => {
                let kv = args.next().ok_or("--set needs KEY=VALUE")?;
                let (k, v) = kv.split_once('=').ok_or("--set needs KEY=VALUE")?;
                sets.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => {
                println!(
                    "toy_world [--quick] [--out DIR] [--seed N] [--fixtures DIR] [--quiet] [--set KEY=VALUE]...\n\
                     toy_world --rescore GRID.png --seed N [--set KEY=VALUE]...\n\
                     KEY: {}",
                    ToyWorldOptions::KEYS.join(", ")
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}` (see --help)").into()),
        }
    }
    if let Some(grid) = rescore {
        // The run's own training pictures make the prototypes: its seed and options.
        let device = sonic_core::device::default_device()?;
        let mut options = ToyWorldOptions::full(PathBuf::new(), device);
        if let Some(s) = seed {
            options.seed = s;
        }
        for (k, v) in &sets {
            options.set(k, v)?;
        }
        let score = toy_world::rescore_grid(&grid, options.seed, options.train_per_class)?;
        println!(
            "toy-world (re-scored {}): accuracy={:.3} accuracy_f0={:.3}",
            grid.display(),
            score.accuracy,
            score.accuracy_f0
        );
        for (class, (row, predicted)) in score.confusion.iter().zip(&score.predicted).enumerate() {
            println!("  class {class}: confusion {row:?} samples {predicted:?}");
        }
        return Ok(());
    }
    let fixtures = match fixtures {
        Some(f) => f,
        None => {
            sonic_core::fixtures::fixtures_root(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
                .ok_or("fixtures folder not found: pass --fixtures DIR")?
        }
    };
    let device = sonic_core::device::default_device()?;
    let mut options = if quick {
        ToyWorldOptions::quick(fixtures, device)
    } else {
        ToyWorldOptions::full(fixtures, device)
    };
    if let Some(s) = seed {
        options.seed = s;
    }
    for (k, v) in &sets {
        options.set(k, v)?;
    }
    options.out_dir = Some(out);
    let mut progress = |p: &ToyProgress| {
        if quiet {
            return;
        }
        match p {
            ToyProgress::Phase(name) => eprintln!("[{name}]"),
            ToyProgress::Step {
                phase,
                step,
                total,
                loss,
            } => {
                if *step == 1 || step % 25 == 0 || step == total {
                    eprintln!("  {phase} {step}/{total} loss {loss:.4}");
                }
            }
            ToyProgress::PhaseDone { phase, seconds } => eprintln!("  {phase}: {seconds:.1} s"),
        }
        let _ = std::io::stderr().flush();
    };
    let report = toy_world::run(&options, &mut progress)?;
    if !quiet {
        eprint!("{}", report.details());
    }
    println!("{}", report.summary_line());
    if !report.passed(&options) {
        eprintln!(
            "below the bar: accuracy >= {} and accuracy_f0 <= {} required",
            options.min_accuracy, options.max_accuracy_f0
        );
        std::process::exit(1);
    }
    Ok(())
}
