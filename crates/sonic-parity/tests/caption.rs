//! The captioner's sections (BLIP's image embeddings, image preprocessing, decoder logits, and
//! greedy / beam-search captions compared id for id)
//! on the `tests-data/blip-tiny` fixture and on the held-out variants of
//! `tests-data/blip-variants` (other widths, depths, heads, patch and image sizes,
//! activations, an untied LM head; made by `tools/gen_blip_variants.py`).

mod common;

use common::{fixture_folders, run_sections, tests_data};
use sonic_core::fixtures::Fixture;

const SECTIONS: [&str; 4] = [
    "blip_vision",
    "blip_image_preprocess",
    "blip_logits",
    "blip_generate",
];

#[test]
fn blip_tiny_sections() {
    let dir = tests_data("blip-tiny");
    run_sections("blip-tiny", &Fixture::open(&dir).unwrap(), &SECTIONS);
}

#[test]
fn blip_variants_sections() {
    let variants = fixture_folders(&tests_data("blip-variants"));
    assert!(variants.len() >= 2, "only {} variants", variants.len());
    for (label, fixture) in &variants {
        run_sections(label, fixture, &SECTIONS);
    }
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
