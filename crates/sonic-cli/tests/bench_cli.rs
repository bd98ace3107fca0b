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
    assert!(err.contains("unknown --dtype `f16`"), "{err}");
}
