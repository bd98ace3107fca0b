//! Parity with the PyTorch references: the `projector` section of the `sonic-tiny` and
//! `sonic-projector-full` fixtures (batch 3, every intermediate), and a generated variant of
//! another shape (64 tokens, audio_dim 40 -> context 30, 3 heads x 8, 3 layers, f16 weights)
//! in both block modes (tests/data/variant64, from tools/make_test_pickle.py).

mod common;

use common::{assert_all_pass, data, device, fixture_dir, rel_diff};
use sonic_core::fixtures::Fixture;
use sonic_projector::parity::{PROJECTOR_TOL, run_projector};
use sonic_projector::{BlockMode, Projector, ProjectorConfig};

fn run(dir: &std::path::Path, label: &str) -> Vec<sonic_core::fixtures::CaseResult> {
    let fixture = Fixture::open(dir).unwrap();
    let t = std::time::Instant::now();
    let results = run_projector(&fixture, &device()).unwrap();
    println!("{label}: ran in {:.2?}", t.elapsed());
    assert_all_pass(label, &results);
    results
}

#[test]
fn sonic_tiny_projector_matches_pytorch() {
    let results = run(&fixture_dir("sonic-tiny"), "sonic-tiny");
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
    let results = run(&fixture_dir("sonic-projector-full"), "sonic-projector-full");
    assert_eq!(results.len(), 1 + 6);
    assert!(results.iter().all(|r| r.tol == PROJECTOR_TOL));
}

#[test]
fn unseen_variant_matches_pytorch_in_both_modes() {
    let results = run(&data("variant64"), "variant64");
    assert!(results.iter().any(|r| r.id == "projector.1.block.2.out"));
    // Both modes ran: case 0 faithful, case 1 chained.
    assert!(
        results
            .iter()
            .any(|r| r.id == "projector.0.emb_projection.13")
    );
}

#[test]
fn variant_shapes_come_from_the_config() {
    let device = device();
    let dir = data("variant64");
    let config = ProjectorConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(
        (
            config.tokens,
            config.context_dim(),
            config.heads,
            config.layers
        ),
        (64, 30, 3, 3)
    );
    let p = Projector::from_file_with_config(&dir.join("projector.safetensors"), &config, &device)
        .unwrap();
    let fixture = Fixture::open(&dir).unwrap();
    let emb = fixture
        .tensors
        .tensor::<2>("projector.embeddings", &device)
        .unwrap();
    assert_eq!(emb.dims(), [3, 40]);
    let out = p.forward(emb).unwrap();
    assert_eq!(out.dims(), [3, 64, 30]);
}

#[test]
fn batch_of_three_equals_rows_one_by_one() {
    let device = device();
    let dir = fixture_dir("sonic-projector-full");
    let p = Projector::from_files(
        &dir.join("projector.safetensors"),
        &dir.join("config.json"),
        &device,
    )
    .unwrap();
    let fixture = Fixture::open(&dir).unwrap();
    let emb = fixture
        .tensors
        .tensor::<2>("projector.embeddings", &device)
        .unwrap();
    let t = std::time::Instant::now();
    let batch = p.forward(emb.clone()).unwrap();
    println!("full projector, batch 3 forward: {:.2?}", t.elapsed());
    assert_eq!(batch.dims(), [3, 77, 768]);
    for i in 0..3 {
        let row = p.forward(emb.clone().narrow(0, i, 1)).unwrap();
        let d = rel_diff(&row, &batch.clone().narrow(0, i, 1));
        assert!(d < 1e-6, "row {i}: {d}");
    }
    // The fixture's third row is the null embedding: null_tokens gives the same.
    let null = p.null_tokens(3, &device).unwrap();
    assert_eq!(null.dims(), [3, 77, 768]);
    let reference = fixture
        .tensors
        .tensor::<3>("projector.out", &device)
        .unwrap()
        .narrow(0, 2, 1);
    for i in 0..3 {
        let d = rel_diff(&null.clone().narrow(0, i, 1), &reference);
        assert!(d <= PROJECTOR_TOL, "null row {i}: {d}");
    }
    // And the chained wiring gives other tokens from the same weights.
    let chained = p.with_mode(BlockMode::Chained).forward(emb).unwrap();
    assert!(rel_diff(&chained, &batch) > 1e-2);
}
