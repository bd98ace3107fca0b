//! Block wiring: the faithful mode (the release: only the last block reaches the output)
//! against the chained mode (ours), plus input checks and the unconditional tokens.

mod common;

use common::{device, fixture_dir, rel_diff};
use sonic_core::CoreError;
use sonic_core::fixtures::Fixture;
use sonic_core::weights::{read_safetensors_f32, write_safetensors_f32};
use sonic_projector::{BlockMode, Projector, ProjectorConfig, ProjectorError};

fn tiny() -> (Projector, burn::tensor::Tensor<2>) {
    let device = device();
    let dir = fixture_dir("sonic-tiny");
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
    (p, emb)
}

/// The tiny projector cut down to one block: the tiny's block `keep`.
fn one_block(keep: usize, mode: BlockMode) -> (tempfile::TempDir, Projector) {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors =
        read_safetensors_f32(&fixture_dir("sonic-tiny").join("projector.safetensors")).unwrap();
    let from = [
        format!("cross_attention.{keep}."),
        format!("between_attention.{keep}."),
    ];
    tensors.retain(|t| {
        !(t.name.starts_with("cross_attention.") || t.name.starts_with("between_attention."))
            || from.iter().any(|f| t.name.starts_with(f.as_str()))
    });
    for t in &mut tensors {
        t.name = t
            .name
            .replace(&from[0], "cross_attention.0.")
            .replace(&from[1], "between_attention.0.");
    }
    let p = tmp.path().join("one.safetensors");
    write_safetensors_f32(&p, &tensors, None).unwrap();
    let mut config =
        ProjectorConfig::from_file(&fixture_dir("sonic-tiny").join("config.json")).unwrap();
    config.layers = 1;
    let m = Projector::from_file_with_config(&p, &config.with_mode(mode), &device()).unwrap();
    (tmp, m)
}

#[test]
fn faithful_output_depends_on_the_last_block_only() {
    let (p, emb) = tiny();
    assert_eq!(p.mode(), BlockMode::Faithful);
    let full = p.forward(emb.clone()).unwrap();
    let (_t, last) = one_block(3, BlockMode::Faithful);
    assert_eq!(rel_diff(&last.forward(emb.clone()).unwrap(), &full), 0.0);
    let (_t, first) = one_block(0, BlockMode::Faithful);
    assert!(rel_diff(&first.forward(emb).unwrap(), &full) > 1e-3);
}

#[test]
fn chained_differs_from_faithful_when_there_are_several_blocks() {
    let (p, emb) = tiny();
    let faithful = p.forward(emb.clone()).unwrap();
    let p = p.with_mode(BlockMode::Chained);
    let chained = p.forward(emb.clone()).unwrap();
    let d = rel_diff(&chained, &faithful);
    println!("tiny: chained vs faithful max_rel {d:.3e}");
    assert!(d > 1e-3, "{d}");
    // Chained block i reads block i - 1's output.
    let trace = p.forward_with_intermediates(emb).unwrap();
    assert_eq!(rel_diff(&trace.out, &chained), 0.0);
    let manual = p.between_attention[1]
        .forward(p.cross_attention[1].forward(trace.block_out[0].clone()))
        + trace.block_out[0].clone();
    assert!(rel_diff(&manual, &trace.block_out[1]) < 1e-6);
}

#[test]
fn chained_equals_faithful_with_one_block() {
    let (_a, faithful) = one_block(2, BlockMode::Faithful);
    let (_b, chained) = one_block(2, BlockMode::Chained);
    let (_, emb) = tiny();
    let f = faithful.forward(emb.clone()).unwrap();
    let c = chained.forward(emb.clone()).unwrap();
    assert_eq!(rel_diff(&f, &c), 0.0);
    let tf = faithful.forward_with_intermediates(emb.clone()).unwrap();
    let tc = chained.forward_with_intermediates(emb).unwrap();
    assert_eq!(rel_diff(&tf.out, &tc.out), 0.0);
}

#[test]
fn traced_forward_equals_plain_forward_in_both_modes() {
    let (p, emb) = tiny();
    for mode in [BlockMode::Faithful, BlockMode::Chained] {
        let p = Projector::with_mode(p.clone(), mode);
        let plain = p.forward(emb.clone()).unwrap();
        let trace = p.forward_with_intermediates(emb.clone()).unwrap();
        assert_eq!(rel_diff(&plain, &trace.out), 0.0, "{mode}");
        assert_eq!(trace.emb_projection.len(), 14);
        assert_eq!(trace.block_attn.len(), 4);
        assert_eq!(trace.named().len(), 14 + 8 + 1);
        assert_eq!(trace.get("block.3.attn").unwrap().dims(), [3, 77, 40]);
        assert_eq!(trace.get("emb_projection.8").unwrap().dims(), [3, 77, 129]);
        assert!(trace.get("block.4.out").is_none());
        assert!(trace.get("nonsense").is_none());
    }
}

#[test]
fn null_tokens_are_the_projection_of_zeros() {
    let device = device();
    let (p, _) = tiny();
    let null = p.null_tokens(3, &device).unwrap();
    let direct = p
        .forward(burn::tensor::Tensor::zeros([3, 43], &device))
        .unwrap();
    assert!(rel_diff(&null, &direct) < 1e-6);
    assert!(matches!(
        p.null_tokens(0, &device),
        Err(ProjectorError::Core(CoreError::BadShape { .. }))
    ));
}

#[test]
fn wrong_input_shapes_are_typed_errors() {
    let device = device();
    let (p, _) = tiny();
    let e = p
        .forward(burn::tensor::Tensor::zeros([2, 44], &device))
        .unwrap_err();
    match &e {
        ProjectorError::Core(CoreError::BadShape { found, .. }) => assert_eq!(found, &vec![2, 44]),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("43"), "{e}");
    assert!(
        p.forward(burn::tensor::Tensor::zeros([0, 43], &device))
            .is_err()
    );
    assert!(
        p.forward_with_intermediates(burn::tensor::Tensor::zeros([1, 7], &device))
            .is_err()
    );
}

#[test]
fn untrained_projector_of_any_size_runs() {
    let device = device();
    for (a, t, h, d, l) in [(1024, 77, 8, 40, 4), (40, 64, 3, 8, 3), (17, 5, 1, 4, 1)] {
        let mut config = ProjectorConfig::new(a, t, h, d, l);
        if a == 1024 {
            // Keep the test fast: a smaller audio_dim with the release's tokens and heads.
            config.audio_dim = 64;
        }
        for mode in [BlockMode::Faithful, BlockMode::Chained] {
            let p = Projector::new(&config.clone().with_mode(mode), &device).unwrap();
            let y = p
                .forward(burn::tensor::Tensor::ones([3, config.audio_dim], &device))
                .unwrap();
            assert_eq!(y.dims(), [3, t, config.context_dim()]);
        }
    }
    let mut bad = ProjectorConfig::official();
    bad.layers = 0;
    assert!(Projector::new(&bad, &device).is_err());
}
