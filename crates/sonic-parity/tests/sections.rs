//! Every SD and SonicDiffusion section against the PyTorch references, through the registry
//! that `sonic parity` uses: CLIP tokenizer ids and text encoder (transformers), VAE encode /
//! decode, UNet output and block intermediates, whole text-to-image pipelines (diffusers), the
//! audio projector with every intermediate (the official code), on the SD 1.x and 2.x tiny
//! fixtures, the sonic fixtures and the projector's own variant (64 tokens, audio_dim 40 ->
//! context 30, 3 heads x 8, 3 layers, f16 weights, both block modes; made by
//! tools/make_test_pickle.py, kept in crates/sonic-projector/tests/data/variant64).

use sonic_core::fixtures::{CaseResult, Fixture};
use sonic_test_kit::{assert_all_pass, device, fixture};
use std::path::Path;

fn run_on(fixture: &Fixture, label: &str, section: &str) -> Vec<CaseResult> {
    let runner = sonic_parity::section(section).expect("a registered section");
    let t = std::time::Instant::now();
    let results = runner
        .run(fixture, &device())
        .unwrap_or_else(|e| panic!("{label} {section}: {e}"));
    println!("{label} {section}: ran in {:.2?}", t.elapsed());
    assert_all_pass(&format!("{label} {section}"), &results);
    assert!(results.iter().all(|r| r.id.starts_with(section)));
    results
}

fn run(name: &str, section: &str) -> Vec<CaseResult> {
    run_on(&fixture(name), name, section)
}

#[test]
fn text_encoder_matches_transformers_sd15_tiny() {
    assert!(run("sd15-tiny", "text_encoder").len() >= 2);
}

#[test]
fn text_encoder_matches_transformers_sd21_tiny() {
    assert!(run("sd21-tiny", "text_encoder").len() >= 2);
}

#[test]
fn vae_matches_diffusers_sd15_tiny() {
    assert!(run("sd15-tiny", "vae").len() >= 3);
}

#[test]
fn vae_matches_diffusers_sd21_tiny() {
    assert!(run("sd21-tiny", "vae").len() >= 3);
}

#[test]
fn unet_matches_diffusers_sd15_tiny() {
    // out + 9 intermediates at least.
    assert!(run("sd15-tiny", "unet").len() >= 10);
}

#[test]
fn unet_matches_diffusers_sd21_tiny() {
    assert!(run("sd21-tiny", "unet").len() >= 10);
}

#[test]
fn pipeline_matches_diffusers_sd15_tiny() {
    assert_eq!(run("sd15-tiny", "pipeline").len(), 6);
}

#[test]
fn pipeline_matches_diffusers_sd21_tiny() {
    assert_eq!(run("sd21-tiny", "pipeline").len(), 6);
}

#[test]
fn sonic_tiny_projector_matches_pytorch() {
    let results = run("sonic-tiny", "projector");
    // out + 14 projection outputs + 4 x (attn, out)
    assert_eq!(results.len(), 1 + 14 + 8);
    assert!(results.iter().any(|r| r.id == "projector.0.out"));
    assert!(
        results
            .iter()
            .any(|r| r.id == "projector.0.emb_projection.10")
    );
    assert!(results.iter().any(|r| r.id == "projector.0.block.3.attn"));
}

#[test]
fn full_size_projector_matches_pytorch() {
    let results = run("sonic-projector-full", "projector");
    assert_eq!(results.len(), 1 + 6);
    assert!(
        results
            .iter()
            .all(|r| r.tol == sonic_parity::projector::PROJECTOR_TOL)
    );
}

#[test]
fn unseen_projector_variant_matches_pytorch_in_both_modes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sonic-projector/tests/data/variant64");
    let results = run_on(&Fixture::open(&dir).unwrap(), "variant64", "projector");
    assert!(results.iter().any(|r| r.id == "projector.1.block.2.out"));
    // Both modes ran: case 0 faithful, case 1 chained.
    assert!(
        results
            .iter()
            .any(|r| r.id == "projector.0.emb_projection.13")
    );
}
