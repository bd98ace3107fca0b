//! End-to-end tests of the `sonic` binary on the tiny fixtures.

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
fn parity_runs_every_section_of_sd15_tiny() {
    let out = sonic()
        .arg("parity")
        .arg(fixtures().join("sd15-tiny"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("parity: ") && last.contains(" 0 failed, 0 skipped"),
        "{last}"
    );
    for section in [
        "text_encoder.",
        "unet.",
        "vae.",
        "schedulers.",
        "ddpm_training.",
        "pipeline.",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("ok {section}"))),
            "no {section} lines"
        );
    }
    for l in &lines[..lines.len() - 1] {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 5, "{l}");
        assert!(["ok", "FAIL", "skip"].contains(&parts[0]));
        assert!(
            parts[2].starts_with("max_abs=")
                && parts[3].starts_with("max_rel=")
                && parts[4].starts_with("tol=")
        );
    }
}

#[test]
fn parity_only_filters_and_rejects_unknown_sections() {
    let out = sonic()
        .args(["parity", "--only", "vae,ddpm_training"])
        .arg(fixtures().join("sd21-tiny"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().all(|l| l.starts_with("ok vae.")
            || l.starts_with("ok ddpm_training.")
            || l.starts_with("parity:")),
        "{stdout}"
    );
    let out = sonic()
        .args(["parity", "--only", "nonsense"])
        .arg(fixtures().join("sd21-tiny"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonsense"));
}

#[test]
fn parity_exits_nonzero_on_a_failing_case() {
    // A copy of the scheduler fixture whose first expected latent is perturbed.
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    let src = fixtures().join("schedulers-sd").join("reference");
    std::fs::copy(src.join("cases.json"), reference.join("cases.json")).unwrap();
    let mut tensors =
        sonic_core::weights::read_safetensors_f32(&src.join("tensors.safetensors")).unwrap();
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "ddim_sd1_50.0.prev_sample")
        .unwrap();
    t.data[0] += 1.0;
    sonic_core::weights::write_safetensors_f32(
        &reference.join("tensors.safetensors"),
        &tensors,
        None,
    )
    .unwrap();
    let out = sonic().arg("parity").arg(tmp.path()).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL schedulers.ddim_sd1_50.0.prev_sample"),
        "{stdout}"
    );
}

#[test]
fn generate_writes_identical_pngs_for_the_same_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for name in ["a.png", "b.png"] {
        let out = sonic()
            .args([
                "generate",
                "--prompt",
                "a red fox",
                "--steps",
                "3",
                "--seed",
                "5",
                "--width",
                "64",
                "--height",
                "64",
            ])
            .arg("--model")
            .arg(fixtures().join("sd15-tiny"))
            .arg("--out")
            .arg(tmp.path().join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bytes.push(std::fs::read(tmp.path().join(name)).unwrap());
    }
    assert_eq!(bytes[0], bytes[1]);
    assert_eq!(&bytes[0][1..4], b"PNG");
}

#[test]
fn generate_rejects_a_bad_size_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sonic()
        .args(["generate", "--prompt", "x", "--steps", "2", "--width", "63"])
        .arg("--model")
        .arg(fixtures().join("sd15-tiny"))
        .arg("--out")
        .arg(tmp.path().join("x.png"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("width"));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
