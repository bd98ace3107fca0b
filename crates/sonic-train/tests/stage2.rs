//! Stage-2 trainer on the tiny SD 1.5 UNet with the sonic-tiny adapters: only the adapters
//! move, the frozen UNet is untracked, resume is exact, NaN stops with the last good
//! checkpoint.

use burn::tensor::{Device, Tensor, TensorData};
use sonic_core::fixtures::fixtures_root;
use sonic_projector::Projector;
use sonic_schedulers::ddpm::DdpmSchedule;
use sonic_train::TrainError;
use sonic_train::checkpoint::{TrainEvent, TrainRng, latest_checkpoint, read_state};
use sonic_train::config::Stage2Config;
use sonic_train::stage2::{Stage2Data, Stage2Trainer};
use sonic_unet::UNet2DConditionModel;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures")
}

fn models(device: &Device) -> (UNet2DConditionModel, Projector, DdpmSchedule) {
    let r = root();
    let unet = UNet2DConditionModel::from_dir(&r.join("sd15-tiny/unet"), device).unwrap();
    let (unet, _) = unet
        .with_adapters(&r.join("sonic-tiny/adapters.safetensors"), device)
        .unwrap();
    let projector = Projector::from_files(
        &r.join("sonic-tiny/projector.safetensors"),
        &r.join("sonic-tiny/config.json"),
        device,
    )
    .unwrap();
    let sched =
        sonic_schedulers::read_python_json(&r.join("sd15-tiny/scheduler/scheduler_config.json"))
            .unwrap();
    (unet, projector, DdpmSchedule::from_json(&sched).unwrap())
}

fn data(device: &Device, poison: Option<usize>) -> Stage2Data {
    let n = 6;
    let mut rng = TrainRng::new(5);
    let mut lat = sonic_core::fixtures::to_host(&rng.normal([n, 4, 8, 8], device)).unwrap();
    if let Some(i) = poison {
        lat[i * 256 + 3] = f32::INFINITY;
    }
    let latents = Tensor::<4>::from_data(TensorData::new(lat, [n, 4, 8, 8]), device);
    Stage2Data::new(
        latents,
        rng.normal([n, 77, 32], device),
        rng.normal([n, 43], device),
        rng.normal([1, 77, 32], device),
    )
    .unwrap()
}

fn config(max_steps: u64) -> Stage2Config {
    let mut c = Stage2Config::default();
    c.training.batch_size = 2;
    c.training.max_steps = Some(max_steps);
    c.training.checkpoint_every = 2;
    c.training.val_every = 0;
    c.training.optimizer.lr = 1e-3;
    c.training.grad_accum = 2;
    c.training.clip_grad_norm = Some(0.5);
    c
}

fn run(t: &mut Stage2Trainer, d: &Stage2Data, out: Option<&Path>) -> Vec<f64> {
    let mut v = Vec::new();
    t.run(d, None, out, None, &mut |e| {
        if let TrainEvent::Step(r) = e {
            v.push(r.loss);
        }
        true
    })
    .unwrap();
    v
}

fn params(unet: &UNet2DConditionModel) -> Vec<(String, Vec<f32>)> {
    sonic_unet::export::tensors(unet, false)
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.data))
        .collect()
}

#[test]
fn stage2_trains_only_the_adapters_and_resumes_exactly() {
    let device = Device::default();
    let (unet, projector, sched) = models(&device);
    let before = params(&unet);
    let proj_before =
        sonic_core::fixtures::to_host(&projector.forward(Tensor::ones([1, 43], &device)).unwrap())
            .unwrap();
    let d = data(&device, None);

    let mut a = Stage2Trainer::new(
        config(4),
        unet.clone(),
        projector.clone(),
        sched.clone(),
        &device,
    )
    .unwrap();
    let full = run(&mut a, &d, None);
    assert_eq!(full.len(), 4);
    let after = a.model().unwrap();
    let (mut moved_adapters, mut moved_base) = (0, Vec::new());
    for ((name, x), (_, y)) in before.iter().zip(params(&after.unet)) {
        if x != &y {
            if sonic_unet::export::is_adapter_key(name) {
                moved_adapters += 1;
            } else {
                moved_base.push(name.clone());
            }
        }
    }
    assert!(
        moved_base.is_empty(),
        "frozen weights moved: {moved_base:?}"
    );
    // 7 adapters x (q, k, v, out.w, out.b, norm.w, norm.b, gate) = 56 tensors.
    assert_eq!(moved_adapters, 56, "every adapter tensor should train");
    let proj_after = sonic_core::fixtures::to_host(
        &after
            .projector
            .forward(Tensor::ones([1, 43], &device))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        proj_before, proj_after,
        "the projector is frozen by default"
    );

    // Interrupted after the checkpoint at step 2, resumed by a new trainer.
    let dir = tempfile::tempdir().unwrap();
    let mut b = Stage2Trainer::new(
        config(2),
        unet.clone(),
        projector.clone(),
        sched.clone(),
        &device,
    )
    .unwrap();
    assert_eq!(run(&mut b, &d, Some(dir.path())), full[..2].to_vec());
    let mut c = Stage2Trainer::new(config(4), unet, projector, sched, &device).unwrap();
    assert!(
        c.resume(dir.path())
            .unwrap()
            .unwrap()
            .ends_with("step-00000002")
    );
    assert_eq!(run(&mut c, &d, Some(dir.path())), full[2..].to_vec());
    // The adapter file of the last checkpoint loads as official adapters.
    let last = latest_checkpoint(dir.path()).unwrap().unwrap();
    let fresh = UNet2DConditionModel::from_dir(&root().join("sd15-tiny/unet"), &device).unwrap();
    let (loaded, _) = fresh
        .with_adapters(&last.join("adapters.safetensors"), &device)
        .unwrap();
    assert_eq!(loaded.adapter_count(), 7);
}

#[test]
fn stage2_projector_trains_when_asked_and_validation_is_repeatable() {
    let device = Device::default();
    let (unet, projector, sched) = models(&device);
    let d = data(&device, None);
    let mut cfg = config(1);
    cfg.train_projector = true;
    let mut t = Stage2Trainer::new(cfg, unet, projector.clone(), sched, &device).unwrap();
    let v0 = t.validation_loss(&d).unwrap();
    assert_eq!(v0, t.validation_loss(&d).unwrap());
    run(&mut t, &d, None);
    let x = Tensor::<2>::ones([1, 43], &device);
    let a = sonic_core::fixtures::to_host(&projector.forward(x.clone()).unwrap()).unwrap();
    let b =
        sonic_core::fixtures::to_host(&t.model().unwrap().projector.forward(x).unwrap()).unwrap();
    assert_ne!(a, b, "the projector should train with train_projector");
    assert_ne!(v0, t.validation_loss(&d).unwrap());
}

#[test]
fn stage2_nan_stops_and_keeps_the_last_good_checkpoint() {
    let device = Device::default();
    let (unet, projector, sched) = models(&device);
    let d = data(&device, Some(4));
    let mut cfg = config(12);
    cfg.training.checkpoint_every = 1;
    cfg.training.grad_accum = 1;
    cfg.training.keep_checkpoints = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Stage2Trainer::new(cfg, unet, projector, sched, &device).unwrap();
    let e = t
        .run(&d, None, Some(dir.path()), None, &mut |_| true)
        .unwrap_err();
    let TrainError::NonFinite { step, .. } = &e else {
        panic!("expected NonFinite, got {e}");
    };
    assert_eq!(t.step() + 1, *step);
    if *step > 1 {
        let latest = latest_checkpoint(dir.path()).unwrap().unwrap();
        assert_eq!(read_state(&latest, "stage2").unwrap().step, step - 1);
        assert!(e.to_string().contains(&latest.display().to_string()), "{e}");
    }
}

/// Records, per top-level block, whether its output is tracked by autodiff.
struct Tracked(Vec<(String, bool)>);

impl sonic_unet::hooks::UNetHook for Tracked {
    fn block_output(&mut self, name: &str, h: &Tensor<4>) {
        self.0.push((name.to_string(), h.is_tracked()));
    }
}

#[test]
fn frozen_unet_records_nothing_before_the_first_adapter() {
    let device = Device::default();
    let (unet, projector, _) = models(&device);
    let (unet, n) =
        sonic_train::params::select_trainable(unet, &sonic_train::params::is_adapter_path);
    assert_eq!(n, 56);
    let mut rng = TrainRng::new(0);
    let tokens = projector.forward(rng.normal([1, 43], &device)).unwrap();
    let adapters = unet.prepare_adapters(tokens, sonic_unet::AdapterStrength::Global(1.0));
    let mut hook = Tracked(Vec::new());
    let out = unet
        .forward_with(
            rng.normal([1, 4, 8, 8], &device),
            &[500.0],
            sonic_unet::UNetInputs::new(rng.normal([1, 77, 32], &device))
                .adapters(&adapters)
                .hook(&mut hook),
        )
        .unwrap();
    assert!(out.is_tracked());
    let tracked: Vec<&str> = hook
        .0
        .iter()
        .filter(|(_, t)| *t)
        .map(|(n, _)| n.as_str())
        .collect();
    // The adapters sit in the mid and up blocks: nothing before the mid block is recorded.
    assert_eq!(
        tracked,
        vec!["mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2"],
        "{:?}",
        hook.0
    );
    assert!(hook.0.iter().any(|(n, t)| n == "down_blocks.0" && !t));
}

#[test]
fn horizontal_flips_pick_the_flipped_latents_half_the_time() {
    let device = Device::default();
    let (unet, projector, sched) = models(&device);
    let d = data(&device, None);
    let flipped = d.latents.clone().add_scalar(100.0);
    assert!(
        d.clone()
            .with_flipped(flipped.clone().narrow(0, 0, 2))
            .is_err()
    );
    let d = d.with_flipped(flipped).unwrap();
    let mut cfg = config(1);
    cfg.training.batch_size = 6;
    let mut t = Stage2Trainer::new(cfg, unet, projector, sched, &device).unwrap();
    let orig = sonic_core::fixtures::to_host(&d.latents).unwrap();
    let (mut plain, mut flip) = (0, 0);
    for _ in 0..10 {
        let b = t.sample_batch(&d, &[0, 1, 2, 3, 4, 5], true).unwrap();
        let got = sonic_core::fixtures::to_host(&b.latents).unwrap();
        for (row, chunk) in got.chunks(256).enumerate() {
            let o = &orig[row * 256..(row + 1) * 256];
            if chunk == o {
                plain += 1;
            } else {
                assert!(chunk.iter().zip(o).all(|(a, b)| *a == b + 100.0));
                flip += 1;
            }
        }
        // Without drops (validation), never flipped.
        let v = t.sample_batch(&d, &[0, 1, 2, 3, 4, 5], false).unwrap();
        assert_eq!(sonic_core::fixtures::to_host(&v.latents).unwrap(), orig);
    }
    assert!(plain > 10 && flip > 10, "{plain} plain, {flip} flipped");
}
