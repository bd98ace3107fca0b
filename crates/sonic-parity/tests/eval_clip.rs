//! The CLIP sections (image tower, image preprocessing, text tower with projection, CLIP
//! score) on the `eval-tiny` reference fixture and on the held-out variants of
//! `tests-data/eval-variants` (other widths, heads, patch and crop sizes, activations, layer
//! norm epsilons, batch sizes and vocabularies; made by `tools/gen_eval_variants.py`).

mod common;

use common::{fixture_folders, run_sections, tests_data};
use sonic_core::fixtures::Fixture;

const SECTIONS: [&str; 4] = [
    "clip_vision",
    "clip_image_preprocess",
    "clip_text",
    "clip_score",
];

fn run_all(label: &str, fixture: &Fixture) {
    run_sections(label, fixture, &SECTIONS);
    let sections = sonic_parity::fixture_sections(fixture).unwrap();
    assert!(
        sections.iter().all(|s| SECTIONS.contains(&s.as_str())),
        "{label}: unexpected sections {sections:?}"
    );
}

#[test]
fn eval_tiny_clip_sections() {
    run_all("eval-tiny", &sonic_test_kit::fixture("eval-tiny"));
}

#[test]
fn eval_variants_clip_sections() {
    let variants = fixture_folders(&tests_data("eval-variants"));
    assert!(variants.len() >= 3, "only {} variants", variants.len());
    for (label, fixture) in &variants {
        run_all(label, fixture);
    }
}
