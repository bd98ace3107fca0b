//! Tokenizer ids and CLIP text encoder hidden states against the transformers reference.

use sonic_core::fixtures::{Fixture, fixtures_root};
use std::path::Path;

fn run(name: &str) {
    let Some(root) = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))) else {
        panic!(
            "fixtures not found: set SONIC_FIXTURES or place ../shared/fixtures beside the workspace"
        );
    };
    let device = sonic_core::device::default_device().unwrap();
    let fixture = Fixture::open(&root.join(name)).unwrap();
    let results = sonic_clip::parity::run_text_encoder(&fixture, &device).unwrap();
    assert!(results.len() >= 2, "no text_encoder cases in {name}");
    for r in &results {
        println!("{} max_rel={:e}", r.id, r.cmp.max_rel);
        assert!(
            r.passed(),
            "{name}: {} max_rel={:e} > {:e}",
            r.id,
            r.cmp.max_rel,
            r.tol
        );
    }
}

#[test]
fn text_encoder_matches_transformers_sd15_tiny() {
    run("sd15-tiny");
}

#[test]
fn text_encoder_matches_transformers_sd21_tiny() {
    run("sd21-tiny");
}
