//! The SonicDiffusion pipeline on the tiny fixtures: audio changes the image, strength 0 is the
//! text-only image, seeds reproduce, mixing and interpolation, bad weights.

use sonic_core::fixtures::{fixtures_root, to_host};
use sonic_pipeline::sonic::{AudioSource, SonicPipeline};
use sonic_pipeline::{AudioToImage, PipelineError, StableDiffusion, TextToImage, text_to_image};
use sonic_unet::AdapterStrength;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures not found")
}

fn asset(name: &str) -> AudioSource {
    AudioSource::File(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/assets")
            .join(name),
    )
}

fn pipe() -> SonicPipeline {
    let f = root().join("sonic-tiny");
    SonicPipeline::builder()
        .model(root().join("sd15-tiny"))
        .clap(f.join("clap.safetensors"))
        .projector(f.join("projector.safetensors"))
        .projector_config(f.join("config.json"))
        .adapters(f.join("adapters.safetensors"))
        .build()
        .unwrap()
}

fn req(prompt: &str, f: f32) -> AudioToImage {
    AudioToImage {
        prompt: prompt.into(),
        steps: 3,
        seed: 9,
        width: 64,
        height: 64,
        audio_strength: AdapterStrength::Global(f),
        ..AudioToImage::default()
    }
}

#[test]
fn audio_strength_zero_is_the_text_only_image_and_audio_matters() {
    let p = pipe();
    let thunder = p.embed(&[asset("thunder.wav")]).unwrap();
    let birds = p.embed(&[asset("birdsong.wav")]).unwrap();
    let a = p
        .generate(thunder.clone(), &req("a field", 1.0), &mut |_| {})
        .unwrap();
    let a2 = p
        .generate(thunder.clone(), &req("a field", 1.0), &mut |_| {})
        .unwrap();
    let b = p
        .generate(birds, &req("a field", 1.0), &mut |_| {})
        .unwrap();
    assert_eq!(
        to_host(&a.latents).unwrap(),
        to_host(&a2.latents).unwrap(),
        "same seed, same image"
    );
    assert_ne!(
        to_host(&a.latents).unwrap(),
        to_host(&b.latents).unwrap(),
        "different audio, same image"
    );

    let zero = p
        .generate(thunder, &req("a field", 0.0), &mut |_| {})
        .unwrap();
    let sd = StableDiffusion::from_dir(&root().join("sd15-tiny"), &p.sd.device).unwrap();
    let mut t = TextToImage::new("a field");
    t.steps = 3;
    t.seed = 9;
    t.width = 64;
    t.height = 64;
    let text = text_to_image(&sd, &t, &mut |_| {}).unwrap();
    assert_eq!(
        to_host(&zero.latents).unwrap(),
        to_host(&text.latents).unwrap()
    );
}

#[test]
fn mixing_and_interpolation() {
    let p = pipe();
    let m = p
        .mix(&[(asset("thunder.wav"), 0.7), (asset("rain.wav"), 0.3)])
        .unwrap();
    assert_eq!(m.dims()[0], 1);
    let norm: f32 = to_host(&m)
        .unwrap()
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-5,
        "mixed embedding must be unit length, got {norm}"
    );
    // A mix with all the weight on one sound is that sound.
    let only = p
        .mix(&[(asset("thunder.wav"), 1.0), (asset("rain.wav"), 0.0)])
        .unwrap();
    let thunder = p.embed(&[asset("thunder.wav")]).unwrap();
    let c =
        sonic_core::fixtures::compare_slices(&to_host(&only).unwrap(), &to_host(&thunder).unwrap());
    assert!(c.max_abs < 1e-6, "{c:?}");
    assert!(matches!(
        p.mix(&[(asset("thunder.wav"), 0.0)]),
        Err(PipelineError::InvalidParameter { .. })
    ));
    let frames = p
        .interpolate(&asset("thunder.wav"), &asset("birdsong.wav"), 3)
        .unwrap();
    assert_eq!(frames.dims()[0], 3);
    let out = p.generate(frames, &req("", 1.0), &mut |_| {}).unwrap();
    assert_eq!(out.images.dims(), [3, 3, 64, 64]);
}

#[test]
fn separate_text_and_audio_guidance_runs_three_branches() {
    let p = pipe();
    let e = p.embed(&[asset("campfire.wav")]).unwrap();
    let mut r = req("a forest", 1.0);
    r.audio_guidance_scale = Some(3.0);
    let out = p.generate(e.clone(), &r, &mut |_| {}).unwrap();
    let single = p.generate(e, &req("a forest", 1.0), &mut |_| {}).unwrap();
    assert_ne!(
        to_host(&out.latents).unwrap(),
        to_host(&single.latents).unwrap()
    );
}

#[test]
fn adapters_that_do_not_fit_are_a_typed_error() {
    let f = root().join("sonic-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors =
        sonic_core::weights::read_safetensors_f32(&f.join("adapters.safetensors")).unwrap();
    let t = tensors
        .iter_mut()
        .find(|t| t.name.ends_with("attn_adapter.to_q.weight"))
        .unwrap();
    t.shape = vec![t.shape[1], t.shape[0] * 2];
    t.data.extend(t.data.clone());
    let bad = tmp.path().join("adapters.safetensors");
    sonic_core::weights::write_safetensors_f32(&bad, &tensors, None).unwrap();
    let e = SonicPipeline::builder()
        .model(root().join("sd15-tiny"))
        .clap(f.join("clap.safetensors"))
        .projector(f.join("projector.safetensors"))
        .projector_config(f.join("config.json"))
        .adapters(&bad)
        .build();
    let e = match e {
        Err(e) => e.to_string(),
        Ok(_) => panic!("mismatched adapters accepted"),
    };
    assert!(
        e.contains("attn_adapter.to_q.weight") && e.contains("adapters.safetensors"),
        "{e}"
    );
}

#[test]
fn a_cancelled_token_stops_generation_and_edits_at_the_next_step() {
    use sonic_pipeline::edit::{EditMode, EditRequest};
    use sonic_pipeline::sampling::CancelToken;
    let p = pipe();
    let thunder = p.embed(&[asset("thunder.wav")]).unwrap();
    // Cancelled after the first step: the run ends there with `Cancelled`.
    let token = CancelToken::new();
    let mut r = req("a field", 1.0);
    r.cancel = Some(token.clone());
    let mut steps = 0;
    let e = p
        .generate(thunder.clone(), &r, &mut |s| {
            steps = s.step;
            token.cancel();
        })
        .unwrap_err();
    assert!(matches!(e, PipelineError::Cancelled), "{e}");
    assert_eq!(steps, 1);
    // Edits too (SDEdit and PnP sampling check the same token).
    let image = burn::tensor::Tensor::<4>::zeros([1, 3, 64, 64], &p.sd.device);
    for mode in [EditMode::SdEdit, EditMode::Pnp] {
        let token = CancelToken::new();
        token.cancel();
        let mut e = EditRequest {
            mode,
            ..EditRequest::default()
        };
        e.generation.steps = 3;
        e.generation.cancel = Some(token);
        let err = p
            .edit(image.clone(), thunder.clone(), &e, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled), "{mode:?}: {err}");
    }
    // A token never cancelled changes nothing.
    let mut r = req("a field", 1.0);
    r.cancel = Some(CancelToken::new());
    let with = p.generate(thunder.clone(), &r, &mut |_| {}).unwrap();
    let without = p
        .generate(thunder, &req("a field", 1.0), &mut |_| {})
        .unwrap();
    assert_eq!(
        to_host(&with.images).unwrap(),
        to_host(&without.images).unwrap()
    );
}
