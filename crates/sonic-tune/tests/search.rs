//! The generic hyperparameter search : TPE against random search on known functions,
//! pruning of clearly worse learning curves, a study that resumes from disk after a clean stop
//! and after a crash, journal recovery, and config errors that name the key.

use serde_json::{Value, json};
use sonic_tune::pruner::{MedianPruner, SuccessiveHalvingPruner};
use sonic_tune::sampler::TpeSettings;
use sonic_tune::study::{ObjectiveError, PrunerConfig, SamplerConfig};
use sonic_tune::{
    Decision, Params, SearchSpace, Study, StudyConfig, Trial, TrialOutcome, TrialState, TuneConfig,
    TuneError,
};
use std::path::Path;

type Out = Result<TrialOutcome, ObjectiveError>;

fn space(v: Value) -> SearchSpace {
    SearchSpace::from_json(&v, Path::new("test"), "space").unwrap()
}

fn f(p: &Params, k: &str) -> f64 {
    p[k].as_f64().unwrap()
}

/// Branin-Hoo on [-5, 10] x [0, 15]; global minimum 0.397887 (three minimisers).
fn branin(x1: f64, x2: f64) -> f64 {
    use std::f64::consts::PI;
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

const BRANIN_MIN: f64 = 0.397_887_357_729_738;

fn config(
    space: SearchSpace,
    seed: u64,
    sampler: SamplerConfig,
    pruner: PrunerConfig,
) -> StudyConfig {
    StudyConfig {
        space,
        seed,
        sampler,
        pruner,
        rerun_interrupted: true,
    }
}

fn tpe(n_startup: usize) -> SamplerConfig {
    SamplerConfig::Tpe(TpeSettings {
        n_startup_trials: n_startup,
        ..Default::default()
    })
}

/// Best value found by a study of `n` trials of `fun` (no pruning).
fn best_of(
    sp: &SearchSpace,
    sampler: SamplerConfig,
    seed: u64,
    n: usize,
    fun: &dyn Fn(&Params) -> f64,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut study = Study::open(
        dir.path(),
        &config(sp.clone(), seed, sampler, PrunerConfig::None),
    )
    .unwrap();
    let mut obj = |t: &mut Trial<'_>| -> Out { Ok(TrialOutcome::Complete(fun(t.params()))) };
    study.optimize(&mut obj, n, false, |_, _| {}).unwrap();
    assert_eq!(study.trials().len(), n);
    study.best_trial().unwrap().value.unwrap()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn tpe_beats_random_search_on_branin() {
    let sp = space(json!({
        "x1": {"type": "float", "low": -5.0, "high": 10.0},
        "x2": {"type": "float", "low": 0.0, "high": 15.0}
    }));
    let fun = |p: &Params| branin(f(p, "x1"), f(p, "x2"));
    let (n, seeds) = (60, 0..10u64);
    let mut regret_tpe = Vec::new();
    let mut regret_rand = Vec::new();
    for seed in seeds {
        regret_tpe.push(best_of(&sp, tpe(10), seed, n, &fun) - BRANIN_MIN);
        regret_rand.push(best_of(&sp, SamplerConfig::Random, seed, n, &fun) - BRANIN_MIN);
    }
    let (mt, mr) = (mean(&regret_tpe), mean(&regret_rand));
    eprintln!("branin, {n} trials, 10 seeds: mean regret TPE {mt:.4}, random {mr:.4}");
    eprintln!("  TPE    {regret_tpe:.3?}\n  random {regret_rand:.3?}");
    assert!(regret_tpe.iter().chain(&regret_rand).all(|r| *r >= -1e-9));
    assert!(
        mt < 0.5 * mr,
        "TPE {mt} is not clearly better than random {mr}"
    );
    let wins = regret_tpe
        .iter()
        .zip(&regret_rand)
        .filter(|(t, r)| t < r)
        .count();
    assert!(wins >= 7, "TPE better on only {wins} of 10 seeds");
}

#[test]
fn multivariate_tpe_beats_random_search_on_branin() {
    let sp = space(json!({
        "x1": {"type": "float", "low": -5.0, "high": 10.0},
        "x2": {"type": "float", "low": 0.0, "high": 15.0}
    }));
    let fun = |p: &Params| branin(f(p, "x1"), f(p, "x2"));
    let mv = SamplerConfig::Tpe(TpeSettings {
        n_startup_trials: 10,
        multivariate: true,
        ..Default::default()
    });
    let mut regret_mv = Vec::new();
    let mut regret_rand = Vec::new();
    for seed in 0..10u64 {
        regret_mv.push(best_of(&sp, mv.clone(), seed, 60, &fun) - BRANIN_MIN);
        regret_rand.push(best_of(&sp, SamplerConfig::Random, seed, 60, &fun) - BRANIN_MIN);
    }
    let (mm, mr) = (mean(&regret_mv), mean(&regret_rand));
    eprintln!("branin, 60 trials, 10 seeds: mean regret multivariate TPE {mm:.4}, random {mr:.4}");
    eprintln!("  multivariate {regret_mv:.3?}");
    assert!(
        mm < 0.5 * mr,
        "multivariate TPE {mm} is not clearly better than random {mr}"
    );
}

#[test]
fn tpe_beats_random_on_a_mixed_space() {
    // a shifted quadratic in log(lr) and a uniform weight, an integer with its optimum at 6
    // and a categorical with one good choice
    let sp = space(json!({
        "lr": {"type": "float", "low": 1e-6, "high": 1e-1, "log": true},
        "w": {"type": "float", "low": 0.0, "high": 1.0},
        "n": {"type": "int", "low": 1, "high": 16},
        "act": {"type": "categorical", "choices": ["relu", "gelu", "silu", "tanh"]}
    }));
    let fun = |p: &Params| {
        let lr = f(p, "lr").log10() + 3.7;
        let w = f(p, "w") - 0.3;
        let n = (p["n"].as_i64().unwrap() - 6) as f64 / 4.0;
        let act = if p["act"] == json!("silu") { 0.0 } else { 1.0 };
        lr * lr + 4.0 * w * w + n * n + act
    };
    let mut bt = Vec::new();
    let mut br = Vec::new();
    for seed in 0..8u64 {
        bt.push(best_of(&sp, tpe(10), seed, 50, &fun));
        br.push(best_of(&sp, SamplerConfig::Random, seed, 50, &fun));
    }
    let mv = SamplerConfig::Tpe(TpeSettings {
        n_startup_trials: 10,
        multivariate: true,
        ..Default::default()
    });
    let bm: Vec<f64> = (0..8u64)
        .map(|seed| best_of(&sp, mv.clone(), seed, 50, &fun))
        .collect();
    let (mt, mm, mr) = (mean(&bt), mean(&bm), mean(&br));
    eprintln!(
        "mixed space, 50 trials, 8 seeds: mean best TPE {mt:.4}, multivariate TPE {mm:.4}, random {mr:.4}"
    );
    assert!(mt < 0.6 * mr, "TPE {mt} vs random {mr}");
    assert!(mm < 0.6 * mr, "multivariate TPE {mm} vs random {mr}");
}

/// Learning curve of a trial with quality `q`: `q + 1 / step`.
fn curve_objective(steps: u64) -> impl FnMut(&mut Trial<'_>) -> Out {
    move |t: &mut Trial<'_>| -> Out {
        let q = f(t.params(), "q");
        let mut v = 0.0;
        for step in 1..=steps {
            v = q + 1.0 / step as f64;
            if t.report(step, v)? == Decision::Prune {
                return Ok(TrialOutcome::Pruned);
            }
        }
        Ok(TrialOutcome::Complete(v))
    }
}

#[test]
fn median_pruner_stops_clearly_worse_curves() {
    let dir = tempfile::tempdir().unwrap();
    let sp = space(json!({"q": {"type": "float", "low": 0.0, "high": 1.0}}));
    let pruner = PrunerConfig::Median(MedianPruner {
        n_startup_trials: 4,
        n_warmup_steps: 3,
        interval_steps: 1,
        n_min_trials: 1,
    });
    let mut study = Study::open(dir.path(), &config(sp, 1, SamplerConfig::Random, pruner)).unwrap();
    for q in [0.2, 0.3, 0.4, 0.5, 0.9, 0.1, 0.3, 0.36] {
        study.enqueue([("q".to_string(), json!(q))].into()).unwrap();
    }
    let mut obj = curve_objective(10);
    study.optimize(&mut obj, 8, false, |_, _| {}).unwrap();
    let t = study.trials();
    // the first four (start-up) complete; 0.9 is pruned at the end of the warm-up (step 3);
    // 0.1 is better than the median and completes; 0.3 equals the median of the five
    // completed trials (0.1..0.5) and completes; 0.36 is worse and is pruned at step 3
    for (i, trial) in t.iter().take(4).enumerate() {
        assert_eq!(trial.state, TrialState::Complete, "trial {i}");
        assert_eq!(trial.intermediate.len(), 10);
    }
    assert_eq!(t[4].state, TrialState::Pruned);
    assert_eq!(t[4].last_report().unwrap().0, 3);
    assert_eq!(t[5].state, TrialState::Complete);
    assert_eq!(t[6].state, TrialState::Complete);
    assert_eq!(t[7].state, TrialState::Pruned);
    assert_eq!(t[7].intermediate.len(), 3);
    assert_eq!(study.best_trial().unwrap().number, 5);
    assert!((study.best_trial().unwrap().value.unwrap() - 0.2).abs() < 1e-12);
}

#[test]
fn successive_halving_prunes_in_a_study() {
    let dir = tempfile::tempdir().unwrap();
    let sp = space(json!({"q": {"type": "float", "low": 0.0, "high": 1.0}}));
    let pruner = PrunerConfig::SuccessiveHalving(SuccessiveHalvingPruner {
        min_resource: 1,
        reduction_factor: 2,
        min_early_stopping_rate: 0,
        bootstrap_count: 2,
    });
    let mut study = Study::open(dir.path(), &config(sp, 1, SamplerConfig::Random, pruner)).unwrap();
    for q in [0.5, 0.1, 0.9, 0.05] {
        study.enqueue([("q".to_string(), json!(q))].into()).unwrap();
    }
    let mut obj = curve_objective(8);
    study.optimize(&mut obj, 4, false, |_, _| {}).unwrap();
    let states: Vec<TrialState> = study.trials().iter().map(|t| t.state.clone()).collect();
    // trial 0 alone: bootstrap, runs to the end. trial 1 (better everywhere) continues.
    // trial 2 (0.9): rung 0 has [1.5, 1.1, 1.9], floor(3/2)=1 best continue -> pruned at step 1.
    // trial 3 (0.05): best at every rung -> completes.
    assert_eq!(
        states,
        vec![
            TrialState::Complete,
            TrialState::Complete,
            TrialState::Pruned,
            TrialState::Complete
        ]
    );
    assert_eq!(study.trials()[2].last_report().unwrap().0, 1);
}

fn quad_space() -> SearchSpace {
    space(json!({
        "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": true},
        "q": {"type": "float", "low": 0.0, "high": 1.0},
        "b": {"type": "categorical", "choices": [2, 4, 8]}
    }))
}

fn quad_config(seed: u64) -> StudyConfig {
    config(
        quad_space(),
        seed,
        tpe(4),
        PrunerConfig::Median(MedianPruner {
            n_startup_trials: 3,
            n_warmup_steps: 2,
            ..Default::default()
        }),
    )
}

/// Learning curve whose level depends on all parameters.
fn quad_objective(panic_on: Option<u64>) -> impl FnMut(&mut Trial<'_>) -> Out {
    move |t: &mut Trial<'_>| -> Out {
        let p = t.params().clone();
        let level = (p["lr"].as_f64().unwrap().log10() + 3.0).powi(2)
            + (f(&p, "q") - 0.7).powi(2)
            + if p["b"] == json!(4) { 0.0 } else { 0.3 };
        let mut v = 0.0;
        for step in 1..=6u64 {
            // (step 1 is inside the pruner's warm-up, so the crash always happens)
            if panic_on == Some(t.number()) && step == 2 {
                panic!("simulated crash in trial {}", t.number());
            }
            v = level + 0.5 / step as f64;
            if t.report(step, v)? == Decision::Prune {
                return Ok(TrialOutcome::Pruned);
            }
        }
        Ok(TrialOutcome::Complete(v))
    }
}

type TrialSummary = (Params, TrialState, Option<f64>, Vec<(u64, f64)>);

fn summary(study: &Study) -> Vec<TrialSummary> {
    study
        .trials()
        .iter()
        .map(|t| {
            (
                t.params.clone(),
                t.state.clone(),
                t.value,
                t.intermediate.iter().map(|(s, v)| (*s, *v)).collect(),
            )
        })
        .collect()
}

#[test]
fn study_resumes_from_disk_with_the_same_history() {
    let full = tempfile::tempdir().unwrap();
    let mut a = Study::open(full.path(), &quad_config(11)).unwrap();
    a.optimize(&mut quad_objective(None), 14, false, |_, _| {})
        .unwrap();
    let expected = summary(&a);
    assert!(
        expected.iter().any(|t| t.1 == TrialState::Pruned),
        "the pruner never fired"
    );
    let best_a = a.best_trial().unwrap().clone();
    drop(a);

    // stop after 6 trials, re-open, continue to 14
    let part = tempfile::tempdir().unwrap();
    let mut b = Study::open(part.path(), &quad_config(11)).unwrap();
    b.optimize(&mut quad_objective(None), 6, false, |_, _| {})
        .unwrap();
    let best_6 = b.best_trial().unwrap().value.unwrap();
    drop(b);
    let mut b = Study::open(part.path(), &quad_config(11)).unwrap();
    assert_eq!(b.trials().len(), 6);
    assert_eq!(b.n_counted(), 6);
    assert_eq!(b.best_trial().unwrap().value.unwrap(), best_6);
    assert_eq!(b.recovery().interrupted, Vec::<u64>::new());
    b.optimize(&mut quad_objective(None), 14, false, |_, _| {})
        .unwrap();
    assert_eq!(
        summary(&b),
        expected,
        "the resumed study diverged from the uninterrupted one"
    );
    assert_eq!(b.best_trial().unwrap(), &best_a);
    assert!(b.best_trial().unwrap().value.unwrap() <= best_6);
    drop(b);
    // the journal bytes are the same events (timestamps aside)
    let strip = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p.join("study.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("unix");
                o.remove("created_unix");
                v
            })
            .collect()
    };
    assert_eq!(strip(full.path()), strip(part.path()));
    // a fresh process reading the finished study sees 14 trials and asks for no more
    let mut c = Study::open(part.path(), &quad_config(11)).unwrap();
    c.optimize(&mut quad_objective(None), 14, false, |_, _| {
        panic!("no trial should run")
    })
    .unwrap();
    assert_eq!(c.trials().len(), 14);
}

#[test]
fn a_crashed_trial_is_marked_failed_and_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Study::open(dir.path(), &quad_config(5)).unwrap();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.optimize(&mut quad_objective(Some(7)), 12, false, |_, _| {})
    }));
    assert!(crashed.is_err());
    drop(s);
    let mut s = Study::open(dir.path(), &quad_config(5)).unwrap();
    assert_eq!(s.recovery().interrupted, vec![7]);
    assert_eq!(s.recovery().requeued, vec![7]);
    let t7 = s.trials()[7].clone();
    assert_eq!(
        t7.intermediate.len(),
        1,
        "reports before the crash are kept"
    );
    assert!(matches!(
        t7.state,
        TrialState::Failed {
            interrupted: true,
            ..
        }
    ));
    assert_eq!(s.n_counted(), 7);
    s.optimize(&mut quad_objective(None), 12, false, |_, _| {})
        .unwrap();
    let t8 = &s.trials()[8];
    assert_eq!(t8.params, t7.params, "the interrupted parameters run again");
    assert_eq!(t8.requeued_from, Some(7));
    assert_eq!(s.trials().len(), 13);
    assert_eq!(s.n_counted(), 12);
    drop(s);
    // re-opening again does not queue trial 7 a second time
    let s = Study::open(dir.path(), &quad_config(5)).unwrap();
    assert!(s.recovery().requeued.is_empty());
    assert!(s.recovery().interrupted.is_empty());
}

#[test]
fn journal_recovery_locking_and_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Study::open(dir.path(), &quad_config(3)).unwrap();
    // a second opener is refused while the first holds the study
    assert!(matches!(
        Study::open(dir.path(), &quad_config(3)),
        Err(TuneError::Locked { .. })
    ));
    s.optimize(&mut quad_objective(None), 3, false, |_, _| {})
        .unwrap();
    drop(s);
    let journal = dir.path().join("study.jsonl");
    let good = std::fs::read(&journal).unwrap();
    // a torn last line (crash in the middle of a write) is cut off
    let mut torn = good.clone();
    torn.extend_from_slice(br#"{"event":"start","trial":3,"par"#);
    std::fs::write(&journal, &torn).unwrap();
    let s = Study::open(dir.path(), &quad_config(3)).unwrap();
    assert_eq!(s.recovery().truncated_bytes, 31);
    assert_eq!(s.trials().len(), 3);
    drop(s);
    assert_eq!(std::fs::read(&journal).unwrap(), good);
    // a corrupt line in the middle is an error naming the line
    let text = String::from_utf8(good.clone()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{not json";
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    match Study::open(dir.path(), &quad_config(3)) {
        Err(TuneError::Journal { line, path, .. }) => {
            assert_eq!(line, 3);
            assert!(path.ends_with("study.jsonl"));
        }
        Err(e) => panic!("expected a journal error, got {e}"),
        Ok(_) => panic!("expected a journal error"),
    }
    std::fs::write(&journal, &good).unwrap();
    // another space or seed is refused
    let mut other = quad_config(3);
    other.space = space(json!({"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": true}}));
    assert!(matches!(
        Study::open(dir.path(), &other),
        Err(TuneError::StudyMismatch { .. })
    ));
    assert!(matches!(
        Study::open(dir.path(), &quad_config(4)),
        Err(TuneError::StudyMismatch { .. })
    ));
    // the untouched study still opens
    assert_eq!(
        Study::open(dir.path(), &quad_config(3))
            .unwrap()
            .trials()
            .len(),
        3
    );
}

#[test]
fn diverging_and_failing_trials() {
    let dir = tempfile::tempdir().unwrap();
    let sp = space(json!({"q": {"type": "float", "low": 0.0, "high": 1.0}}));
    let mut s = Study::open(
        dir.path(),
        &config(sp, 2, SamplerConfig::Random, PrunerConfig::None),
    )
    .unwrap();
    s.enqueue([("q".to_string(), json!(0.5))].into()).unwrap();
    s.enqueue([("q".to_string(), json!(0.6))].into()).unwrap();
    s.enqueue([("q".to_string(), json!(0.7))].into()).unwrap();
    let mut obj = |t: &mut Trial<'_>| -> Out {
        let q = f(t.params(), "q");
        if q == 0.5 {
            // diverges: NaN at step 2
            t.report(1, 1.0)?;
            assert_eq!(t.report(2, f64::NAN)?, Decision::Prune);
            return Ok(TrialOutcome::Pruned);
        }
        if q == 0.6 {
            return Err("out of memory".into());
        }
        Ok(TrialOutcome::Complete(q))
    };
    s.optimize(&mut obj, 3, true, |_, _| {}).unwrap();
    let t = s.trials();
    assert!(
        matches!(&t[0].state, TrialState::Failed { reason, interrupted: false } if reason.contains("non-finite"))
    );
    assert!(matches!(&t[1].state, TrialState::Failed { reason, .. } if reason == "out of memory"));
    assert_eq!(t[2].state, TrialState::Complete);
    // without catch_errors the search stops on an error, after recording it
    s.enqueue([("q".to_string(), json!(0.6))].into()).unwrap();
    let e = s.optimize(&mut obj, 10, false, |_, _| {}).unwrap_err();
    assert!(matches!(e, TuneError::Objective { trial: 3, .. }), "{e}");
    assert!(matches!(s.trials()[3].state, TrialState::Failed { .. }));
    // steps must increase
    let n = s.ask().unwrap();
    s.report(n, 5, 1.0).unwrap();
    assert!(matches!(s.report(n, 5, 0.5), Err(TuneError::Report { .. })));
    s.tell(n, Ok(TrialOutcome::Complete(0.1))).unwrap();
    assert!(matches!(
        s.tell(n, Ok(TrialOutcome::Complete(0.1))),
        Err(TuneError::Report { .. })
    ));
    assert_eq!(s.best_trial().unwrap().number, n);
    let out = dir.path().join("best_params.json");
    s.write_best_params(&out).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(v["trial"], json!(n));
    assert_eq!(v["params"]["q"], s.trials()[n as usize].params["q"]);
}

#[test]
fn tune_config_errors_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tune.json");
    std::fs::write(
        &p,
        r#"{"stage": "stage1", "base_config": "s.json", "n_trials": 5,
            "budget": {"max_steps": 10, "val_every": 5},
            "space": {"lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": true},
                      "temperature": {"type": "float", "low": 0.5}}}"#,
    )
    .unwrap();
    let e = TuneConfig::from_file(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("tune.json") && msg.contains("space.temperature.high"),
        "{msg}"
    );
    std::fs::write(&p, "{\"stage\": ").unwrap();
    let msg = TuneConfig::from_file(&p).unwrap_err().to_string();
    assert!(msg.contains("tune.json"), "{msg}");
}
