//! Parity on tiny SD *variants* that the reference fixtures do not cover: a 4-level UNet with
//! one layer per block and non-square latents that are not multiples of 8 (diffusers'
//! `forward_upsample_size` path), a 2-level UNet with per-level heads / transformer depths,
//! linear projections and upcast attention, a 3-level VAE with 16 norm groups; batches > 1,
//! non-square pipelines, DDIM / Euler / DPM-Solver++ from a DDIM config.
//!
//! The data lives in `tests-data/sd-variants/<variant>/` (made by `tools/gen_sd_variants.py`,
//! same schema as the fixtures). A variant stores no text encoder / tokenizer: its
//! `cases.json` names a `base` fixture whose `text_encoder/` and `tokenizer/` are copied, with
//! the variant, into a temporary folder before the runners open it. Tolerances are the
//! runners' own (1e-4 per component, 1e-3 for pipelines).

use sonic_core::fixtures::{CaseResult, Fixture, fixtures_root};
use std::path::{Path, PathBuf};

fn variants_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/sd-variants")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
    {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), &dst)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Copies `variant` into a temp dir, completed with its base fixture's text encoder and
/// tokenizer; returns the dir guard and the opened fixture.
fn materialize(variant: &str) -> (tempfile::TempDir, Fixture) {
    let src = variants_root().join(variant);
    assert!(
        src.join("reference/cases.json").is_file(),
        "{} is missing: run tools/gen_sd_variants.py",
        src.display()
    );
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path().join(variant);
    copy_dir(&src, &dir);
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("reference/cases.json")).unwrap())
            .expect("cases.json parses");
    if let Some(base) = cases.get("base").and_then(|b| b.as_str()) {
        let root = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|| {
            panic!("fixtures not found: set SONIC_FIXTURES or place ../shared/fixtures beside the workspace")
        });
        for part in ["text_encoder", "tokenizer"] {
            copy_dir(&root.join(base).join(part), &dir.join(part));
        }
    }
    let fixture = Fixture::open(&dir).expect("the variant opens as a fixture");
    (tmp, fixture)
}

fn case_count(fixture: &Fixture, section: &str) -> usize {
    fixture
        .section(section)
        .and_then(|s| s.as_array())
        .map_or(0, |a| a.len())
}

/// Prints every result and fails listing all that exceed their tolerance.
fn check(variant: &str, what: &str, results: &[CaseResult], expected: usize) {
    assert_eq!(
        results.len(),
        expected,
        "{variant}: {what}: {} results, expected {expected}",
        results.len()
    );
    let mut worst = 0.0f64;
    for r in results {
        println!(
            "{variant}: {} max_rel={:e} (tol {:e})",
            r.id, r.cmp.max_rel, r.tol
        );
        worst = worst.max(r.cmp.max_rel);
    }
    println!("{variant}: {what}: worst max_rel={worst:e}");
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{} max_rel={:e} > {:e}", r.id, r.cmp.max_rel, r.tol))
        .collect();
    assert!(
        failed.is_empty(),
        "{variant}: {what}: failed:\n  {}",
        failed.join("\n  ")
    );
}

fn device() -> burn::tensor::Device {
    sonic_core::device::default_device().expect("a backend is compiled in")
}

fn unet(variant: &str) {
    let (_tmp, fixture) = materialize(variant);
    let expected: usize = fixture
        .section("unet")
        .and_then(|s| s.as_array())
        .expect("a unet section")
        .iter()
        .map(|c| 1 + c["intermediates"].as_object().map_or(0, |m| m.len()))
        .sum();
    let results = sonic_parity::unet::run_unet(&fixture, &device()).expect("unet runs");
    check(variant, "unet", &results, expected);
}

fn vae(variant: &str) {
    let (_tmp, fixture) = materialize(variant);
    let expected = 3 * case_count(&fixture, "vae");
    assert!(expected > 0, "{variant}: no vae cases");
    let results = sonic_parity::vae::run_vae(&fixture, &device()).expect("vae runs");
    check(variant, "vae", &results, expected);
}

fn pipeline(variant: &str) {
    let (_tmp, fixture) = materialize(variant);
    let expected = 2 * case_count(&fixture, "pipeline");
    assert!(expected > 0, "{variant}: no pipeline cases");
    let results = sonic_parity::pipeline::run_pipeline(&fixture, &device()).expect("pipeline runs");
    check(variant, "pipeline", &results, expected);
}

#[test]
fn unet4_l1_nonsquare_unet() {
    unet("unet4-l1-nonsquare");
}

#[test]
fn unet4_l1_nonsquare_vae() {
    vae("unet4-l1-nonsquare");
}

#[test]
fn unet4_l1_nonsquare_pipeline() {
    pipeline("unet4-l1-nonsquare");
}

#[test]
fn unet2_l3_heads_unet() {
    unet("unet2-l3-heads");
}

#[test]
fn unet2_l3_heads_vae() {
    vae("unet2-l3-heads");
}

#[test]
fn unet2_l3_heads_pipeline() {
    pipeline("unet2-l3-heads");
}

#[test]
fn vae_3level_vae() {
    vae("vae-3level");
}

/// The `vae_unaligned` cases: encode inputs whose sizes are not multiples of the VAE factor.
/// diffusers encodes any size (asymmetric (0, 1) pad before each stride-2 conv, floor), and so
/// does `AutoencoderKL::encode`.
fn vae_unaligned(variant: &str) {
    let (_tmp, mut fixture) = materialize(variant);
    let cases = fixture.cases["vae_unaligned"].clone();
    assert!(
        cases.as_array().is_some_and(|a| !a.is_empty()),
        "{variant}: no vae_unaligned cases"
    );
    fixture.cases["vae"] = cases;
    let expected = 3 * case_count(&fixture, "vae");
    let results = sonic_parity::vae::run_vae(&fixture, &device()).expect("vae runs");
    check(variant, "vae_unaligned", &results, expected);
}

#[test]
fn unet4_l1_nonsquare_vae_unaligned() {
    vae_unaligned("unet4-l1-nonsquare");
}

#[test]
fn unet2_l3_heads_vae_unaligned() {
    vae_unaligned("unet2-l3-heads");
}

#[test]
fn vae_3level_vae_unaligned() {
    vae_unaligned("vae-3level");
}
