//! The CLIP towers with projection on bad input: configs that are not a model, pixel values of
//! the wrong shape, token rows without an end-of-text token, a corrupt processor config. Each is
//! a typed error naming the key or value, never a panic. (Parity: `sonic-parity`'s `eval_clip`.)

use burn::tensor::{Int, Tensor, TensorData};
use sonic_clip::{
    ClipError, ClipImageProcessor, ClipTextModelWithProjection, ClipVisionConfig,
    ClipVisionModelWithProjection, RgbImage,
};
use std::path::{Path, PathBuf};

fn eval_tiny() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures")
        .join("eval-tiny")
}

fn device() -> burn::tensor::Device {
    sonic_core::device::default_device().unwrap()
}

fn vision_config(edit: impl FnOnce(&mut serde_json::Value)) -> Result<ClipVisionConfig, ClipError> {
    let mut v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(eval_tiny().join("image_encoder/config.json")).unwrap(),
    )
    .unwrap();
    edit(&mut v);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    ClipVisionConfig::from_file(&p)
}

#[test]
fn bad_vision_configs_name_the_key() {
    assert!(vision_config(|_| {}).is_ok());
    for (key, value, named) in [
        (
            "num_attention_heads",
            serde_json::json!(5),
            "num_attention_heads",
        ),
        ("patch_size", serde_json::json!(64), "patch_size"),
        ("patch_size", serde_json::json!(0), "patch_size"),
        ("hidden_act", serde_json::json!("swish"), "swish"),
        ("projection_dim", serde_json::Value::Null, "projection_dim"),
        ("hidden_size", serde_json::json!(1u64 << 40), "hidden_size"),
        ("image_size", serde_json::json!(1u64 << 20), "image_size"),
    ] {
        let e = vision_config(|v| v[key] = value.clone()).unwrap_err();
        assert!(e.to_string().contains(named), "{key}: {e}");
    }
}

#[test]
fn wrong_pixel_shapes_and_rows_without_eos_are_typed_errors() {
    let device = device();
    let vision =
        ClipVisionModelWithProjection::from_dir(&eval_tiny().join("image_encoder"), &device)
            .unwrap();
    for shape in [[1, 3, 31, 32], [1, 1, 32, 32], [0, 3, 32, 32]] {
        let e = vision.forward(Tensor::zeros(shape, &device)).unwrap_err();
        assert!(matches!(e, ClipError::ImageShape { .. }), "{shape:?}: {e}");
    }
    let text =
        ClipTextModelWithProjection::from_dir(&eval_tiny().join("text_encoder"), &device).unwrap();
    let ids =
        Tensor::<2, Int>::from_data(TensorData::new(vec![49406i64, 320, 1125], [1, 3]), &device);
    let e = text.forward(ids).unwrap_err();
    assert!(matches!(e, ClipError::NoEndOfText { eos: 49407 }), "{e}");
}

#[test]
fn processor_rejects_bad_configs_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("preprocessor_config.json");
    for (text, named) in [
        (
            r#"{"size": {"shortest_edge": 0}, "crop_size": 32}"#,
            "size.shortest_edge",
        ),
        (
            r#"{"size": {"shortest_edge": 32}, "crop_size": 32, "resample": 1}"#,
            "resample",
        ),
        (
            r#"{"size": 32, "crop_size": 32, "image_std": [0, 1, 1]}"#,
            "image_std",
        ),
        (
            r#"{"size": 32, "crop_size": 32, "image_mean": [0.5]}"#,
            "image_mean",
        ),
        (
            r#"{"do_center_crop": true, "crop_size": {"height": 0, "width": 3}}"#,
            "crop_size.height",
        ),
        (
            r#"{"size": {"shortest_edge": 3, "longest_edge": 9}}"#,
            "size.longest_edge",
        ),
        ("not json", "preprocessor_config.json"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = ClipImageProcessor::from_file(&p).unwrap_err();
        assert!(e.to_string().contains(named), "{text}: {e}");
    }
    let processor =
        ClipImageProcessor::from_file(&eval_tiny().join("image_encoder/preprocessor_config.json"))
            .unwrap();
    let short = [0u8; 10];
    for image in [
        RgbImage {
            width: 4,
            height: 4,
            pixels: &short,
        },
        RgbImage {
            width: 0,
            height: 4,
            pixels: &[],
        },
    ] {
        assert!(matches!(
            processor.preprocess(&image, "x.png"),
            Err(ClipError::Image { .. })
        ));
    }
    assert!(processor.pixel_values(&[], &device()).is_err());
}
