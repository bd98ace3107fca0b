//! Stage-1 trainer on the tiny projector: it learns, resumes exactly, and stops on NaN keeping
//! the last good checkpoint.

use burn::tensor::{Device, Tensor, TensorData};
use sonic_core::fixtures::fixtures_root;
use sonic_projector::ProjectorConfig;
use sonic_train::TrainError;
use sonic_train::checkpoint::{TrainEvent, TrainRng, latest_checkpoint, read_state};
use sonic_train::config::Stage1Config;
use sonic_train::stage1::{Stage1Data, Stage1Trainer};
use std::path::Path;

fn projector_config() -> ProjectorConfig {
    let root = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures");
    ProjectorConfig::from_file(&root.join("sonic-tiny").join("config.json")).unwrap()
}

fn data(device: &Device, poison: Option<usize>) -> Stage1Data {
    let pc = projector_config();
    let n = 12;
    let mut rng = TrainRng::new(99);
    let mut clap = sonic_core::fixtures::to_host(&rng.normal([n, pc.audio_dim], device)).unwrap();
    if let Some(i) = poison {
        clap[i * pc.audio_dim] = f32::NAN;
    }
    let clap = Tensor::<2>::from_data(TensorData::new(clap, [n, pc.audio_dim]), device);
    let text = rng.normal([n, pc.tokens, pc.context_dim()], device);
    let labels = (0..n).map(|i| i % 3).collect();
    Stage1Data::new(clap, labels, text).unwrap()
}

fn config(max_steps: u64) -> Stage1Config {
    let mut c = Stage1Config::default();
    c.training.batch_size = 4;
    c.training.max_steps = Some(max_steps);
    c.training.checkpoint_every = 3;
    c.training.val_every = 0;
    c.training.optimizer.lr = 1e-3;
    c.training.clip_grad_norm = Some(1.0);
    c.loss.negatives = 4;
    c.loss.temperature = 0.5;
    c
}

fn losses(trainer: &mut Stage1Trainer, data: &Stage1Data, out: Option<&Path>) -> Vec<f64> {
    let mut v = Vec::new();
    trainer
        .run(data, None, out, &mut |e| {
            if let TrainEvent::Step(r) = e {
                v.push(r.loss);
            }
            true
        })
        .unwrap();
    v
}

#[test]
fn stage1_learns_and_resumes_exactly() {
    let device = Device::default();
    let d = data(&device, None);
    let projector = sonic_train::stage1::new_projector(&projector_config(), 11, &device).unwrap();

    // Uninterrupted: 6 steps.
    let mut a = Stage1Trainer::new(config(6), projector.clone(), &device).unwrap();
    let full = losses(&mut a, &d, None);
    assert_eq!(full.len(), 6);

    // Interrupted after the checkpoint at step 3, resumed by a new trainer.
    let dir = tempfile::tempdir().unwrap();
    let mut b = Stage1Trainer::new(config(3), projector.clone(), &device).unwrap();
    let first = losses(&mut b, &d, Some(dir.path()));
    assert_eq!(first, full[..3].to_vec());
    let other_init = sonic_train::stage1::new_projector(&projector_config(), 12, &device).unwrap();
    let mut c = Stage1Trainer::new(config(6), other_init, &device).unwrap();
    let resumed_from = c.resume(dir.path()).unwrap().unwrap();
    assert!(resumed_from.ends_with("step-00000003"));
    assert_eq!(c.step(), 3);
    let rest = losses(&mut c, &d, Some(dir.path()));
    assert_eq!(rest, full[3..].to_vec(), "resumed losses differ");

    // And it learns: 40 steps lower the loss.
    let mut l = Stage1Trainer::new(config(40), projector, &device).unwrap();
    let curve = losses(&mut l, &d, None);
    let head: f64 = curve[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = curve[35..].iter().sum::<f64>() / 5.0;
    assert!(tail < 0.8 * head, "loss did not fall: {head} -> {tail}");
}

#[test]
fn stage1_nan_stops_and_keeps_the_last_good_checkpoint() {
    let device = Device::default();
    let d = data(&device, Some(5));
    let projector = sonic_train::stage1::new_projector(&projector_config(), 11, &device).unwrap();
    let mut cfg = config(30);
    cfg.training.checkpoint_every = 1;
    cfg.training.keep_checkpoints = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Stage1Trainer::new(cfg, projector, &device).unwrap();
    let e = t
        .run(&d, None, Some(dir.path()), &mut |_| true)
        .unwrap_err();
    let TrainError::NonFinite {
        step,
        last_checkpoint,
        what,
        ..
    } = &e
    else {
        panic!("expected NonFinite, got {e}");
    };
    assert_eq!(*what, "loss");
    assert_eq!(
        t.step() + 1,
        *step,
        "the failing step is the one after the last done"
    );
    let latest = latest_checkpoint(dir.path()).unwrap();
    if *step == 1 {
        assert!(latest.is_none());
        assert_eq!(last_checkpoint, "none");
    } else {
        let latest = latest.unwrap();
        assert_eq!(read_state(&latest, "stage1").unwrap().step, step - 1);
        assert_eq!(last_checkpoint, &latest.display().to_string());
        let w = sonic_core::weights::read_safetensors_f32(&latest.join("projector.safetensors"))
            .unwrap();
        assert!(w.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
    }
    assert!(e.to_string().contains(&format!("step {step}")), "{e}");
}

#[test]
fn new_projectors_are_reproducible_from_the_seed() {
    let device = Device::default();
    let c = projector_config();
    let x = Tensor::<2>::ones([1, c.audio_dim], &device);
    let out = |seed| {
        let p = sonic_train::stage1::new_projector(&c, seed, &device).unwrap();
        sonic_core::fixtures::to_host(&p.forward(x.clone()).unwrap()).unwrap()
    };
    assert_eq!(out(4), out(4));
    assert_ne!(out(4), out(5));
}

#[test]
fn stage1_validation_is_repeatable_and_reported() {
    let device = Device::default();
    let d = data(&device, None);
    let projector = sonic_train::stage1::new_projector(&projector_config(), 11, &device).unwrap();
    let mut cfg = config(4);
    cfg.training.val_every = 2;
    let mut t = Stage1Trainer::new(cfg, projector, &device).unwrap();
    let v0 = t.validation_loss(&d, &d).unwrap();
    assert!(v0.is_finite());
    assert_eq!(v0, t.validation_loss(&d, &d).unwrap());
    let mut vals = Vec::new();
    let summary = t
        .run(&d, Some(&d), None, &mut |e| {
            if let TrainEvent::Validation { step, loss } = e {
                vals.push((*step, *loss));
            }
            true
        })
        .unwrap();
    assert_eq!(vals.iter().map(|v| v.0).collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(summary.val_loss, Some(vals[1].1));
    assert_ne!(vals[1].1, v0);
}
