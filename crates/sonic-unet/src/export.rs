//! Saving a UNet as safetensors in the diffusers / official layout: the whole model
//! (`diffusion_pytorch_model.safetensors`, loadable by diffusers and by
//! [`UNet2DConditionModel::from_weights`]), or only its gated adapters, with the official key
//! names of the SonicDiffusion release (`landscape.pt` / `greatest_hits.pt` hold the same keys):
//!
//! ```text
//! <block>.attentions.<i>.transformer_blocks.<j>.attn_adapter.{to_q,to_k,to_v}.weight   [out, in]
//! <block>.attentions.<i>.transformer_blocks.<j>.attn_adapter.to_out.0.{weight,bias}
//! <block>.attentions.<i>.transformer_blocks.<j>.norm_adapter.{weight,bias}
//! <block>.attentions.<i>.transformer_blocks.<j>.gate_adapter                            [1]
//! ```
//!
//! Tensors are collected with burn-store's [`BurnToPyTorchAdapter`] (Linear weights transposed
//! back to PyTorch's `[out, in]`, LayerNorm / GroupNorm `gamma`/`beta` renamed `weight`/`bias`),
//! enum variant names skipped, our feed-forward field names mapped back to diffusers'
//! (`ff.geglu` -> `ff.net.0`, `ff.out` -> `ff.net.2`, the inverse of
//! [`crate::transformer_2d::feed_forward_remaps`]), and written as float32 atomically with
//! [`write_safetensors_f32`].

use crate::error::UNetError;
use crate::unet_2d_condition::UNet2DConditionModel;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use sonic_core::weights::{NamedTensor, write_safetensors_f32};
use std::collections::HashMap;
use std::path::Path;

/// The `__metadata__` entry naming what an exported file holds (`adapters` or `unet`).
pub const METADATA_CONTENT: &str = "sonic:content";

/// Maps a module path of ours to the diffusers key (`ff.geglu.` -> `ff.net.0.`,
/// `ff.out.` -> `ff.net.2.`); every other path is already the diffusers key.
pub fn module_to_file_key(path: &str) -> String {
    path.replace(".ff.geglu.", ".ff.net.0.")
        .replace(".ff.out.", ".ff.net.2.")
}

/// Whether a diffusers key belongs to a gated adapter.
pub fn is_adapter_key(key: &str) -> bool {
    key.split('.')
        .any(|part| matches!(part, "attn_adapter" | "norm_adapter" | "gate_adapter"))
}

/// Every parameter of `unet` in the diffusers layout (PyTorch shapes, float32), sorted by key;
/// with `adapters_only`, the gated adapters' parameters alone.
pub fn tensors(
    unet: &UNet2DConditionModel,
    adapters_only: bool,
) -> Result<Vec<NamedTensor>, UNetError> {
    let mut out = Vec::new();
    for t in unet.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true) {
        let name = module_to_file_key(&t.name);
        if adapters_only && !is_adapter_key(&name) {
            continue;
        }
        let data = bridge::to_data(&t)
            .map_err(|e| sonic_core::CoreError::Readback(format!("cannot read `{name}`: {e}")))?;
        let values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| sonic_core::CoreError::Readback(format!("`{name}`: {e:?}")))?;
        out.push(NamedTensor {
            name,
            shape: t.shape.to_vec(),
            data: values,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The gated adapters of `unet` (official keys), sorted by key; empty without adapters.
pub fn adapter_tensors(unet: &UNet2DConditionModel) -> Result<Vec<NamedTensor>, UNetError> {
    tensors(unet, true)
}

fn meta(content: &str) -> Option<HashMap<String, String>> {
    Some(HashMap::from([
        (METADATA_CONTENT.to_string(), content.to_string()),
        ("format".to_string(), "pt".to_string()),
    ]))
}

/// Writes the gated adapters of `unet` as an adapter-only safetensors file with the official
/// keys (load it back with [`UNet2DConditionModel::with_adapters`]); returns the number of
/// tensors written. A UNet without adapters is an error (the file would be empty).
pub fn save_adapters(unet: &UNet2DConditionModel, path: &Path) -> Result<usize, UNetError> {
    let tensors = adapter_tensors(unet)?;
    if tensors.is_empty() {
        return Err(sonic_core::CoreError::WeightsFile {
            path: path.to_path_buf(),
            message: "the UNet has no adapters to export".into(),
        }
        .into());
    }
    write_safetensors_f32(path, &tensors, meta("adapters"))?;
    Ok(tensors.len())
}

/// Writes the whole UNet (adapters included, if any) in the diffusers layout
/// (`diffusion_pytorch_model.safetensors`); returns the number of tensors written.
pub fn save_safetensors(unet: &UNet2DConditionModel, path: &Path) -> Result<usize, UNetError> {
    let tensors = tensors(unet, false)?;
    write_safetensors_f32(path, &tensors, meta("unet"))?;
    Ok(tensors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_back_to_diffusers() {
        assert_eq!(
            module_to_file_key(
                "up_blocks.1.attentions.0.transformer_blocks.0.ff.geglu.proj.weight"
            ),
            "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"
        );
        assert_eq!(
            module_to_file_key("mid_block.attentions.0.transformer_blocks.0.ff.out.bias"),
            "mid_block.attentions.0.transformer_blocks.0.ff.net.2.bias"
        );
        assert_eq!(module_to_file_key("conv_in.weight"), "conv_in.weight");
        assert!(is_adapter_key(
            "mid_block.attentions.0.transformer_blocks.0.gate_adapter"
        ));
        assert!(is_adapter_key(
            "up_blocks.1.attentions.2.transformer_blocks.0.attn_adapter.to_out.0.bias"
        ));
        assert!(!is_adapter_key(
            "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_q.weight"
        ));
    }

    /// A fresh temporary folder (this crate has no tempfile dev-dependency).
    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir().join(format!(
                "sonic-unet-export-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixtures() -> Option<std::path::PathBuf> {
        sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
            .filter(|r| r.join("sd15-tiny/unet").is_dir() && r.join("sonic-tiny").is_dir())
    }

    fn inputs(
        device: &burn::tensor::Device,
    ) -> (
        burn::tensor::Tensor<4>,
        burn::tensor::Tensor<3>,
        burn::tensor::Tensor<3>,
    ) {
        use burn::tensor::{Distribution, Tensor};
        let cfg =
            crate::UNetConfig::from_file(&fixtures().unwrap().join("sd15-tiny/unet/config.json"))
                .unwrap();
        let text_dim = match &cfg.cross_attention_dim {
            crate::config::PerLevel::One(v) => *v,
            crate::config::PerLevel::Each(v) => v[0],
        };
        // The audio tokens' width: the adapters' `to_k` input width.
        let audio_dim = sonic_core::weights::read_safetensors_header(
            &fixtures().unwrap().join("sonic-tiny/adapters.safetensors"),
        )
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with("attn_adapter.to_k.weight"))
        .map(|(_, e)| e.shape[1])
        .unwrap();
        let x = Tensor::<4>::random(
            [1, cfg.in_channels, 8, 8],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let text = Tensor::<3>::random([1, 7, text_dim], Distribution::Normal(0.0, 1.0), device);
        let audio = Tensor::<3>::random([1, 5, audio_dim], Distribution::Normal(0.0, 1.0), device);
        (x, text, audio)
    }

    fn run(
        u: &UNet2DConditionModel,
        x: &burn::tensor::Tensor<4>,
        text: &burn::tensor::Tensor<3>,
        audio: Option<&burn::tensor::Tensor<3>>,
    ) -> Vec<f32> {
        let inp = audio.map(|a| u.prepare_adapters(a.clone(), crate::AdapterStrength::Global(1.0)));
        let out = u
            .forward_with(
                x.clone(),
                &[10.0],
                crate::UNetInputs::new(text.clone()).maybe_adapters(inp.as_ref()),
            )
            .unwrap();
        sonic_core::fixtures::to_host(&out).unwrap()
    }

    #[test]
    fn adapters_round_trip_through_an_adapter_only_file() {
        let Some(root) = fixtures() else {
            eprintln!("skipped: fixtures not found");
            return;
        };
        let device = sonic_core::device::parse_device("flex").unwrap();
        let src = root.join("sonic-tiny/adapters.safetensors");
        let unet_dir = root.join("sd15-tiny/unet");
        let (a, placement) = UNet2DConditionModel::from_dir(&unet_dir, &device)
            .unwrap()
            .with_adapters(&src, &device)
            .unwrap();
        let tmp = TempDir::new("adapters");
        let path = tmp.0.join("adapters.safetensors");
        let n = save_adapters(&a, &path).unwrap();

        // Exactly the official keys, with the file's shapes and values.
        let original = sonic_core::weights::read_safetensors_f32(&src).unwrap();
        let exported = sonic_core::weights::read_safetensors_f32(&path).unwrap();
        assert_eq!(n, original.len());
        let mut want: Vec<_> = original
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        want.sort();
        let got: Vec<_> = exported
            .iter()
            .map(|t| (t.name.clone(), t.shape.clone()))
            .collect();
        assert_eq!(got, want);
        for t in &exported {
            let o = original.iter().find(|o| o.name == t.name).unwrap();
            assert_eq!(o.data, t.data, "{}", t.name);
        }
        assert!(
            exported
                .iter()
                .any(|t| t.name.ends_with(".gate_adapter") && t.shape == [1])
        );
        assert!(exported.iter().all(|t| is_adapter_key(&t.name)));

        let (b, placement_b) = UNet2DConditionModel::from_dir(&unet_dir, &device)
            .unwrap()
            .with_adapters(&path, &device)
            .unwrap();
        assert_eq!(placement, placement_b);
        let (x, text, audio) = inputs(&device);
        assert_eq!(
            run(&a, &x, &text, Some(&audio)),
            run(&b, &x, &text, Some(&audio))
        );

        // A UNet without adapters has nothing to export.
        let plain = UNet2DConditionModel::from_dir(&unet_dir, &device).unwrap();
        assert!(save_adapters(&plain, &tmp.0.join("none.safetensors")).is_err());
    }

    fn exported_audio_dim(path: &Path) -> usize {
        sonic_core::weights::read_safetensors_header(path)
            .unwrap()
            .iter()
            .find(|(k, _)| k.ends_with("attn_adapter.to_k.weight"))
            .map(|(_, e)| e.shape[1])
            .unwrap()
    }

    #[test]
    fn whole_unet_round_trips_through_the_diffusers_layout() {
        let Some(root) = fixtures() else {
            eprintln!("skipped: fixtures not found");
            return;
        };
        let device = sonic_core::device::parse_device("flex").unwrap();
        let unet_dir = root.join("sd15-tiny/unet");
        let config = crate::UNetConfig::from_file(&unet_dir.join("config.json")).unwrap();
        let a = UNet2DConditionModel::from_dir(&unet_dir, &device).unwrap();
        let tmp = TempDir::new("unet");
        let path = tmp.0.join("diffusion_pytorch_model.safetensors");
        save_safetensors(&a, &path).unwrap();

        // The same keys and shapes as the diffusers file.
        let original = sonic_core::weights::read_safetensors_header(
            &unet_dir.join("diffusion_pytorch_model.safetensors"),
        )
        .unwrap();
        let exported = sonic_core::weights::read_safetensors_header(&path).unwrap();
        let shapes = |m: &std::collections::BTreeMap<String, sonic_core::weights::HeaderEntry>| {
            m.iter()
                .map(|(k, e)| (k.clone(), e.shape.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(shapes(&exported), shapes(&original));

        let b = UNet2DConditionModel::from_weights(&config, &path, &device).unwrap();
        let (x, text, _) = inputs(&device);
        assert_eq!(run(&a, &x, &text, None), run(&b, &x, &text, None));

        // With adapters: the whole model, adapters included, reloads into a UNet given the
        // same adapters (zero-initialised, then overwritten by the file).
        let src = root.join("sonic-tiny/adapters.safetensors");
        let (a, placement) = a.with_adapters(&src, &device).unwrap();
        let full = tmp.0.join("with_adapters.safetensors");
        save_safetensors(&a, &full).unwrap();
        let audio_dim = exported_audio_dim(&full);
        let mut b = UNet2DConditionModel::new(&config, &device).unwrap();
        b.add_adapters(placement, audio_dim, 0.0, &device);
        let b = sonic_core::weights::load_weights(b, &full, &UNet2DConditionModel::load_options())
            .unwrap();
        let (x, text, audio) = inputs(&device);
        assert_eq!(
            run(&a, &x, &text, Some(&audio)),
            run(&b, &x, &text, Some(&audio))
        );
    }
}
