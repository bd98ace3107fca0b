//! `sonic tune`'s objective on the real stage-1 trainer (tiny projector, synthetic data): the
//! trial value is the validation loss of a run with the trial's overrides, reports reach the
//! pruner, pruned / diverged / misconfigured trials are recorded as such.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::json;
use sonic_core::fixtures::fixtures_root;
use sonic_projector::{Projector, ProjectorConfig};
use sonic_train::checkpoint::{TrainEvent, TrainRng};
use sonic_train::config::Stage1Config;
use sonic_train::stage1::{Stage1Data, Stage1Trainer};
use sonic_train::tune::objective::{Budget, Stage1Run, TrainingObjective};
use sonic_train::tune::pruner::SuccessiveHalvingPruner;
use sonic_train::tune::study::{PrunerConfig, SamplerConfig};
use sonic_train::tune::{SearchSpace, Study, StudyConfig, TrialState, TuneError};
use std::path::Path;

fn projector_config() -> ProjectorConfig {
    let root = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures");
    ProjectorConfig::from_file(&root.join("sonic-tiny").join("config.json")).unwrap()
}

fn data(device: &Device, seed: u64, n: usize, poison: Option<usize>) -> Stage1Data {
    let pc = projector_config();
    let mut rng = TrainRng::new(seed);
    let mut clap = sonic_core::fixtures::to_host(&rng.normal([n, pc.audio_dim], device)).unwrap();
    if let Some(i) = poison {
        clap[i * pc.audio_dim] = f32::NAN;
    }
    let clap = Tensor::<2>::from_data(TensorData::new(clap, [n, pc.audio_dim]), device);
    let text = rng.normal([n, pc.tokens, pc.context_dim()], device);
    let labels = (0..n).map(|i| i % 3).collect();
    Stage1Data::new(clap, labels, text).unwrap()
}

fn base_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("stage1.json");
    std::fs::write(
        &p,
        serde_json::to_string_pretty(&json!({
            "training": {"batch_size": 4, "optimizer": {"lr": 1e-3}, "clip_grad_norm": 1.0},
            "loss": {"negatives": 4, "temperature": 0.5}
        }))
        .unwrap(),
    )
    .unwrap();
    p
}

fn space() -> SearchSpace {
    SearchSpace::from_json(
        &json!({
            "training.optimizer.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": true},
            "loss.temperature": {"type": "float", "low": 0.2, "high": 1.0}
        }),
        Path::new("test"),
        "space",
    )
    .unwrap()
}

fn study_config(sampler: SamplerConfig, pruner: PrunerConfig) -> StudyConfig {
    StudyConfig {
        space: space(),
        seed: 5,
        sampler,
        pruner,
        rerun_interrupted: true,
    }
}

const BUDGET: Budget = Budget {
    max_steps: 4,
    val_every: 2,
};

#[test]
fn the_objective_is_the_validation_loss_of_the_overridden_config() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path());
    let study_dir = dir.path().join("study");
    let projector = Projector::new(&projector_config(), &device).unwrap();
    let stage = Stage1Run {
        train: data(&device, 1, 12, None),
        val: data(&device, 2, 6, None),
        projector: projector.clone(),
        device: device.clone(),
    };
    let mut objective = TrainingObjective::new(&base, BUDGET, &study_dir, stage).unwrap();
    let mut study = Study::open(
        &study_dir,
        &study_config(SamplerConfig::Random, PrunerConfig::None),
    )
    .unwrap();
    study.optimize(&mut objective, 3, false, |_, _| {}).unwrap();
    let mut values = Vec::new();
    for t in study.trials() {
        assert_eq!(t.state, TrialState::Complete, "{:?}", t.state);
        assert_eq!(
            t.intermediate.keys().copied().collect::<Vec<_>>(),
            vec![2, 4]
        );
        let value = t.value.unwrap();
        assert_eq!(value, t.intermediate[&4]);
        // the trial config holds the overrides and the budget
        let path = objective.trial_config_path(t.number);
        let cfg = Stage1Config::from_file(&path).unwrap();
        assert_eq!(
            cfg.training.optimizer.lr,
            t.params["training.optimizer.lr"].as_f64().unwrap()
        );
        assert_eq!(
            cfg.loss.temperature,
            t.params["loss.temperature"].as_f64().unwrap()
        );
        assert_eq!(cfg.training.max_steps, Some(4));
        assert_eq!(cfg.training.val_every, 2);
        assert_eq!(cfg.loss.negatives, 4, "base keys are kept");
        // an independent run of that config gives the same validation loss
        let mode: sonic_projector::BlockMode = cfg.block_mode.parse().unwrap();
        let mut trainer =
            Stage1Trainer::new(cfg, projector.clone().with_mode(mode), &device).unwrap();
        let mut val = Vec::new();
        let summary = trainer
            .run(
                &objective.stage.train,
                Some(&objective.stage.val),
                None,
                &mut |e| {
                    if let TrainEvent::Validation { step, loss } = e {
                        val.push((*step, *loss));
                    }
                    true
                },
            )
            .unwrap();
        assert_eq!(summary.val_loss, Some(value));
        assert_eq!(
            val,
            t.intermediate
                .iter()
                .map(|(s, v)| (*s, *v))
                .collect::<Vec<_>>()
        );
        values.push(value);
    }
    assert!(
        values[0] != values[1] && values[1] != values[2],
        "different parameters gave identical losses: {values:?}"
    );
    // the best config merges the best parameters into the base config
    let best = study.best_trial().unwrap().clone();
    let out = dir.path().join("best.json");
    sonic_train::tune::overrides::write_config_with_overrides(&base, &best.params, &out).unwrap();
    let cfg = Stage1Config::from_file(&out).unwrap();
    assert_eq!(
        cfg.training.optimizer.lr,
        best.params["training.optimizer.lr"].as_f64().unwrap()
    );
    assert_eq!(
        cfg.training.max_steps, None,
        "the budget is not part of the best config"
    );
}

#[test]
fn a_worse_trial_is_pruned_at_its_first_rung() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path());
    let study_dir = dir.path().join("study");
    let train = data(&device, 1, 12, None);
    // validation on the training clips, so that training visibly lowers it
    let stage = Stage1Run {
        train: train.clone(),
        val: train,
        projector: Projector::new(&projector_config(), &device).unwrap(),
        device: device.clone(),
    };
    let mut objective = TrainingObjective::new(&base, BUDGET, &study_dir, stage).unwrap();
    let pruner = PrunerConfig::SuccessiveHalving(SuccessiveHalvingPruner {
        min_resource: 2,
        reduction_factor: 2,
        min_early_stopping_rate: 0,
        bootstrap_count: 0,
    });
    let mut study = Study::open(&study_dir, &study_config(SamplerConfig::Random, pruner)).unwrap();
    let p = |lr: f64| -> sonic_train::tune::Params {
        [
            ("training.optimizer.lr".to_string(), json!(lr)),
            ("loss.temperature".to_string(), json!(0.5)),
        ]
        .into()
    };
    // on this toy problem lr 3e-2 overshoots: its loss after 2 steps is above lr 1e-4's
    study.enqueue(p(1e-4)).unwrap();
    study.enqueue(p(3e-2)).unwrap();
    study.optimize(&mut objective, 2, false, |_, _| {}).unwrap();
    let t = study.trials();
    eprintln!(
        "val loss at step 2: lr 1e-4 {:?}, lr 3e-2 {:?}",
        t[0].intermediate.get(&2),
        t[1].intermediate.get(&2)
    );
    assert!(t[1].intermediate[&2] > t[0].intermediate[&2]);
    assert_eq!(t[0].state, TrialState::Complete);
    assert_eq!(
        t[0].intermediate.keys().copied().collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(t[1].state, TrialState::Pruned);
    assert_eq!(
        t[1].intermediate.keys().copied().collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn diverged_and_misconfigured_trials() {
    let device = Device::default();
    let dir = tempfile::tempdir().unwrap();
    let base = base_config(dir.path());
    let study_dir = dir.path().join("study");
    // a NaN in a training clip: the run stops with a non-finite loss
    let stage = Stage1Run {
        train: data(&device, 1, 12, Some(0)),
        val: data(&device, 2, 6, None),
        projector: Projector::new(&projector_config(), &device).unwrap(),
        device: device.clone(),
    };
    let mut objective = TrainingObjective::new(&base, BUDGET, &study_dir, stage).unwrap();
    let mut study = Study::open(
        &study_dir,
        &study_config(SamplerConfig::Random, PrunerConfig::None),
    )
    .unwrap();
    study.optimize(&mut objective, 1, false, |_, _| {}).unwrap();
    match &study.trials()[0].state {
        TrialState::Failed {
            reason,
            interrupted: false,
        } => assert!(reason.contains("loss"), "{reason}"),
        other => panic!("expected a failed trial, got {other:?}"),
    }
    drop(study);

    // a search-space key the stage config does not have: the trainer's parser names it
    let dir2 = tempfile::tempdir().unwrap();
    let base2 = base_config(dir2.path());
    let bad_space = SearchSpace::from_json(
        &json!({"loss.temprature": {"type": "float", "low": 0.2, "high": 1.0}}),
        Path::new("test"),
        "space",
    )
    .unwrap();
    let stage = Stage1Run {
        train: data(&device, 1, 12, None),
        val: data(&device, 2, 6, None),
        projector: Projector::new(&projector_config(), &device).unwrap(),
        device: device.clone(),
    };
    let sdir = dir2.path().join("study");
    let mut objective = TrainingObjective::new(&base2, BUDGET, &sdir, stage).unwrap();
    let mut study = Study::open(
        &sdir,
        &StudyConfig {
            space: bad_space,
            ..study_config(SamplerConfig::Random, PrunerConfig::None)
        },
    )
    .unwrap();
    let e = study
        .optimize(&mut objective, 3, false, |_, _| {})
        .unwrap_err();
    match &e {
        TuneError::Objective { trial: 0, message } => {
            assert!(message.contains("loss.temprature"), "{message}")
        }
        other => panic!("expected an objective error, got {other}"),
    }
}

/// `config/tune.json` and `config/tune-stage2.json` parse, and every parameter of their search
/// spaces is a real key of their base stage config: a sampled trial config passes the stage's
/// own (unknown-key-rejecting) config reader.
#[test]
fn shipped_tune_configs_name_real_keys() {
    use sonic_train::config::Stage2Config;
    use sonic_train::tune::TuneConfig;
    use sonic_train::tune::sampler::{RandomSampler, Sampler};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    for (file, stage) in [("tune.json", "stage1"), ("tune-stage2.json", "stage2")] {
        let cfg = TuneConfig::from_file(&root.join(file)).unwrap();
        assert_eq!(cfg.stage, stage);
        assert!(cfg.base_config.exists(), "{}", cfg.base_config.display());
        assert!(cfg.budget.val_every <= cfg.budget.max_steps);
        let base: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg.base_config).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for n in 0..5 {
            let params = RandomSampler { seed: 1 }.sample(&cfg.study.space, &[], n);
            let trial = sonic_train::tune::objective::trial_config(
                &base,
                &cfg.base_config,
                &params,
                &cfg.budget,
            )
            .unwrap();
            let p = dir.path().join(format!("{n}.json"));
            std::fs::write(&p, serde_json::to_string(&trial).unwrap()).unwrap();
            let max_steps = if stage == "stage1" {
                Stage1Config::from_file(&p).unwrap().training.max_steps
            } else {
                Stage2Config::from_file(&p).unwrap().training.max_steps
            };
            assert_eq!(max_steps, Some(cfg.budget.max_steps));
        }
    }
}
