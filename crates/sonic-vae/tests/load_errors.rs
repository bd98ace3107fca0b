//! Loading errors name the file, the key and both shapes.

use sonic_core::CoreError;
use sonic_core::fixtures::fixtures_root;
use sonic_core::weights::{read_safetensors_f32, write_safetensors_f32};
use sonic_vae::{AutoencoderKL, VaeError};
use std::path::{Path, PathBuf};

fn vae_dir() -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures not found")
        .join("sd15-tiny")
        .join("vae")
}

/// A temp copy of the fixture VAE whose weights went through `edit`.
fn edited_copy(edit: impl FnOnce(&mut Vec<sonic_core::weights::NamedTensor>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        vae_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let mut tensors =
        read_safetensors_f32(&vae_dir().join("diffusion_pytorch_model.safetensors")).unwrap();
    edit(&mut tensors);
    write_safetensors_f32(
        &tmp.path().join("diffusion_pytorch_model.safetensors"),
        &tensors,
        None,
    )
    .unwrap();
    tmp
}

fn load(dir: &Path) -> Result<AutoencoderKL, VaeError> {
    let device = sonic_core::device::default_device().unwrap();
    AutoencoderKL::from_dir(dir, &device)
}

#[test]
fn unchanged_copy_loads() {
    let tmp = edited_copy(|_| {});
    load(tmp.path()).unwrap();
}

#[test]
fn missing_weights_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        vae_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let e = load(tmp.path()).unwrap_err();
    assert!(matches!(e, VaeError::Core(CoreError::Io { .. })), "{e:?}");
    assert!(
        e.to_string()
            .contains("diffusion_pytorch_model.safetensors"),
        "{e}"
    );
}

#[test]
fn missing_key_is_named_with_file() {
    let key = "decoder.conv_out.bias";
    let tmp = edited_copy(|t| t.retain(|x| x.name != key));
    let e = load(tmp.path()).unwrap_err();
    match &e {
        VaeError::Core(CoreError::MissingTensor {
            key: k, expected, ..
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, &vec![3]);
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(key) && msg.contains("diffusion_pytorch_model.safetensors"),
        "{msg}"
    );
}

#[test]
fn shape_mismatch_names_both_shapes() {
    let key = "encoder.conv_in.weight";
    let tmp = edited_copy(|t| {
        let x = t.iter_mut().find(|x| x.name == key).unwrap();
        x.shape = vec![32, 3, 1, 9];
    });
    let e = load(tmp.path()).unwrap_err();
    match &e {
        VaeError::Core(CoreError::ShapeMismatch {
            key: k,
            expected,
            found,
            ..
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, &vec![32, 3, 3, 3]);
            assert_eq!(found, &vec![32, 3, 1, 9]);
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("[32, 3, 3, 3]") && msg.contains("[32, 3, 1, 9]"),
        "{msg}"
    );
}

#[test]
fn unexpected_tensor_is_an_error() {
    let tmp = edited_copy(|t| {
        t.push(sonic_core::weights::NamedTensor {
            name: "encoder.extra.weight".into(),
            shape: vec![2],
            data: vec![0.0, 1.0],
        })
    });
    let e = load(tmp.path()).unwrap_err();
    assert!(
        matches!(&e, VaeError::Core(CoreError::UnexpectedTensor { key, .. }) if key == "encoder.extra.weight"),
        "{e:?}"
    );
}

#[test]
fn bad_config_value_is_named() {
    let tmp = edited_copy(|_| {});
    let cfg_path = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, text.replace("\"silu\"", "\"mish\"")).unwrap();
    let e = load(tmp.path()).unwrap_err();
    match &e {
        VaeError::Core(CoreError::UnsupportedConfig { key, value, .. }) => {
            assert_eq!(key, "act_fn");
            assert!(value.contains("mish"));
        }
        other => panic!("wrong error: {other:?}"),
    }
    assert!(e.to_string().contains("config.json"), "{e}");
}

#[test]
fn truncated_weights_file_is_named() {
    let tmp = edited_copy(|_| {});
    let p = tmp.path().join("diffusion_pytorch_model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(tmp.path()).unwrap_err();
    assert!(
        matches!(e, VaeError::Core(CoreError::WeightsFile { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("diffusion_pytorch_model.safetensors"),
        "{e}"
    );
}

#[test]
fn fp16_variant_is_loaded_and_cast() {
    // Write the weights as F16 under the `.fp16` name only; the loader must find and cast them.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        vae_dir().join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let tensors =
        read_safetensors_f32(&vae_dir().join("diffusion_pytorch_model.safetensors")).unwrap();
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let b = t
                .data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect();
            (t.name.clone(), t.shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = halves
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(
        tmp.path().join("diffusion_pytorch_model.fp16.safetensors"),
        bytes,
    )
    .unwrap();
    let vae = load(tmp.path()).unwrap();
    let w = vae.decoder.conv_out.bias.as_ref().unwrap().val();
    assert_eq!(w.dtype(), burn::tensor::DType::F32);
    let ours = sonic_core::fixtures::to_host(&w).unwrap();
    let reference = &tensors
        .iter()
        .find(|t| t.name == "decoder.conv_out.bias")
        .unwrap()
        .data;
    for (a, b) in ours.iter().zip(reference) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-3), "{a} vs {b}");
    }
}
