//! Editing on the tiny fixtures (sd15-tiny + sonic-tiny): image input, DDIM inversion round
//! trip, Plug-and-Play injection, SDEdit, and typed errors for bad images.

use burn::tensor::Tensor;
use sonic_core::fixtures::{fixtures_root, to_host};
use sonic_pipeline::edit::{
    EditMode, EditRequest, PnpOptions, SourceConditioning, ddim_invert, ddim_scheduler, edit_file,
    encode_image, pnp_sample, sdedit,
};
use sonic_pipeline::image_input::{ImageOptions, load_image};
use sonic_pipeline::sampling::{Conditioning, Guidance, ProgressOnly, denoise};
use sonic_pipeline::sonic::{AudioSource, SonicPipeline};
use sonic_pipeline::{AudioToImage, PipelineError, StableDiffusion};
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

/// A smooth 70x50 test picture (gradients and a disc), written as PNG.
fn test_png(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(70, 50, |x, y| {
        let d = ((x as f32 - 35.0).powi(2) + (y as f32 - 25.0).powi(2)).sqrt();
        let disc = if d < 15.0 { 200 } else { 40 };
        image::Rgb([(x * 3) as u8, (y * 4) as u8, disc])
    });
    let p = dir.join("in.png");
    img.save(&p).unwrap();
    p
}

fn l2(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    let (a, b) = (to_host(a).unwrap(), to_host(b).unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt()
}

fn max_abs(a: &Tensor<4>, b: &Tensor<4>) -> f32 {
    let (a, b) = (to_host(a).unwrap(), to_host(b).unwrap());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn rms(a: &Tensor<4>) -> f32 {
    let a = to_host(a).unwrap();
    (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt()
}

struct Fixture {
    pipe: SonicPipeline,
    latent: Tensor<4>,
    tokens: Tensor<3>,
    null: Tensor<3>,
}

fn fixture() -> Fixture {
    {
        let pipe = pipe();
        let dir = tempfile::tempdir().unwrap();
        let opts = ImageOptions {
            size: Some((64, 64)),
            ..ImageOptions::default()
        };
        let img = load_image(&test_png(dir.path()), &opts, &pipe.sd.device).unwrap();
        let latent = encode_image(&pipe.sd, img).unwrap();
        let emb = pipe.embed(&[asset("thunder.wav")]).unwrap();
        let tokens = pipe.projector.forward(emb).unwrap();
        let null = pipe.projector.null_tokens(1, &pipe.sd.device).unwrap();
        Fixture {
            pipe,
            latent,
            tokens,
            null,
        }
    }
}

const STEPS: usize = 10;

/// Plain DDIM from `x_T` with the empty prompt, no guidance, no adapters.
fn reconstruct(sd: &StableDiffusion, x_t: Tensor<4>) -> Tensor<4> {
    let mut sched = ddim_scheduler(sd, STEPS).unwrap();
    let text = sd.encode_prompts(&[String::new()]).unwrap();
    let cond = Conditioning {
        text,
        adapter: None,
    };
    let mut cb = |_: usize, _: usize, _: f64| {};
    let mut obs = ProgressOnly::new(&mut cb, STEPS);
    denoise(
        &sd.unet,
        sched.as_mut(),
        x_t,
        &cond,
        Guidance::None,
        0,
        &mut obs,
    )
    .unwrap()
}

fn gen_req(prompt: &str, strength: f32) -> AudioToImage {
    AudioToImage {
        prompt: prompt.into(),
        steps: STEPS,
        seed: 42,
        scheduler: "ddim".into(),
        audio_strength: AdapterStrength::Global(strength),
        ..AudioToImage::default()
    }
}

/// Plain DDIM from `x_T` over `steps` steps, empty prompt, no guidance, no adapters.
fn reconstruct_n(sd: &StableDiffusion, x_t: Tensor<4>, steps: usize) -> Tensor<4> {
    let mut sched = ddim_scheduler(sd, steps).unwrap();
    let text = sd.encode_prompts(&[String::new()]).unwrap();
    let cond = Conditioning {
        text,
        adapter: None,
    };
    let mut cb = |_: usize, _: usize, _: f64| {};
    let mut obs = ProgressOnly::new(&mut cb, steps);
    denoise(
        &sd.unet,
        sched.as_mut(),
        x_t,
        &cond,
        Guidance::None,
        0,
        &mut obs,
    )
    .unwrap()
}

#[test]
fn inversion_then_sampling_returns_the_start_latent() {
    let f = fixture();
    let sd = &f.pipe.sd;
    let src = SourceConditioning::new(sd, "", None).unwrap();
    // The tiny VAE's latents are tiny (rms ~1.4e-2) next to the UNet's noise predictions, so
    // the round trip is measured on a unit-scale latent (the scale of real SD latents) as well.
    let unit = sonic_pipeline::text_to_image::seeded_noise([1, 4, 8, 8], 7, &sd.device);
    for (name, latent, steps, bound) in [
        ("unit-scale latent, 50 steps", unit.clone(), 50, 0.02),
        ("unit-scale latent, 10 steps", unit, 10, 0.05),
        (
            "tiny-VAE latent, 50 steps",
            f.latent.clone(),
            50,
            f32::INFINITY,
        ),
    ] {
        let mut calls = 0;
        let inv = ddim_invert(sd, latent.clone(), steps, &src, &mut |_, _, _| calls += 1).unwrap();
        assert_eq!(calls, steps);
        assert_eq!(inv.latents_per_step.len(), steps);
        let back = reconstruct_n(sd, inv.noisiest(), steps);
        let (err, scale) = (rms(&diff(&back, &latent)), rms(&latent));
        let drift = rms(&diff(&inv.noisiest(), &latent));
        eprintln!(
            "{name}: round-trip rms err {err:.3e} (max {:.3e}), latent rms {scale:.3e}, x_T moved {drift:.3e}",
            max_abs(&back, &latent)
        );
        assert!(
            err < bound * scale,
            "{name}: round-trip error {err} vs latent rms {scale}"
        );
    }
}

fn diff(a: &Tensor<4>, b: &Tensor<4>) -> Tensor<4> {
    a.clone() - b.clone()
}

fn pnp_run(
    f: &Fixture,
    f_t: f64,
    attn_t: f64,
    strength: f32,
    prompt: &str,
    tokens: bool,
) -> (Tensor<4>, Tensor<4>) {
    let sd = &f.pipe.sd;
    let req = gen_req(prompt, strength);
    let null = tokens.then(|| (f.null.clone(), req.audio_strength.clone()));
    let src = SourceConditioning::new(sd, "", null).unwrap();
    let inv = ddim_invert(sd, f.latent.clone(), STEPS, &src, &mut |_, _, _| {}).unwrap();
    let pnp = PnpOptions {
        pnp_f_t: f_t,
        pnp_attn_t: attn_t,
        ..PnpOptions::default()
    };
    let toks = tokens.then_some((&f.tokens, &f.null));
    let out = pnp_sample(sd, &inv, &req, &pnp, &src, toks, &mut |_, _, _| {}).unwrap();
    (out, inv.noisiest())
}

#[test]
fn pnp_injection_keeps_the_structure() {
    let f = fixture();
    let (full, _) = pnp_run(&f, 1.0, 1.0, 1.0, "a stormy sea", true);
    let (none, _) = pnp_run(&f, 0.0, 0.0, 1.0, "a stormy sea", true);
    let (d_full, d_none) = (l2(&full, &f.latent), l2(&none, &f.latent));
    eprintln!("PnP L2 to source: thresholds 1.0 -> {d_full:.4}, thresholds 0 -> {d_none:.4}");
    assert!(d_full < d_none, "{d_full} !< {d_none}");
}

#[test]
fn pnp_with_audio_strength_zero_is_the_plain_reconstruction() {
    let f = fixture();
    // Strength 0 with adapters = no adapters at all (bit for bit up to float noise).
    let (zero, _) = pnp_run(&f, 0.8, 0.8, 0.0, "", true);
    let (plain, x_t) = pnp_run(&f, 0.8, 0.8, 0.0, "", false);
    let d = max_abs(&zero, &plain);
    eprintln!("PnP strength 0 vs no adapters: max |d| {d:.3e}");
    assert!(d < 1e-5, "{d}");
    // With the empty prompt, PnP differs from the plain DDIM reconstruction only through the
    // inversion error (the source branch runs on the stored latents): measured, and far
    // closer than an audio-driven edit.
    let rec = reconstruct(&f.pipe.sd, x_t);
    let (e, scale) = (max_abs(&zero, &rec), rms(&f.latent));
    eprintln!("PnP strength 0 vs plain reconstruction: max |d| {e:.3e}, latent rms {scale:.3e}");
    let (audio, _) = pnp_run(&f, 0.8, 0.8, 1.0, "a stormy sea", true);
    let a = max_abs(&audio, &rec);
    eprintln!("PnP strength 1 + prompt vs plain reconstruction: max |d| {a:.3e}");
    assert!(e < a, "{e} !< {a}");
}

#[test]
fn sdedit_strength_zero_returns_the_input_and_strength_moves_it() {
    let f = fixture();
    let sd = &f.pipe.sd;
    let req = gen_req("a stormy sea", 1.0);
    let toks = Some((&f.tokens, &f.null));
    let same = sdedit(sd, f.latent.clone(), 0.0, &req, toks, &mut |_, _, _| {}).unwrap();
    assert_eq!(to_host(&same).unwrap(), to_host(&f.latent).unwrap());
    let mut steps = 0;
    let half = sdedit(sd, f.latent.clone(), 0.5, &req, toks, &mut |_, _, _| {
        steps += 1
    })
    .unwrap();
    assert_eq!(steps, STEPS / 2);
    assert!(l2(&half, &f.latent) > 0.0);
    assert!(sdedit(sd, f.latent.clone(), 1.5, &req, toks, &mut |_, _, _| {}).is_err());
}

#[test]
fn image_input_size_rule_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let png = test_png(dir.path());
    let dev = sonic_core::device::default_device().unwrap();
    let t = load_image(&png, &ImageOptions::default(), &dev).unwrap();
    assert_eq!(
        t.dims(),
        [1, 3, 48, 64],
        "70x50 centre-cropped to multiples of 8"
    );
    let v = to_host(&t).unwrap();
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    let opts = ImageOptions {
        size: Some((32, 24)),
        ..ImageOptions::default()
    };
    assert_eq!(
        load_image(&png, &opts, &dev).unwrap().dims(),
        [1, 3, 24, 32]
    );
    // JPEG and WebP decode too.
    let img = image::open(&png).unwrap();
    for ext in ["jpg", "webp"] {
        let p = dir.path().join(format!("in.{ext}"));
        img.save(&p).unwrap();
        assert_eq!(
            load_image(&p, &ImageOptions::default(), &dev)
                .unwrap()
                .dims(),
            [1, 3, 48, 64],
            "{ext}"
        );
    }
    // Budgets.
    let small = ImageOptions {
        max_pixels: 1000,
        ..ImageOptions::default()
    };
    assert!(matches!(
        load_image(&png, &small, &dev),
        Err(PipelineError::ImageTooLarge { .. })
    ));
    let small_src = ImageOptions {
        max_source_pixels: 1000,
        ..ImageOptions::default()
    };
    assert!(matches!(
        load_image(&png, &small_src, &dev),
        Err(PipelineError::ImageTooLarge {
            width: 70,
            height: 50,
            ..
        })
    ));
}

#[test]
fn corrupt_or_missing_image_is_a_typed_error_and_leaves_no_output() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.png");
    let mut bytes = std::fs::read(test_png(dir.path())).unwrap();
    bytes.truncate(60);
    std::fs::write(&bad, &bytes).unwrap();
    let garbage = dir.path().join("garbage.jpg");
    std::fs::write(&garbage, b"this is not an image").unwrap();
    let missing = dir.path().join("missing.png");
    let emb = f.pipe.embed(&[asset("rain.wav")]).unwrap();
    let req = EditRequest {
        mode: EditMode::SdEdit,
        strength: 0.5,
        generation: gen_req("", 1.0),
        ..EditRequest::default()
    };
    for input in [&bad, &garbage, &missing] {
        let out = dir.path().join("out.png");
        let err = edit_file(
            &f.pipe,
            input,
            &ImageOptions::default(),
            emb.clone(),
            &req,
            &out,
            &[],
            &mut |_| {},
        )
        .unwrap_err();
        match &err {
            PipelineError::Image { path, .. } => assert_eq!(path, input),
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .contains(input.file_name().unwrap().to_str().unwrap())
        );
        assert!(!out.exists());
    }
    // And a good image writes its PNG.
    let out = dir.path().join("ok.png");
    let good = test_png(dir.path());
    let written = edit_file(
        &f.pipe,
        &good,
        &ImageOptions::default(),
        emb,
        &req,
        &out,
        &[],
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(written, vec![out.clone()]);
    assert!(out.exists());
}
