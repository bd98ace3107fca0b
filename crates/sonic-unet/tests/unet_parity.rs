//! Config validation errors, adapters, feature capture / injection (the UNet output and
//! block intermediates against diffusers: `sonic-parity`'s tests).

use sonic_core::CoreError;
use sonic_core::fixtures::{Fixture, fixtures_root};
use sonic_unet::{UNetConfig, UNetError};
use std::path::Path;

fn root() -> std::path::PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures not found")
}

fn config_with(key: &str, value: serde_json::Value) -> Result<UNetConfig, UNetError> {
    let text = std::fs::read_to_string(root().join("sd15-tiny/unet/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[key] = value;
    UNetConfig::from_json_str(&v.to_string(), Path::new("unet/config.json"))
}

#[test]
fn unsupported_config_values_are_named() {
    for (key, value) in [
        (
            "down_block_types",
            serde_json::json!([
                "SimpleCrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D"
            ]),
        ),
        ("act_fn", serde_json::json!("gelu")),
        ("class_embed_type", serde_json::json!("timestep")),
        ("attention_head_dim", serde_json::json!(7)),
        ("layers_per_block", serde_json::json!([1, 2])),
        (
            "mid_block_type",
            serde_json::json!("UNetMidBlock2DSimpleCrossAttn"),
        ),
    ] {
        let e = config_with(key, value.clone()).unwrap_err();
        match &e {
            UNetError::Core(CoreError::UnsupportedConfig { key: k, path, .. }) => {
                assert!(path.ends_with("config.json"));
                assert!(
                    k == key || (key == "attention_head_dim" && k == "attention_head_dim"),
                    "{key}: error names {k}"
                );
            }
            other => panic!("{key}: wrong error {other:?}"),
        }
    }
    assert!(config_with("use_linear_projection", serde_json::json!(true)).is_ok());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = sonic_core::device::default_device().unwrap();
    let unet = sonic_unet::UNet2DConditionModel::from_dir(&root().join("sd15-tiny/unet"), &device)
        .unwrap();
    let x = burn::tensor::Tensor::<4>::zeros([1, 3, 8, 8], &device);
    let text = burn::tensor::Tensor::<3>::zeros([1, 77, 32], &device);
    assert!(matches!(
        unet.forward(x, &[1.0], text.clone()),
        Err(UNetError::Core(CoreError::BadShape { .. }))
    ));
    let x = burn::tensor::Tensor::<4>::zeros([1, 4, 8, 8], &device);
    let wide = burn::tensor::Tensor::<3>::zeros([1, 77, 48], &device);
    assert!(matches!(
        unet.forward(x.clone(), &[1.0], wide),
        Err(UNetError::Core(CoreError::BadShape { .. }))
    ));
    assert!(matches!(
        unet.forward(x.clone(), &[1.0, 2.0, 3.0], text.clone()),
        Err(UNetError::Core(CoreError::BadShape { .. }))
    ));
    // Odd latent sizes follow diffusers' explicit upsample sizes instead of failing.
    let odd = burn::tensor::Tensor::<4>::zeros([1, 4, 7, 5], &device);
    assert_eq!(
        unet.forward(odd, &[10.0], text).unwrap().dims(),
        [1, 4, 7, 5]
    );
}

#[test]
fn adapters_with_zero_strength_equal_the_plain_unet() {
    let device = sonic_core::device::default_device().unwrap();
    let dir = root().join("sd15-tiny/unet");
    let plain = sonic_unet::UNet2DConditionModel::from_dir(&dir, &device).unwrap();
    let mut with = sonic_unet::UNet2DConditionModel::from_dir(&dir, &device).unwrap();
    let n = with.add_adapters(sonic_unet::AdapterPlacement::OFFICIAL, 32, 0.7, &device);
    assert_eq!(n, with.adapter_count());
    assert!(n > 0);
    let fixture = Fixture::open(&root().join("sd15-tiny")).unwrap();
    let case = &fixture.section("unet").unwrap()[0];
    let x = fixture
        .tensor_of(case, "sample")
        .unwrap()
        .to_tensor::<4>(&device)
        .unwrap();
    let t = fixture.tensor_of(case, "timesteps").unwrap().data.clone();
    let text = fixture
        .tensor_of(case, "encoder_hidden_states")
        .unwrap()
        .to_tensor::<3>(&device)
        .unwrap();
    let tokens = burn::tensor::Tensor::<3>::random(
        [2, 5, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let base = plain.forward(x.clone(), &t, text.clone()).unwrap();
    let zero = with.prepare_adapters(tokens.clone(), sonic_unet::AdapterStrength::Global(0.0));
    let out0 = with
        .forward_with(
            x.clone(),
            &t,
            sonic_unet::UNetInputs::new(text.clone()).adapters(&zero),
        )
        .unwrap();
    let c = sonic_core::fixtures::compare_slices(
        &sonic_core::fixtures::to_host(&out0).unwrap(),
        &sonic_core::fixtures::to_host(&base).unwrap(),
    );
    assert_eq!(c.max_abs, 0.0, "f = 0 must equal the plain UNet");
    let one = with.prepare_adapters(tokens, sonic_unet::AdapterStrength::Global(1.0));
    let out1 = with
        .forward_with(x, &t, sonic_unet::UNetInputs::new(text).adapters(&one))
        .unwrap();
    let c = sonic_core::fixtures::compare_slices(
        &sonic_core::fixtures::to_host(&out1).unwrap(),
        &sonic_core::fixtures::to_host(&base).unwrap(),
    );
    assert!(
        c.max_abs > 1e-6,
        "an adapter at f = 1 with a non-zero gate must change the output"
    );
}

#[test]
fn text_keys_values_prepared_once_give_the_same_output_bit_for_bit() {
    let device = sonic_core::device::default_device().unwrap();
    let dir = root().join("sd15-tiny/unet");
    let mut unet = sonic_unet::UNet2DConditionModel::from_dir(&dir, &device).unwrap();
    unet.add_adapters(sonic_unet::AdapterPlacement::OFFICIAL, 32, 0.7, &device);
    let normal = |shape: [usize; 3]| {
        burn::tensor::Tensor::<3>::random(
            shape,
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        )
    };
    // Batch 3, 13 text tokens (not 77), odd latent size.
    let x = burn::tensor::Tensor::<4>::random(
        [3, 4, 10, 6],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let text = normal([3, 13, 32]);
    let adapters =
        unet.prepare_adapters(normal([3, 5, 32]), sonic_unet::AdapterStrength::Global(1.0));
    let text_kv = unet.prepare_text(text.clone());
    assert!(!text_kv.is_empty());
    assert_eq!(text_kv.text_dims(), [3, 13, 32]);
    let host = |t: &burn::tensor::Tensor<4>| sonic_core::fixtures::to_host(t).unwrap();
    for t in [[981.0f32], [1.0]] {
        let each_call = unet
            .forward_with(
                x.clone(),
                &t,
                sonic_unet::UNetInputs::new(text.clone()).adapters(&adapters),
            )
            .unwrap();
        let once = unet
            .forward_with(
                x.clone(),
                &t,
                sonic_unet::UNetInputs::new(text.clone())
                    .text_kv(&text_kv)
                    .adapters(&adapters),
            )
            .unwrap();
        assert_eq!(host(&each_call), host(&once), "timestep {t:?}");
    }
    // Keys / values of another text change the output (they are used, not recomputed).
    let other = unet.prepare_text(normal([3, 13, 32]));
    let with_other = unet
        .forward_with(
            x.clone(),
            &[500.0],
            sonic_unet::UNetInputs::new(text.clone()).text_kv(&other),
        )
        .unwrap();
    let plain = unet.forward(x.clone(), &[500.0], text.clone()).unwrap();
    assert_ne!(host(&with_other), host(&plain));
    // Keys / values of a text of another shape are refused.
    for wrong in [normal([2, 13, 32]), normal([3, 7, 32])] {
        let kv = unet.prepare_text(wrong);
        assert!(matches!(
            unet.forward_with(
                x.clone(),
                &[1.0],
                sonic_unet::UNetInputs::new(text.clone()).text_kv(&kv)
            ),
            Err(UNetError::Core(CoreError::BadShape { .. }))
        ));
    }
}

#[test]
fn captured_features_can_be_injected() {
    use sonic_unet::hooks::{BankMode, FeatureBank};
    let device = sonic_core::device::default_device().unwrap();
    let unet = sonic_unet::UNet2DConditionModel::from_dir(&root().join("sd15-tiny/unet"), &device)
        .unwrap();
    let text = burn::tensor::Tensor::<3>::random(
        [1, 77, 32],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let a = burn::tensor::Tensor::<4>::random(
        [1, 4, 8, 8],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let b = burn::tensor::Tensor::<4>::random(
        [1, 4, 8, 8],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let resnets = vec![
        "up_blocks.1.resnets.1".to_string(),
        "up_blocks.1.resnets.2".to_string(),
    ];
    let attns = vec![
        "up_blocks.1.attentions.1.transformer_blocks.0.attn1".to_string(),
        "up_blocks.2.attentions.0.transformer_blocks.0.attn1".to_string(),
    ];
    let mut bank = FeatureBank::capture(resnets, attns);
    let out_a = unet
        .forward_with(
            a.clone(),
            &[500.0],
            sonic_unet::UNetInputs::new(text.clone()).hook(&mut bank),
        )
        .unwrap();
    assert_eq!(bank.residuals.len(), 2);
    assert_eq!(bank.qk.len(), 2);
    let host = |t: &burn::tensor::Tensor<4>| sonic_core::fixtures::to_host(t).unwrap();
    // Injecting a run's own features changes nothing.
    bank.mode = BankMode::Inject;
    let again = unet
        .forward_with(
            a,
            &[500.0],
            sonic_unet::UNetInputs::new(text.clone()).hook(&mut bank),
        )
        .unwrap();
    assert_eq!(host(&again), host(&out_a));
    // Injecting them into another input changes its output.
    let plain_b = unet.forward(b.clone(), &[500.0], text.clone()).unwrap();
    let injected_b = unet
        .forward_with(
            b,
            &[500.0],
            sonic_unet::UNetInputs::new(text).hook(&mut bank),
        )
        .unwrap();
    let c = sonic_core::fixtures::compare_slices(&host(&injected_b), &host(&plain_b));
    assert!(c.max_abs > 1e-5, "injection had no effect");
}

#[test]
fn adapters_from_the_official_pickle_layout_equal_safetensors() {
    let device = sonic_core::device::default_device().unwrap();
    let dir = root().join("sd15-tiny/unet");
    let st = root().join("sonic-tiny/adapters.safetensors");
    let pt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/adapters_tiny.pt");
    let (a, pa) = sonic_unet::UNet2DConditionModel::from_dir(&dir, &device)
        .unwrap()
        .with_adapters(&st, &device)
        .unwrap();
    let (b, pb) = sonic_unet::UNet2DConditionModel::from_dir(&dir, &device)
        .unwrap()
        .with_adapters(&pt, &device)
        .unwrap();
    assert_eq!(pa, sonic_unet::AdapterPlacement::OFFICIAL);
    assert_eq!(pa, pb);
    assert_eq!(a.adapter_count(), 7);
    let fixture = Fixture::open(&root().join("sonic-tiny")).unwrap();
    let case = &fixture.section("unet").unwrap()[0];
    let x = fixture
        .tensor_of(case, "sample")
        .unwrap()
        .to_tensor::<4>(&device)
        .unwrap();
    let t = fixture.tensor_of(case, "timesteps").unwrap().data.clone();
    let text = fixture
        .tensor_of(case, "encoder_hidden_states")
        .unwrap()
        .to_tensor::<3>(&device)
        .unwrap();
    let tokens = fixture
        .tensor_of(case, "audio_tokens")
        .unwrap()
        .to_tensor::<3>(&device)
        .unwrap();
    let run = |u: &sonic_unet::UNet2DConditionModel| {
        let inp = u.prepare_adapters(tokens.clone(), sonic_unet::AdapterStrength::Global(1.0));
        let out = u
            .forward_with(
                x.clone(),
                &t,
                sonic_unet::UNetInputs::new(text.clone()).adapters(&inp),
            )
            .unwrap();
        sonic_core::fixtures::to_host(&out).unwrap()
    };
    assert_eq!(run(&a), run(&b));
    let c = sonic_core::fixtures::compare_slices(
        &run(&b),
        &fixture.tensor_of(case, "out").unwrap().data,
    );
    assert!(c.max_rel < 1e-4, "{c:?}");
}
