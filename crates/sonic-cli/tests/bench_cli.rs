//! `sonic bench`: one JSON line per case with the documented fields, each case in its own
//! process; bad cases and dtypes are refused.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures not found")
}

fn sonic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
}

#[test]
fn bench_prints_one_json_line_per_case() {
    let out = sonic()
        .args([
            "bench",
            "--case",
            "projector,tiny-pipeline",
            "--runs",
            "2",
            "--warmup",
            "0",
        ])
        .arg("--fixtures")
        .arg(fixtures())
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run sonic");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let mut rss = Vec::new();
    for (line, case) in lines.iter().zip(["projector", "tiny-pipeline"]) {
        assert_eq!(line["case"], case);
        assert_eq!(line["dtype"], "f32");
        assert_eq!(line["threads"], 2);
        assert_eq!(line["runs"], 2);
        let median = line["median_s"].as_f64().expect("median_s");
        let min = line["min_s"].as_f64().expect("min_s");
        assert!(min > 0.0 && min <= median, "{line}");
        assert_eq!(line["times_s"].as_array().map(|a| a.len()), Some(2));
        let peak = line["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
        assert!(peak > 1 << 20, "{line}");
        rss.push(peak);
    }
    // Separate processes: the small projector's peak is not the pipeline's.
    assert_ne!(rss[0], rss[1]);
}

#[test]
fn bench_refuses_unknown_cases_and_dtypes() {
    let out = sonic()
        .args(["bench", "--case", "unet-128"])
        .output()
        .expect("run sonic");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown bench case `unet-128`") && err.contains("unet-64"),
        "{err}"
    );

    let out = sonic()
        .args(["bench", "--case", "projector", "--dtype", "f16"])
        .output()
        .expect("run sonic");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // `--dtype` is a value enum: clap names the bad value and lists the good ones.
    assert!(
        err.contains("invalid value 'f16'") && err.contains("f32") && err.contains("bf16"),
        "{err}"
    );
}

/// The toy world from the CLI at two steps per phase: the summary line on stdout, the grid
/// written, and (the run cannot learn at that size) a clear failure naming the bar.
#[test]
fn bench_toy_world_runs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("toy");
    let mut cmd = sonic();
    cmd.args(["bench", "toy-world", "--quick", "--quiet"])
        .arg("--out")
        .arg(&out)
        .arg("--fixtures")
        .arg(fixtures());
    for kv in [
        "train_per_class=2",
        "test_per_class=2",
        "base_steps=2",
        "base_batch=4",
        "stage1_steps=2",
        "stage1_batch=4",
        "stage2_steps=2",
        "stage2_batch=4",
        "sample_steps=2",
    ] {
        cmd.args(["--set", kv]);
    }
    let res = cmd
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run sonic");
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("toy-world: "))
        .unwrap_or_else(|| panic!("no summary line; stdout {stdout}, stderr {stderr}"));
    let field = |name: &str| -> f64 {
        let v = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in `{line}`"));
        v.parse().unwrap()
    };
    let (acc, acc0, secs) = (field("accuracy"), field("accuracy_f0"), field("seconds"));
    assert!((0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&acc0) && secs > 0.0);
    assert!(out.join("toy_world_samples.png").is_file());
    if !res.status.success() {
        assert!(stderr.contains("below the bar"), "stderr: {stderr}");
    }
}

#[test]
fn bench_toy_world_refuses_unknown_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("toy");
    let res = sonic()
        .args(["bench", "toy-world", "--quiet", "--set", "stage3_steps=5"])
        .arg("--out")
        .arg(&out)
        .arg("--fixtures")
        .arg(fixtures())
        .output()
        .expect("run sonic");
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("stage3_steps"), "stderr: {stderr}");
    assert!(!out.exists(), "nothing may be written for a refused run");
}
