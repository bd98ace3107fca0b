//! The captioner's sections (BLIP's image embeddings, image preprocessing, decoder logits, and
//! greedy / beam-search captions compared id for id)
//! on the `tests-data/blip-tiny` fixture and on the held-out variants of
//! `tests-data/blip-variants` (other widths, depths, heads, patch and image sizes,
//! activations, an untied LM head; made by `tools/gen_blip_variants.py`).

use sonic_core::fixtures::{CaseResult, Fixture};
use std::path::{Path, PathBuf};

const SECTIONS: [&str; 4] = [
    "blip_vision",
    "blip_image_preprocess",
    "blip_logits",
    "blip_generate",
];

fn tests_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests-data")
        .join(name)
}

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
    sonic_test_kit::assert_all_pass(label, &results);
}

#[test]
fn blip_tiny_sections() {
    let dir = tests_data("blip-tiny");
    run_all("blip-tiny", &Fixture::open(&dir).unwrap());
}

#[test]
fn blip_variants_sections() {
    let root = tests_data("blip-variants");
    let mut n = 0;
    for entry in std::fs::read_dir(&root).expect("tests-data/blip-variants") {
        let dir = entry.unwrap().path();
        if dir.join("reference/cases.json").is_file() {
            run_all(&dir.display().to_string(), &Fixture::open(&dir).unwrap());
            n += 1;
        }
    }
    assert!(n >= 2, "only {n} variants");
}

#[test]
fn a_wrong_weight_fails_the_logits() {
    // The comparison can fail: the same model with one LM head bias changed.
    let dir = tests_data("blip-tiny");
    let fixture = Fixture::open(&dir).unwrap();
    let device = sonic_test_kit::device();
    let mut model = sonic_parity::caption::load_model(&fixture, &device).unwrap();
    let bias = model.text_decoder.cls.predictions.bias.take().unwrap();
    model.text_decoder.cls.predictions.bias = Some(bias.map(|b| b.add_scalar(0.5)));
    let case = &fixture.section("blip_logits").unwrap()[0];
    let ids = sonic_parity::caption::int_tensor(&fixture, case, "input_ids", &device)
        .unwrap()
        .unwrap();
    let mask =
        sonic_parity::caption::int_tensor(&fixture, case, "attention_mask", &device).unwrap();
    let pixels = fixture
        .tensor_of(case, "pixel_values")
        .unwrap()
        .to_tensor::<4>(&device)
        .unwrap();
    let logits = model
        .logits(ids, mask, model.image_embeds(pixels).unwrap())
        .unwrap();
    let cmp =
        sonic_core::fixtures::compare(&logits, fixture.tensor_of(case, "logits").unwrap()).unwrap();
    assert!(cmp.max_rel > 1e-3, "{}", cmp.max_rel);
}
