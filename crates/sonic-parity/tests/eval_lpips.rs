//! LPIPS against the `lpips` PyPI package (0.1.4) on tests-data/eval-metrics/lpips
//! (tools/fixtures/eval_lpips.py): AlexNet, VGG16 and SqueezeNet trunks with formula weights,
//! image pairs of several sizes (the smallest each trunk accepts among them), identical pairs,
//! inputs in [0, 1]; and the two-file loader (torchvision's trunk + the package's lin weights)
//! against the one-file loader.

use burn::tensor::{Distribution, Tensor};
use sonic_core::fixtures::{Fixture, to_host};
use sonic_core::formula::FormulaSpec;
use sonic_eval::lpips::{Lpips, LpipsNet};
use sonic_test_kit::{assert_all_pass, device};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/eval-metrics/lpips")
}

#[test]
fn lpips_matches_the_package() {
    let fixture = Fixture::open(&dir()).unwrap();
    let results = sonic_parity::section("lpips")
        .unwrap()
        .run(&fixture, &device())
        .unwrap();
    assert_all_pass("lpips", &results);
    for net in ["alex", "vgg", "squeeze"] {
        let id = format!("lpips.{net}_min.distance");
        assert!(results.iter().any(|r| r.id == id), "{id}");
    }
    assert!(results.iter().any(|r| r.id.ends_with(".identical")));
    assert!(
        results
            .iter()
            .any(|r| r.id == "lpips.alex_37x45_unit.layers")
    );
}

/// The spec's tensors (their values, which derive from the original names) written to `path`
/// under new names; `None` leaves a tensor out.
fn write_renamed(spec: &FormulaSpec, path: &Path, rename: impl Fn(&str) -> Option<String>) {
    let tensors: Vec<_> = spec
        .tensors
        .iter()
        .filter_map(|e| {
            rename(&e.name).map(|name| {
                let mut t = spec.materialise(e);
                t.name = name;
                t
            })
        })
        .collect();
    sonic_core::weights::write_safetensors_f32(path, &tensors, None).unwrap();
}

#[test]
fn torchvision_and_package_files_load_as_the_state_dict() {
    let device = device();
    let tmp = tempfile::tempdir().unwrap();
    let spec = FormulaSpec::from_file(&dir().join("formula.json")).unwrap();
    let whole = tmp.path().join("lpips_alex.safetensors");
    spec.write_safetensors(&whole).unwrap();
    // torchvision's names (features.I.*) plus a classifier, and the lin layers alone.
    let trunk = tmp.path().join("alexnet.safetensors");
    write_renamed(&spec, &trunk, |n| {
        n.strip_prefix("net.slice")
            .and_then(|r| r.split_once('.'))
            .map(|(_, rest)| format!("features.{rest}"))
            .or_else(|| (n == "lin0.model.1.weight").then(|| "classifier.1.weight".into()))
    });
    let lins = tmp.path().join("alex.safetensors");
    write_renamed(&spec, &lins, |n| {
        n.starts_with("lin").then(|| n.to_string())
    });

    let one = Lpips::from_file(&whole, LpipsNet::Alex, &device).unwrap();
    let two = Lpips::from_torchvision(&trunk, &lins, LpipsNet::Alex, &device).unwrap();
    let a = Tensor::<4>::random([2, 3, 40, 36], Distribution::Uniform(-1.0, 1.0), &device);
    let b = Tensor::<4>::random([2, 3, 40, 36], Distribution::Uniform(-1.0, 1.0), &device);
    let d1 = to_host(&one.distance(a.clone(), b.clone()).unwrap()).unwrap();
    let d2 = to_host(&two.distance(a.clone(), b).unwrap()).unwrap();
    assert_eq!(d1, d2);
    assert!(d1.iter().all(|&d| d > 0.0));
    // Identical images: exactly 0.
    let d0 = to_host(&one.distance(a.clone(), a).unwrap()).unwrap();
    assert_eq!(d0, [0.0, 0.0]);

    // A file lacking a lin layer names the key as the package spells it.
    let short = tmp.path().join("short.safetensors");
    write_renamed(&spec, &short, |n| {
        (n != "lin3.model.1.weight").then(|| n.to_string())
    });
    let e = Lpips::from_file(&short, LpipsNet::Alex, &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lin3.model.1.weight"), "{e}");
    // A trunk tensor in the wrong slice is not accepted.
    let moved = tmp.path().join("moved.safetensors");
    write_renamed(&spec, &moved, |n| {
        Some(n.replace("net.slice2.3.", "net.slice3.3."))
    });
    let e = Lpips::from_file(&moved, LpipsNet::Alex, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("net.slice3.3.weight") || e.contains("net.slice2.3.weight"),
        "{e}"
    );
    // The wrong trunk for the file.
    assert!(Lpips::from_file(&whole, LpipsNet::Squeeze, &device).is_err());
}
