//! Wav2CLIP's audio encoder against the `wav2clip` package (tests-data/eval-metrics/wav2clip,
//! made by tools/fixtures/eval_wav2clip.py): spectrogram, ResNet features and embeddings per
//! utterance, batched and frame-level, each within 1e-4.

use sonic_core::fixtures::Fixture;
use std::path::Path;

#[test]
fn wav2clip_matches_the_package() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/eval-metrics/wav2clip");
    let fixture = Fixture::open(&dir).unwrap();
    let device = sonic_test_kit::device();
    let results = sonic_parity::section("wav2clip")
        .expect("a registered section")
        .run(&fixture, &device)
        .unwrap();
    assert!(results.len() >= 12, "only {} results", results.len());
    assert!(results.iter().all(|r| r.id.starts_with("wav2clip.")));
    sonic_test_kit::assert_all_pass("wav2clip", &results);
}
