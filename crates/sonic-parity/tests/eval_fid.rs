//! FID against the `pytorch-fid` PyPI package (0.3.0) on tests-data/eval-metrics/fid
//! (tools/fixtures/eval_fid.py): pytorch-fid's InceptionV3 with formula weights on PNG image
//! sets of two sizes, a large image and a tensor input (pool3 and the three other blocks),
//! and the Frechet distance of feature sets (singular covariances, and a well-conditioned
//! low-dimensional case with its statistics); plus the loader's key checking in the
//! checkpoint's own names and the typed input errors.

use burn::tensor::Tensor;
use sonic_core::fixtures::Fixture;
use sonic_core::formula::FormulaSpec;
use sonic_eval::EvalError;
use sonic_eval::images::{load_picture, pictures_to_tensor};
use sonic_eval::inception::FidInceptionV3;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/eval-metrics/fid")
}

fn run(section: &str, min_cases: usize) {
    let fixture = Fixture::open(&dir()).unwrap();
    let device = sonic_test_kit::device();
    let start = std::time::Instant::now();
    let results = sonic_parity::section(section)
        .expect("registered")
        .run(&fixture, &device)
        .unwrap_or_else(|e| panic!("{section}: {e}"));
    println!("{section}: {:.1} s", start.elapsed().as_secs_f64());
    assert!(
        results.len() >= min_cases,
        "{section}: only {} results",
        results.len()
    );
    assert!(results.iter().all(|r| r.id.starts_with(section)));
    sonic_test_kit::assert_all_pass(section, &results);
}

#[test]
fn inception_features_match_pytorch_fid() {
    run("inception", 7);
}

#[test]
fn frechet_distances_match_pytorch_fid() {
    run("fid", 6);
}

#[test]
fn the_fixture_has_only_these_sections() {
    let fixture = Fixture::open(&dir()).unwrap();
    let mut sections = sonic_parity::fixture_sections(&fixture).unwrap();
    sections.sort();
    assert_eq!(sections, ["fid", "inception"]);
}

#[test]
fn loader_checks_keys_in_the_checkpoint_names() {
    let mut spec = FormulaSpec::from_file(&dir().join("inception/formula.json")).unwrap();
    let names: Vec<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
    // The released checkpoint's layout: the FID Inception3's classifier, no auxiliary head.
    assert!(names.contains(&"Conv2d_1a_3x3.conv.weight"));
    assert!(names.contains(&"Mixed_5b.branch1x1.bn.running_var"));
    assert!(names.contains(&"fc.weight"));
    assert!(!names.iter().any(|n| n.starts_with("AuxLogits")));
    let missing = "Mixed_7c.branch_pool.bn.running_var";
    spec.tensors.retain(|t| t.name != missing);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inception.safetensors");
    spec.write_safetensors(&path).unwrap();
    let device = sonic_test_kit::device();
    let err = FidInceptionV3::from_file(&path, &device).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(missing), "{msg}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = sonic_test_kit::device();
    let model = FidInceptionV3::new(&device);
    let too_large = Tensor::<4>::zeros([1, 3, 8193, 4], &device);
    assert!(matches!(
        model.forward(too_large),
        Err(EvalError::Core(sonic_core::CoreError::BadShape { .. }))
    ));
    let grey = Tensor::<4>::zeros([1, 1, 64, 64], &device);
    assert!(model.forward(grey).is_err());
    let small = Tensor::<4>::zeros([1, 3, 74, 80], &device);
    assert!(model.with_resize_input(false).forward(small).is_err());
    let images = dir().join("reference/images");
    let a = load_picture(&images.join("a_0.png")).unwrap();
    let b = load_picture(&images.join("b_0.png")).unwrap();
    assert!(matches!(
        pictures_to_tensor(&[a, b], &device),
        Err(EvalError::Input { .. })
    ));
    assert!(pictures_to_tensor(&[], &device).is_err());
    let missing = load_picture(&images.join("missing.png")).unwrap_err();
    assert!(missing.to_string().contains("missing.png"), "{missing}");
    let not_an_image = load_picture(&dir().join("inception/formula.json")).unwrap_err();
    assert!(
        not_an_image.to_string().contains("formula.json"),
        "{not_an_image}"
    );
}
