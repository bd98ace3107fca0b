//! `sonic eval` end to end on the tiny fixtures: pictures generated for a five-clip manifest,
//! every CLIP metric and FID (InceptionV3 with the formula weights of
//! tests-data/eval-metrics/fid) written to metrics.json / items.csv / report.html; a rerun
//! resumes (no picture regenerated, the same numbers); `--images` scores the same pictures
//! under other names with the same numbers; bad metric inputs fail before generating.

mod common;

use common::{dataset, fixtures, tiny_models};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sonic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
}

fn inception_weights(dir: &Path) -> PathBuf {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests-data/eval-metrics/fid/inception/formula.json");
    let spec = sonic_core::formula::FormulaSpec::from_file(&spec).expect("the FID fixture's spec");
    let out = dir.join("inception.safetensors");
    spec.write_safetensors(&out).unwrap();
    out
}

fn run(args: &[&std::ffi::OsStr]) -> (String, String) {
    let out = sonic().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sonic eval failed:\n{stderr}");
    (stdout, stderr)
}

fn metrics(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn eval_generates_scores_resumes_and_rescores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let manifest = dataset(d);
    let inception = inception_weights(d);
    let out = d.join("eval");
    let clip = fixtures().join("eval-tiny");
    let mut args: Vec<std::ffi::OsString> = [
        "eval", "--steps", "2", "--width", "32", "--height", "32", "--batch", "2", "--seed", "3",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.extend(tiny_models());
    for (flag, path) in [
        ("--manifest", &manifest),
        ("--out", &out),
        ("--clip", &clip),
        ("--inception", &inception),
    ] {
        args.push(flag.into());
        args.push(path.into());
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (stdout, _) = run(&refs);
    assert!(stdout.contains("items=5"), "{stdout}");
    let first = metrics(&out);
    let s = &first["summary"];
    assert_eq!(s["items"], 5);
    for key in ["clip_score", "iis", "aic", "fid"] {
        let v = s[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {s}"));
        assert!(v.is_finite(), "{key} = {v}");
    }
    assert!(s["ais"].is_null() && s["lpips"].is_null(), "{s}");
    assert!(s["fid"].as_f64().unwrap() > 0.0);
    let iis = s["iis"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&iis));
    assert_eq!(first["class_names"], serde_json::json!(["x", "y"]));
    let images: Vec<PathBuf> = std::fs::read_dir(out.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(images.len(), 5, "{images:?}");
    let csv = std::fs::read_to_string(out.join("items.csv")).unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for item in first["items"].as_array().unwrap() {
        assert!(html.contains(item["key"].as_str().unwrap()));
    }

    // A rerun keeps the pictures and gives the same numbers.
    let before: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let (_, stderr) = run(&refs);
    assert!(stderr.contains("all 5 pictures exist"), "{stderr}");
    let after: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(metrics(&out)["summary"], first["summary"]);

    // The same pictures, named by their sounds, scored from elsewhere.
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    for item in first["items"].as_array().unwrap() {
        let key = item["key"].as_str().unwrap();
        let stem = key.split_once('-').unwrap().1;
        std::fs::copy(
            out.join("images").join(format!("{key}.png")),
            elsewhere.join(format!("{stem}.png")),
        )
        .unwrap();
    }
    let out2 = d.join("eval2");
    let args2: Vec<std::ffi::OsString> = vec![
        "eval".into(),
        "--manifest".into(),
        manifest.clone().into(),
        "--out".into(),
        out2.clone().into(),
        "--images".into(),
        elsewhere.into(),
        "--clip".into(),
        clip.clone().into(),
        "--inception".into(),
        inception.clone().into(),
    ];
    let refs2: Vec<&std::ffi::OsStr> = args2.iter().map(|a| a.as_os_str()).collect();
    run(&refs2);
    assert_eq!(metrics(&out2)["summary"], first["summary"]);
}

#[test]
fn eval_refuses_bad_metric_inputs_before_generating() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let manifest = dataset(d);
    let bad = d.join("inception.safetensors");
    std::fs::write(&bad, b"not safetensors").unwrap();
    let out = d.join("eval");
    let result = sonic()
        .arg("eval")
        .args(tiny_models())
        .arg("--manifest")
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .arg("--clip")
        .arg(fixtures().join("eval-tiny"))
        .arg("--inception")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("inception.safetensors"), "{stderr}");
    assert!(!out.join("images").exists(), "generated before failing");

    // A picture missing from --images is named.
    let empty = d.join("none");
    std::fs::create_dir(&empty).unwrap();
    let result = sonic()
        .args(["eval", "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(&out)
        .arg("--images")
        .arg(&empty)
        .arg("--clip")
        .arg(fixtures().join("eval-tiny"))
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("no picture for clip"), "{stderr}");
}

#[test]
fn export_converts_a_metric_checkpoint_and_refuses_a_wrong_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let input = inception_weights(d);
    let out = d.join("converted.safetensors");
    let ok = sonic()
        .args(["export", "--metric", "inception", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ours = sonic_core::weights::tensor_file::read_safetensors_f32(&out).unwrap();
    let theirs = sonic_core::weights::tensor_file::read_safetensors_f32(&input).unwrap();
    assert_eq!(ours, theirs);
    // Inception weights are not Wav2CLIP: an error naming the file, nothing written.
    let bad_out = d.join("w.safetensors");
    let bad = sonic()
        .args(["export", "--metric", "wav2clip", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&bad_out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("inception.safetensors"));
    assert!(!bad_out.exists());
}
