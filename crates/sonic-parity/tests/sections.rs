//! Every SD and SonicDiffusion section against the PyTorch references, through the registry
//! that `sonic parity` uses: CLIP tokenizer ids and text encoder (transformers), VAE encode /
//! decode, UNet output and block intermediates, whole text-to-image pipelines (diffusers), the
//! audio projector with every intermediate (the official code), on the SD 1.x and 2.x tiny
//! fixtures, the sonic fixtures and the projector's own variant (64 tokens, audio_dim 40 ->
//! context 30, 3 heads x 8, 3 layers, f16 weights, both block modes; made by
//! tools/make_test_pickle.py, kept in crates/sonic-projector/tests/data/variant64).

use sonic_core::fixtures::{CaseResult, Fixture};
use sonic_test_kit::{assert_all_pass, device, fixture};
use std::path::Path;

fn run_on(fixture: &Fixture, label: &str, section: &str) -> Vec<CaseResult> {
    let runner = sonic_parity::section(section).expect("a registered section");
    let t = std::time::Instant::now();
    let results = runner
        .run(fixture, &device())
        .unwrap_or_else(|e| panic!("{label} {section}: {e}"));
    println!("{label} {section}: ran in {:.2?}", t.elapsed());
    assert_all_pass(&format!("{label} {section}"), &results);
    assert!(results.iter().all(|r| r.id.starts_with(section)));
    results
}

fn run(name: &str, section: &str) -> Vec<CaseResult> {
    run_on(&fixture(name), name, section)
}

#[test]
fn text_encoder_matches_transformers_sd15_tiny() {
    assert!(run("sd15-tiny", "text_encoder").len() >= 2);
}

#[test]
fn text_encoder_matches_transformers_sd21_tiny() {
    assert!(run("sd21-tiny", "text_encoder").len() >= 2);
}

#[test]
fn vae_matches_diffusers_sd15_tiny() {
    assert!(run("sd15-tiny", "vae").len() >= 3);
}

#[test]
fn vae_matches_diffusers_sd21_tiny() {
    assert!(run("sd21-tiny", "vae").len() >= 3);
}

#[test]
fn unet_matches_diffusers_sd15_tiny() {
    // out + 9 intermediates at least.
    assert!(run("sd15-tiny", "unet").len() >= 10);
}

#[test]
fn unet_matches_diffusers_sd21_tiny() {
    assert!(run("sd21-tiny", "unet").len() >= 10);
}

#[test]
fn pipeline_matches_diffusers_sd15_tiny() {
    assert_eq!(run("sd15-tiny", "pipeline").len(), 6);
}

#[test]
fn pipeline_matches_diffusers_sd21_tiny() {
    assert_eq!(run("sd21-tiny", "pipeline").len(), 6);
}

#[test]
fn sonic_tiny_projector_matches_pytorch() {
    let results = run("sonic-tiny", "projector");
    // out + 14 projection outputs + 4 x (attn, out)
    assert_eq!(results.len(), 1 + 14 + 8);
    assert!(results.iter().any(|r| r.id == "projector.0.out"));
    assert!(
        results
            .iter()
            .any(|r| r.id == "projector.0.emb_projection.10")
    );
    assert!(results.iter().any(|r| r.id == "projector.0.block.3.attn"));
}

#[test]
fn full_size_projector_matches_pytorch() {
    let results = run("sonic-projector-full", "projector");
    assert_eq!(results.len(), 1 + 6);
    assert!(
        results
            .iter()
            .all(|r| r.tol == sonic_parity::projector::PROJECTOR_TOL)
    );
}

#[test]
fn unseen_projector_variant_matches_pytorch_in_both_modes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sonic-projector/tests/data/variant64");
    let results = run_on(&Fixture::open(&dir).unwrap(), "variant64", "projector");
    assert!(results.iter().any(|r| r.id == "projector.1.block.2.out"));
    // Both modes ran: case 0 faithful, case 1 chained.
    assert!(
        results
            .iter()
            .any(|r| r.id == "projector.0.emb_projection.13")
    );
}

#[test]
fn lcm_scheduler_matches_diffusers_with_the_recorded_noise() {
    let results = run("fast-tiny", "schedulers");
    // Two loops (4 and 8 steps): timesteps, sigma, and per step input, denoised, prev_sample.
    assert_eq!(results.len(), 2 * 2 + 3 * (4 + 8));
    assert!(
        results
            .iter()
            .any(|r| r.id == "schedulers.lcm_sd1_8.7.denoised")
    );
}

#[test]
fn tiny_autoencoder_matches_diffusers() {
    let results = run("fast-tiny", "vae_tiny");
    assert_eq!(results.len(), 2);
}

#[test]
fn unet_with_lora_matches_diffusers_in_every_layout() {
    let results = run("fast-tiny", "unet_lora");
    for layout in ["diffusers", "kohya", "peft"] {
        for scale in ["1.0", "0.5"] {
            let id = format!("unet_lora.{layout}_{scale}");
            assert!(results.iter().any(|r| r.id == id), "{id}");
        }
    }
}

/// A LoRA at scale 0 leaves every weight as it was, bit for bit; merged, it changes them; and
/// unmerging restores them bit for bit. Checked on the weights themselves, in all three layouts.
#[test]
fn lora_at_scale_zero_is_the_base_and_unmerge_restores_it_exactly() {
    use burn::module::Module;
    use sonic_core::lora::{LoraComponent, LoraFile};
    let fixture = fixture("fast-tiny");
    let device = device();
    let base =
        sonic_unet::UNet2DConditionModel::from_dir(&fixture.dir.join("unet"), &device).unwrap();
    let weights = |m: &sonic_unet::UNet2DConditionModel| -> Vec<f32> {
        let mut v = Vec::new();
        struct Collect<'a>(&'a mut Vec<f32>);
        impl burn::module::ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(
                &mut self,
                param: &burn::module::Param<burn::tensor::Tensor<D>>,
            ) {
                self.0.extend(
                    param
                        .val()
                        .into_data()
                        .try_into_vec::<f32>()
                        .expect("f32 weights"),
                );
            }
        }
        m.visit(&mut Collect(&mut v));
        v
    };
    let original = weights(&base);
    let names = sonic_unet::UNet2DConditionModel::load_options();
    for file in [
        "lora/pytorch_lora_weights.safetensors",
        "lora_peft/pytorch_lora_weights.safetensors",
        "lora_kohya/lora.safetensors",
    ] {
        let lora = LoraFile::open(&fixture.dir.join(file)).unwrap();
        assert!(lora.targets(LoraComponent::Unet) && !lora.targets(LoraComponent::TextEncoder));
        let (zero, merged) = lora
            .merge_into(base.clone(), LoraComponent::Unet, 0.0, true, &names)
            .unwrap();
        assert!(merged.is_empty(), "{file}");
        assert!(
            weights(&zero) == original,
            "{file}: scale 0 changed a weight"
        );
        // And so the output, bit for bit.
        let (x, t, ehs) = (
            fixture
                .tensors
                .get("lora.sample")
                .unwrap()
                .to_tensor::<4>(&device)
                .unwrap(),
            [601.0f32, 601.0],
            fixture
                .tensors
                .get("lora.ehs")
                .unwrap()
                .to_tensor::<3>(&device)
                .unwrap(),
        );
        let run = |m: &sonic_unet::UNet2DConditionModel| {
            m.forward_with(x.clone(), &t, sonic_unet::UNetInputs::new(ehs.clone()))
                .unwrap()
                .into_data()
        };
        assert_eq!(run(&zero), run(&base), "{file}: scale 0 changed the output");
        let (on, merged) = lora
            .merge_into(base.clone(), LoraComponent::Unet, 1.0, true, &names)
            .unwrap();
        assert_eq!(merged.len(), lora.layers().len(), "{file}");
        assert!(weights(&on) != original, "{file}: the LoRA changed nothing");
        let off = merged.unmerge(on);
        assert!(weights(&off) == original, "{file}: unmerge is not exact");
    }
}

/// Held-out variants (tools/gen_fast_variants.py, tests-data/fast-variants): kohya LoRAs with
/// per-layer alphas on convolutions, time embeddings and feed-forwards; a PEFT file with
/// diffusers' LoraConfig metadata (lora_alpha != r, an alpha pattern); mixed ranks without
/// alphas; text-encoder LoRAs (PEFT and kohya); a 3-level silu AutoencoderTiny on a
/// non-square image; LCM with v-prediction, 20 / 30 original steps, ᾱ_prev edge, clipping;
/// diffusers' StableDiffusionPipeline with LCM + LoRA + tiny autoencoder, end to end.
#[test]
fn held_out_fast_variants_match_diffusers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/fast-variants");
    let fixture = Fixture::open(&dir).unwrap();
    let unet = run_on(&fixture, "fast-variants", "unet_lora");
    assert_eq!(unet.len(), 6);
    let te = run_on(&fixture, "fast-variants", "text_encoder_lora");
    assert_eq!(te.len(), 5);
    assert_eq!(run_on(&fixture, "fast-variants", "vae_tiny").len(), 2);
    let lcm = run_on(&fixture, "fast-variants", "schedulers");
    assert_eq!(lcm.len(), 2 * 2 + 3 * (3 + 5));
    // The whole loop: diffusers' pipeline with the LoRA, LCM and the tiny autoencoder.
    assert_eq!(run_on(&fixture, "fast-variants", "lcm_pipeline").len(), 2);
}
