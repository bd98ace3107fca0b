//! The CLIP sections (image tower, image preprocessing, text tower with projection, CLIP
//! score) on the `eval-tiny` reference fixture and on the held-out variants of
//! `tests-data/eval-variants` (other widths, heads, patch and crop sizes, activations, layer
//! norm epsilons, batch sizes and vocabularies; made by `tools/gen_eval_variants.py`).

use sonic_core::fixtures::{CaseResult, Fixture};
use std::path::Path;

const SECTIONS: [&str; 4] = [
    "clip_vision",
    "clip_image_preprocess",
    "clip_text",
    "clip_score",
];

fn run_all(label: &str, fixture: &Fixture) {
    let device = sonic_test_kit::device();
    let mut results: Vec<CaseResult> = Vec::new();
    for name in SECTIONS {
        let cases = sonic_parity::section(name)
            .expect("registered")
            .run(fixture, &device)
            .unwrap_or_else(|e| panic!("{label} {name}: {e}"));
        assert!(!cases.is_empty(), "{label}: section {name} ran no case");
        results.extend(cases);
    }
    let sections = sonic_parity::fixture_sections(fixture).unwrap();
    assert!(
        sections.iter().all(|s| SECTIONS.contains(&s.as_str())),
        "{label}: unexpected sections {sections:?}"
    );
    sonic_test_kit::assert_all_pass(label, &results);
}

#[test]
fn eval_tiny_clip_sections() {
    run_all("eval-tiny", &sonic_test_kit::fixture("eval-tiny"));
}

#[test]
fn eval_variants_clip_sections() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/eval-variants");
    let mut n = 0;
    for entry in std::fs::read_dir(&root).expect("tests-data/eval-variants") {
        let dir = entry.unwrap().path();
        if dir.join("reference/cases.json").is_file() {
            let fixture = Fixture::open(&dir).unwrap();
            run_all(&dir.display().to_string(), &fixture);
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} variants");
}
