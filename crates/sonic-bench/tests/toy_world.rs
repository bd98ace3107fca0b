//! The toy-world benchmark (issue #9).
//!
//! - `toy_world_smoke`: the whole run (data, base model, stage 1, stage 2, guided sampling,
//!   classification, PNG grid) at a few steps, checking that every part fits together; it
//!   cannot check learning at that size.
//! - `toy_world_quick` (ignored: about 3 to 5 minutes in release on 2 cores, far longer in the
//!   dev profile): the CI variant, which must learn: accuracy >= 0.75, accuracy at strength 0
//!   <= 0.5. Run it with
//!   `cargo test --release -p sonic-bench --test toy_world -- --ignored --nocapture`.
//!
//! The full benchmark is `cargo run --release -p sonic-bench --example toy_world`.

use sonic_bench::toy_world::{self, CLASSES, ToyProgress, ToyWorldOptions};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures folder (../shared/fixtures) not found")
}

#[test]
fn toy_world_smoke() {
    let device = sonic_core::device::default_device().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut o = ToyWorldOptions::quick(fixtures(), device);
    o.train_per_class = 2;
    o.test_per_class = 2;
    o.base_steps = 2;
    o.base_batch = 4;
    o.stage1_steps = 2;
    o.stage1_batch = 4;
    o.stage2_steps = 2;
    o.stage2_batch = 4;
    o.sample_steps = 2;
    o.eval_batch = 3; // 8 samples: batches of 3, 3, 2
    o.out_dir = Some(out.path().to_path_buf());
    let base_file = out.path().join("base.safetensors");
    o.base_weights = Some(base_file.clone());
    let mut steps = [0usize; 3];
    let mut phases = Vec::new();
    let report = toy_world::run(&o, &mut |p: &ToyProgress| match p {
        ToyProgress::Step { phase, loss, .. } => {
            assert!(loss.is_finite(), "{phase}: loss {loss}");
            let i = ["base", "stage1", "stage2"]
                .iter()
                .position(|x| x == phase)
                .unwrap();
            steps[i] += 1;
        }
        ToyProgress::PhaseDone { phase, .. } => phases.push(*phase),
        ToyProgress::Phase(_) => {}
    })
    .unwrap();
    assert_eq!(steps, [2, 2, 2]);
    assert_eq!(phases, ["data", "base", "stage1", "stage2", "eval"]);
    let total: usize = report.confusion.iter().flatten().sum();
    let total_f0: usize = report.confusion_f0.iter().flatten().sum();
    let total_text: usize = report.confusion_text.iter().flatten().sum();
    assert_eq!(
        (total, total_f0, total_text),
        (CLASSES * 2, CLASSES * 2, CLASSES * 2)
    );
    for (row, row_f0) in report.confusion.iter().zip(&report.confusion_f0) {
        assert_eq!(row.iter().sum::<usize>(), 2);
        assert_eq!(row_f0.iter().sum::<usize>(), 2);
    }
    let diag: usize = (0..CLASSES).map(|c| report.confusion[c][c]).sum();
    assert_eq!(report.accuracy, diag as f64 / 8.0);
    let line = report.summary_line();
    assert!(line.starts_with("toy-world: accuracy="), "{line}");
    assert!(
        line.contains(" accuracy_f0=") && line.contains(" seconds="),
        "{line}"
    );
    // The grid: 4 rows of 2 + 2 cells of (16 * 4 + 2) pixels, with a one-cell gap.
    let grid = report.grid.clone().unwrap();
    let img = image_size(&grid);
    assert_eq!(img, ((2 * 2 + 1) * 66, 4 * 66));

    // The trained base model was written; a second run loads it instead of training (no base
    // steps) and, everything else being seeded, reproduces the first run's samples.
    assert!(base_file.is_file());
    let mut base_steps = 0;
    let again = toy_world::run(&o, &mut |p: &ToyProgress| {
        if let ToyProgress::Step { phase: "base", .. } = p {
            base_steps += 1;
        }
    })
    .unwrap();
    assert_eq!(base_steps, 0);
    assert_eq!(again.confusion, report.confusion);
    assert_eq!(again.confusion_f0, report.confusion_f0);
    assert_eq!(again.confusion_text, report.confusion_text);
    assert_eq!(again.stage2_loss, report.stage2_loss);
    // A base file of another shape is refused with an error, not a panic.
    o.base_widths = [8, 16];
    let err = toy_world::run(&o, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("base.safetensors") || err.contains("shape"),
        "{err}"
    );
}

/// Width and height from a PNG's IHDR chunk.
fn image_size(path: &std::path::Path) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
    (be(16), be(20))
}

#[test]
#[ignore = "several minutes even in release: cargo test --release -p sonic-bench --test toy_world -- --ignored"]
fn toy_world_quick() {
    let device = sonic_core::device::default_device().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut o = ToyWorldOptions::quick(fixtures(), device);
    o.out_dir = Some(out.path().to_path_buf());
    let report = toy_world::run(&o, &mut |_| {}).unwrap();
    println!("{}", report.summary_line());
    assert!(
        report.passed(&o),
        "{} (bars: accuracy >= {}, accuracy_f0 <= {}); confusion {:?}, at strength 0 {:?}",
        report.summary_line(),
        o.min_accuracy,
        o.max_accuracy_f0,
        report.confusion,
        report.confusion_f0
    );
}
