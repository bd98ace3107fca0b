//! The public encoder API, the torch-pickle checkpoint path and checkpoint errors.

use sonic_audio::{AudioError, ClapAudioConfig, ClapAudioEncoder, CropStart};
use sonic_core::CoreError;
use sonic_core::fixtures::{Fixture, compare};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn variant_config() -> ClapAudioConfig {
    ClapAudioConfig::from_json_file(&data("variant/config.json")).unwrap()
}

fn device() -> burn::tensor::Device {
    sonic_core::device::default_device().unwrap()
}

#[test]
fn official_pickle_layout_loads_without_touching_the_text_tower() {
    // clap_variant.pth: {"model": {audio_encoder.*, caption_encoder.* (corrupted bytes),
    // logit_scale}, "epoch", "optimizer"}; no STFT kernels / melW.
    // The guard is real: reading a caption tensor fails (its bytes were overwritten).
    let reader = burn::store::pytorch_reader::PytorchReader::with_top_level_key(
        data("clap_variant.pth"),
        "model",
    )
    .unwrap();
    let caption = reader
        .get("caption_encoder.projection.linear1.weight")
        .unwrap();
    assert!(
        caption.read().is_err(),
        "the caption storage should be unreadable"
    );
    let dev = device();
    let pth =
        ClapAudioEncoder::from_file_with_config(data("clap_variant.pth"), variant_config(), &dev)
            .unwrap();
    let st = ClapAudioEncoder::from_file_with_config(
        data("variant/clap.safetensors"),
        variant_config(),
        &dev,
    )
    .unwrap();
    assert_eq!(pth.sizes(), st.sizes());
    assert_eq!(pth.sizes().widths, [4, 8, 12, 16, 24, 32]);
    assert_eq!(pth.embedding_dim(), 12);
    let fixture = Fixture::open(&data("variant")).unwrap();
    let x = fixture
        .tensors
        .get("wav.p.clap_input")
        .unwrap()
        .to_tensor::<2>(&dev)
        .unwrap();
    let a = pth.encode_waveforms(x.clone()).unwrap();
    let b = st.encode_waveforms(x).unwrap();
    let diff: f32 = (a.embedding_l2x2 - b.embedding_l2x2)
        .abs()
        .max()
        .into_scalar();
    assert_eq!(diff, 0.0);
}

#[test]
fn encode_files_and_samples_give_the_reference_embeddings() {
    let dev = device();
    let fixture = Fixture::open(&data("variant")).unwrap();
    let crop = fixture.cases["audio_clips"]["q"]["fit"]["crop_start"]
        .as_u64()
        .unwrap() as usize;
    let enc = ClapAudioEncoder::from_file_with_config(
        data("variant/clap.safetensors"),
        variant_config(),
        &dev,
    )
    .unwrap()
    .with_crop(CropStart::Sample(crop))
    .with_batch_size(2);
    let wavs: Vec<PathBuf> = ["p", "q", "r"]
        .iter()
        .map(|c| data(&format!("variant/reference/clip_{c}.wav")))
        .collect();
    let emb = enc.encode_files(&wavs).unwrap();
    assert_eq!(emb.dims(), [3, 12]);
    let reference = fixture.tensors.get("clap.e2e.embedding_l2x2").unwrap();
    let c = compare(&emb, reference).unwrap();
    assert!(c.max_rel <= 1e-4, "{c:?}");

    // Samples in memory: clip p's mono samples at 48 kHz.
    let p = fixture.tensors.get("wav.p.mono").unwrap();
    let one = enc.encode_samples(&[&p.data], 48000).unwrap();
    let first = emb.clone().narrow(0, 0, 1);
    let d: f32 = (one - first).abs().max().into_scalar();
    assert!(d < 1e-6, "{d}");

    // Bad samples are typed errors.
    let e = enc.encode_samples(&[&[]], 48000).unwrap_err();
    assert!(matches!(e, AudioError::BadInput { .. }), "{e}");
    let e = enc.encode_samples(&[&[0.0, f32::NAN]], 48000).unwrap_err();
    assert!(matches!(e, AudioError::BadInput { .. }), "{e}");
    let e = enc.encode_samples(&[&[0.0, 0.1]], 0).unwrap_err();
    assert!(matches!(e, AudioError::BadInput { .. }), "{e}");
    let e = enc.encode_files::<&Path>(&[]).unwrap_err();
    assert!(matches!(e, AudioError::BadInput { .. }), "{e}");
    let e = enc.encode_files(&[data("variant")]).unwrap_err();
    assert!(e.to_string().contains("variant"), "{e}");
}

#[test]
#[allow(clippy::type_complexity)]
fn checkpoint_errors_name_file_and_key() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let cfg = variant_config();
    let load = |p: &Path| ClapAudioEncoder::from_file_with_config(p, cfg.clone(), &dev);

    let e = load(&dir.path().join("absent.pth")).unwrap_err();
    assert!(e.to_string().contains("absent.pth"), "{e}");
    let e = load(dir.path()).unwrap_err();
    assert!(matches!(e, AudioError::Core(CoreError::Io { .. })), "{e}");
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").unwrap();
    let e = load(&empty).unwrap_err();
    assert!(e.to_string().contains("empty.pth"), "{e}");
    let junk = dir.path().join("junk.pth");
    std::fs::write(&junk, b"PK\x03\x04 definitely not a zip").unwrap();
    let e = load(&junk).unwrap_err();
    assert!(e.to_string().contains("junk.pth"), "{e}");

    // Edit the safetensors file: drop, reshape and add tensors.
    let bytes = std::fs::read(data("variant/clap.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let rewrite = |name: &str, edit: &dyn Fn(&str, Vec<usize>) -> Option<(String, Vec<usize>)>| {
        let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (k, v) in st.tensors() {
            if let Some((k2, shape)) = edit(&k, v.shape().to_vec()) {
                let n: usize = shape.iter().product();
                let mut d = v.data().to_vec();
                d.resize(n * 4, 0);
                owned.push((k2, shape, d));
            }
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = owned
            .iter()
            .map(|(k, s, d)| {
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                        .unwrap(),
                )
            })
            .collect();
        let p = dir.path().join(name);
        safetensors::serialize_to_file(views, None, &p).unwrap();
        p
    };
    let p = rewrite("missing.safetensors", &|k, s| {
        (k != "audio_encoder.base.conv_block3.conv2.weight").then(|| (k.to_string(), s))
    });
    let e = load(&p).unwrap_err();
    assert!(
        matches!(e, AudioError::Core(CoreError::MissingTensor { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("missing.safetensors")
            && e.to_string()
                .contains("audio_encoder.base.conv_block3.conv2.weight"),
        "{e}"
    );
    let p = rewrite("shape.safetensors", &|k, s| {
        Some((
            k.to_string(),
            if k == "audio_encoder.projection.linear2.weight" {
                vec![12, 13]
            } else {
                s
            },
        ))
    });
    let e = load(&p).unwrap_err();
    assert!(
        matches!(e, AudioError::Core(CoreError::ShapeMismatch { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("audio_encoder.projection.linear2.weight"),
        "{e}"
    );
    let p = rewrite("extra.safetensors", &|k, s| {
        Some((
            if k == "audio_encoder.base.fc1.bias" {
                "audio_encoder.base.fc2.bias".to_string()
            } else {
                k.to_string()
            },
            s,
        ))
    });
    let e = load(&p).unwrap_err();
    assert!(e.to_string().contains("extra.safetensors"), "{e}");
    let p = rewrite("notclap.safetensors", &|k, s| {
        Some((k.replace("audio_encoder.", "caption_encoder."), s))
    });
    let e = load(&p).unwrap_err();
    assert!(matches!(e, AudioError::Checkpoint { .. }), "{e}");
    // A truncated safetensors file.
    let p = dir.path().join("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(&p).unwrap_err();
    assert!(e.to_string().contains("trunc.safetensors"), "{e}");
}
