//! A model folder whose config and weights disagree, or whose weights hold NaN / inf, is a
//! typed error naming the file, the key and the shapes, before any tensor is allocated
//! (issue 16).

use sonic_core::CoreError;
use sonic_core::Device;
use sonic_core::fixtures::fixtures_root;
use sonic_core::weights::{read_safetensors_f32, write_safetensors_f32};
use sonic_unet::{UNet2DConditionModel, UNetConfig, UNetError};
use std::path::{Path, PathBuf};

fn unet_dir() -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures not found")
        .join("sd15-tiny/unet")
}

fn config_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(unet_dir().join("config.json")).unwrap()).unwrap()
}

fn parse(v: &serde_json::Value) -> Result<UNetConfig, UNetError> {
    UNetConfig::from_json_str(&v.to_string(), Path::new("unet/config.json"))
}

/// A config 2048x wider than its weights would take about 400 GB if the model were allocated
/// before the check (the test process would abort); it is a shape error naming the file, a key
/// and both shapes instead.
#[test]
fn a_config_wider_than_its_weights_fails_before_allocating() {
    let mut v = config_json();
    v["block_out_channels"] = serde_json::json!([65536, 65536, 65536]);
    let config = parse(&v).unwrap();
    let weights = unet_dir().join("diffusion_pytorch_model.safetensors");
    let err = UNet2DConditionModel::from_weights(&config, &weights, &Device::flex())
        .expect_err("a mismatch");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            UNetError::Core(CoreError::WeightsMismatch { .. } | CoreError::ShapeMismatch { .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("diffusion_pytorch_model.safetensors"),
        "{text}"
    );
    assert!(
        text.contains("`conv_in.weight` has shape [32, 4, 3, 3], model expects [65536, 4, 3, 3]"),
        "{text}"
    );
}

/// Values above the documented sanity limits are refused when the config is read.
#[test]
fn absurd_config_values_are_refused_by_name() {
    for (key, value) in [
        (
            "block_out_channels",
            serde_json::json!([1 << 20, 1 << 20, 1 << 20]),
        ),
        ("layers_per_block", serde_json::json!(100_000)),
        ("transformer_layers_per_block", serde_json::json!(1_000_000)),
        ("cross_attention_dim", serde_json::json!(10_000_000_000u64)),
        ("in_channels", serde_json::json!(1_000_000)),
    ] {
        let mut v = config_json();
        v[key] = value.clone();
        let err = parse(&v)
            .err()
            .unwrap_or_else(|| panic!("{key} = {value} accepted"));
        let text = err.to_string();
        assert!(text.contains(key), "{key}: {text}");
        assert!(text.contains("unet/config.json"), "{key}: {text}");
        assert!(text.contains("sanity limit"), "{key}: {text}");
    }
}

/// One NaN or infinity in one weight is an error naming that tensor; every other tensor of the
/// file is untouched, so the error names the right one.
#[test]
fn a_non_finite_weight_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = unet_dir().join("diffusion_pytorch_model.safetensors");
    let config = UNetConfig::from_file(&unet_dir().join("config.json")).unwrap();
    for (key, bad) in [
        ("mid_block.attentions.0.proj_out.weight", f32::NAN),
        ("up_blocks.1.resnets.2.norm1.bias", f32::INFINITY),
        (
            "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
            f32::NEG_INFINITY,
        ),
    ] {
        let mut tensors = read_safetensors_f32(&src).unwrap();
        let t = tensors.iter_mut().find(|t| t.name == key).expect(key);
        let last = t.data.len() - 1;
        t.data[last] = bad;
        let path = dir.path().join("unet.safetensors");
        write_safetensors_f32(&path, &tensors, None).unwrap();
        let err = UNet2DConditionModel::from_weights(&config, &path, &Device::flex())
            .expect_err("non-finite weight accepted");
        let text = err.to_string();
        assert!(
            matches!(
                &err,
                UNetError::Core(CoreError::NonFiniteWeight { key: k, count: 1, .. }) if k == key
            ),
            "{key}: {text}"
        );
        assert!(text.contains("unet.safetensors"), "{text}");
    }
    // The untouched file loads.
    UNet2DConditionModel::from_weights(&config, &src, &Device::flex()).unwrap();
}
