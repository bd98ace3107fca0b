//! `sonic tune`'s stage-2 objective on the tiny SD 1.5 UNet. Its own test binary: new adapters
//! are drawn from the backend's (global) generator after seeding it, so no other test may draw
//! random weights on another thread meanwhile.

use burn::tensor::Device;
use serde_json::json;
use sonic_core::fixtures::fixtures_root;
use sonic_projector::Projector;
use sonic_train::checkpoint::TrainRng;
use sonic_train::tune::objective::{Budget, TrainingObjective};
use sonic_train::tune::study::{PrunerConfig, SamplerConfig};
use sonic_train::tune::{SearchSpace, Study, StudyConfig, TrialState};
use std::path::Path;

/// Stage 2 on the tiny SD 1.5 UNet: new adapters drawn from `training.seed`, so the same
/// parameters give the same validation loss in two trials, and a different learning rate a
/// different one.
#[test]
fn stage2_trials_start_from_the_same_adapters() {
    use sonic_schedulers::ddpm::DdpmSchedule;
    use sonic_train::stage2::Stage2Data;
    use sonic_train::tune::objective::Stage2Run;
    use sonic_unet::UNet2DConditionModel;
    let device = Device::default();
    let root = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures");
    let unet = UNet2DConditionModel::from_dir(&root.join("sd15-tiny/unet"), &device).unwrap();
    let projector = Projector::from_files(
        &root.join("sonic-tiny/projector.safetensors"),
        &root.join("sonic-tiny/config.json"),
        &device,
    )
    .unwrap();
    let sched =
        sonic_schedulers::read_python_json(&root.join("sd15-tiny/scheduler/scheduler_config.json"))
            .unwrap();
    let schedule = DdpmSchedule::from_json(&sched).unwrap();
    let data = |seed: u64, n: usize| {
        let mut rng = TrainRng::new(seed);
        Stage2Data::new(
            rng.normal([n, 4, 8, 8], &device),
            rng.normal([n, 77, 32], &device),
            rng.normal([n, 43], &device),
            rng.normal([1, 77, 32], &device),
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("stage2.json");
    std::fs::write(
        &base,
        serde_json::to_string(&json!({
            "training": {"seed": 4, "batch_size": 2, "optimizer": {"lr": 1e-3}},
            "resolution": 64
        }))
        .unwrap(),
    )
    .unwrap();
    let stage = Stage2Run {
        train: data(1, 6),
        val: data(2, 2),
        unet,
        projector,
        schedule,
        device: device.clone(),
    };
    let study_dir = dir.path().join("study");
    let budget = Budget {
        max_steps: 2,
        val_every: 1,
    };
    let mut objective = TrainingObjective::new(&base, budget, &study_dir, stage).unwrap();
    let space = SearchSpace::from_json(
        &json!({
            "training.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
            "gate_init": {"type": "float", "low": 0.0, "high": 0.5}
        }),
        Path::new("test"),
        "space",
    )
    .unwrap();
    let mut study = Study::open(
        &study_dir,
        &StudyConfig {
            space,
            seed: 5,
            sampler: SamplerConfig::Random,
            pruner: PrunerConfig::None,
            rerun_interrupted: true,
        },
    )
    .unwrap();
    let p = |lr: f64| -> sonic_train::tune::Params {
        [
            ("training.optimizer.lr".to_string(), json!(lr)),
            ("gate_init".to_string(), json!(0.25)),
        ]
        .into()
    };
    study.enqueue(p(1e-3)).unwrap();
    study.enqueue(p(1e-3)).unwrap();
    study.enqueue(p(1e-2)).unwrap();
    study.optimize(&mut objective, 3, false, |_, _| {}).unwrap();
    let t = study.trials();
    for trial in t {
        assert_eq!(trial.state, TrialState::Complete, "{:?}", trial.state);
        assert_eq!(
            trial.intermediate.keys().copied().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
    eprintln!(
        "stage-2 values: {:?}",
        t.iter().map(|t| t.value).collect::<Vec<_>>()
    );
    assert_eq!(t[0].value, t[1].value, "same parameters, different result");
    assert_ne!(t[0].value, t[2].value);
}
