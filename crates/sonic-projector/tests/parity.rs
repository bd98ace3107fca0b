//! The projector on the reference fixtures beyond the `projector` section (which
//! `sonic-parity`'s tests check, with tests/data/variant64): shapes from the config, batches
//! against single rows, the null tokens, the chained wiring.

mod common;

use common::{PROJECTOR_TOL, data, device, fixture_dir, rel_diff};
use sonic_core::fixtures::Fixture;
use sonic_projector::{BlockMode, Projector, ProjectorConfig};

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
