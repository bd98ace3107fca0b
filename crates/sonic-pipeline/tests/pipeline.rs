//! Determinism and parameter errors of text-to-image (whole runs against diffusers:
//! `sonic-parity`'s tests).

use sonic_core::fixtures::fixtures_root;
use sonic_pipeline::{PipelineError, StableDiffusion, TextToImage, text_to_image};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures not found")
}

fn small(prompt: &str) -> TextToImage {
    let mut req = TextToImage::new(prompt);
    req.steps = 3;
    req.width = 64;
    req.height = 48;
    req.seed = 11;
    req
}

#[test]
fn same_seed_same_image_and_progress_is_reported() {
    let device = sonic_core::device::default_device().unwrap();
    let sd = StableDiffusion::from_dir(&root().join("sd15-tiny"), &device).unwrap();
    let mut steps = Vec::new();
    let a = text_to_image(&sd, &small("a fox"), &mut |p| steps.push((p.step, p.total))).unwrap();
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    let b = text_to_image(&sd, &small("a fox"), &mut |_| {}).unwrap();
    assert_eq!(a.images.dims(), [1, 3, 48, 64]);
    let (ha, hb) = (
        sonic_core::fixtures::to_host(&a.latents).unwrap(),
        sonic_core::fixtures::to_host(&b.latents).unwrap(),
    );
    assert_eq!(ha, hb);
    let mut other = small("a fox");
    other.seed = 12;
    let c = text_to_image(&sd, &other, &mut |_| {}).unwrap();
    assert_ne!(ha, sonic_core::fixtures::to_host(&c.latents).unwrap());
}

#[test]
fn every_scheduler_runs_with_a_batch() {
    let device = sonic_core::device::default_device().unwrap();
    let sd = StableDiffusion::from_dir(&root().join("sd21-tiny"), &device).unwrap();
    for name in [
        "ddim",
        "pndm",
        "euler",
        "euler-karras",
        "dpm++2m",
        "dpm++2m-karras",
    ] {
        let mut req = small("rain on a roof");
        req.scheduler = name.into();
        req.batch_size = 2;
        let out = text_to_image(&sd, &req, &mut |_| {}).unwrap();
        assert_eq!(out.images.dims(), [2, 3, 48, 64], "{name}");
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let device = sonic_core::device::default_device().unwrap();
    let sd = StableDiffusion::from_dir(&root().join("sd15-tiny"), &device).unwrap();
    let mut req = small("x");
    req.width = 60;
    let e = text_to_image(&sd, &req, &mut |_| {}).unwrap_err();
    assert!(
        matches!(e, PipelineError::InvalidParameter { name: "width", .. }),
        "{e}"
    );
    let mut req = small("x");
    req.steps = 0;
    assert!(matches!(
        text_to_image(&sd, &req, &mut |_| {}),
        Err(PipelineError::InvalidParameter { name: "steps", .. })
    ));
    let mut req = small("x");
    req.scheduler = "nope".into();
    assert!(matches!(
        text_to_image(&sd, &req, &mut |_| {}),
        Err(PipelineError::Scheduler(_))
    ));
    // A prompt longer than 77 tokens is truncated (and logged), not an error.
    let long = "word ".repeat(200);
    assert!(text_to_image(&sd, &small(&long), &mut |_| {}).is_ok());
}

#[test]
fn png_output_is_byte_identical_across_runs() {
    let device = sonic_core::device::default_device().unwrap();
    let sd = StableDiffusion::from_dir(&root().join("sd15-tiny"), &device).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let meta = vec![("sonic:prompt".to_string(), "a fox".to_string())];
    let mut bytes = Vec::new();
    for i in 0..2 {
        let out = text_to_image(&sd, &small("a fox"), &mut |_| {}).unwrap();
        let p = tmp.path().join(format!("{i}.png"));
        sonic_pipeline::output::save_pngs(&out.images, &p, &meta).unwrap();
        bytes.push(std::fs::read(&p).unwrap());
    }
    assert_eq!(bytes[0], bytes[1]);
    // Only the final file is left in the folder: no temporary files.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}

#[test]
fn model_index_with_unknown_component_class_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("sd15-tiny/model_index.json")).unwrap();
    std::fs::write(
        tmp.path().join("model_index.json"),
        text.replace("UNet2DConditionModel", "UNet2DModel"),
    )
    .unwrap();
    let device = sonic_core::device::default_device().unwrap();
    let e = match StableDiffusion::from_dir(tmp.path(), &device) {
        Err(e) => e,
        Ok(_) => panic!("accepted an unsupported unet class"),
    };
    assert!(
        matches!(e, PipelineError::UnsupportedComponent { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("model_index.json"), "{e}");
}
