//! `sonic tune` end to end on the tiny fixtures (stage 1): a study runs, resumes with more
//! trials, survives a SIGKILL in the middle of a trial (the trial is marked failed and its
//! parameters re-run), and writes the best parameters as a stage config.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures")
}

fn sonic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
}

/// Eight records over the sonic-tiny clips, two classes of four, a PNG each, and a manifest.
fn dataset(dir: &Path) -> PathBuf {
    let refs = fixtures().join("sonic-tiny/reference");
    let mut csv = String::from("audio,image,caption,label\n");
    let items = [
        ("a", "x"),
        ("b", "x"),
        ("c", "y"),
        ("d", "y"),
        ("e", "y"),
        ("a", "x"),
        ("b", "x"),
        ("c", "y"),
    ];
    for (i, (clip, label)) in items.iter().enumerate() {
        let name = format!("{clip}{i}");
        std::fs::copy(
            refs.join(format!("clip_{clip}.wav")),
            dir.join(format!("{name}.wav")),
        )
        .unwrap();
        let rgb: Vec<u8> = (0..32 * 32 * 3)
            .map(|k| ((k * (i + 3)) % 251) as u8)
            .collect();
        let png = sonic_pipeline::output::encode_png(32, 32, &rgb, &[]).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        csv.push_str(&format!(
            "{name}.wav,{name}.png,\"a photo, number {i}\",{label}\n"
        ));
    }
    let m = dir.join("manifest.csv");
    std::fs::write(&m, csv).unwrap();
    m
}

/// A stage-1 base config (relative model paths would be resolved against `dir`) and a tune
/// config next to it.
fn configs(dir: &Path, n_trials: usize, max_steps: u64, val_every: u64, pruner: Value) -> PathBuf {
    let base = json!({
        "training": {"seed": 3, "batch_size": 2, "val_fraction": 0.25,
                     "optimizer": {"lr": 1e-3}, "clip_grad_norm": 1.0},
        "loss": {"negatives": 2, "temperature": 0.5},
        "model": {"sd": fixtures().join("sd15-tiny"),
                  "clap": fixtures().join("sonic-tiny/clap.safetensors"),
                  "projector_config": fixtures().join("sonic-tiny/config.json")}
    });
    std::fs::write(
        dir.join("stage1.json"),
        serde_json::to_vec_pretty(&base).unwrap(),
    )
    .unwrap();
    let tune = json!({
        "stage": "stage1",
        "base_config": "stage1.json",
        "study_dir": "study",
        "manifest": "manifest.csv",
        "n_trials": n_trials,
        "seed": 7,
        "sampler": {"type": "tpe", "n_startup_trials": 2},
        "pruner": pruner,
        "budget": {"max_steps": max_steps, "val_every": val_every},
        "space": {
            "training.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
            "loss.temperature": {"type": "float", "low": 0.2, "high": 1.0},
            "block_mode": {"type": "categorical", "choices": ["chained", "faithful"]}
        }
    });
    let p = dir.join("tune.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&tune).unwrap()).unwrap();
    p
}

fn journal(study: &Path) -> Vec<Value> {
    std::fs::read_to_string(study.join("study.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn events<'a>(j: &'a [Value], kind: &str) -> Vec<&'a Value> {
    j.iter().filter(|e| e["event"] == kind).collect()
}

fn run_ok(args: &[&str]) -> (String, String) {
    let o = sonic().args(args).output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "sonic {args:?} failed:\n{out}\n{err}");
    (out, err)
}

#[test]
fn tune_runs_resumes_and_writes_the_best_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d);
    let pruner = json!({"type": "median", "n_startup_trials": 1, "n_warmup_steps": 2});
    let cfg = configs(d, 3, 4, 2, pruner);
    let study = d.join("study");
    let c = cfg.to_str().unwrap();
    let (out, _) = run_ok(&["tune", "--config", c, "--trials", "2", "--quiet"]);
    let j = journal(&study);
    assert_eq!(events(&j, "start").len(), 2);
    assert!(out.contains("best trial"), "{out}");
    // every finished trial reported at its validation steps
    for e in events(&j, "complete") {
        let n = &e["trial"];
        let steps: Vec<u64> = events(&j, "report")
            .iter()
            .filter(|r| &r["trial"] == n)
            .map(|r| r["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, vec![2, 4]);
    }
    // resume: up to 3 trials in total (the config's n_trials)
    let (out, err) = run_ok(&["tune", "--config", c, "--quiet"]);
    assert!(err.contains("2 trials so far"), "{err}");
    let j = journal(&study);
    assert_eq!(events(&j, "start").len(), 3);
    // the best config is the base config with the best parameters
    let best: Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("best_params.json")).unwrap())
            .unwrap();
    let argmin = events(&j, "complete")
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap().parse::<f64>().unwrap(),
                e["trial"].as_u64().unwrap(),
            )
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .unwrap();
    assert_eq!(best["trial"].as_u64().unwrap(), argmin.1);
    let bc = sonic_train::config::Stage1Config::from_file(&study.join("best_config.json")).unwrap();
    assert_eq!(
        bc.training.optimizer.lr,
        best["params"]["training.optimizer.lr"].as_f64().unwrap()
    );
    assert_eq!(
        bc.loss.temperature,
        best["params"]["loss.temperature"].as_f64().unwrap()
    );
    assert_eq!(
        bc.block_mode,
        best["params"]["block_mode"].as_str().unwrap()
    );
    assert_eq!(
        bc.training.max_steps, None,
        "the per-trial budget is not part of the best config"
    );
    assert_eq!(bc.loss.negatives, 2);
    assert!(
        out.contains(&format!("best trial {}", best["trial"])),
        "{out}"
    );
    // nothing left to do: no trial runs, the best is reported again
    let (out2, _) = run_ok(&["tune", "--config", c, "--quiet"]);
    assert_eq!(journal(&study).len(), j.len());
    assert!(
        out2.contains(&format!("best trial {}", best["trial"])),
        "{out2}"
    );
}

#[test]
fn tune_survives_sigkill_mid_trial() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d);
    // long enough trials that the kill lands inside one; no pruning, so that trial 1 cannot
    // end at its first report
    let cfg = configs(d, 4, 60, 20, json!({"type": "none"}));
    let study = d.join("study");
    let c = cfg.to_str().unwrap();
    let mut child = sonic()
        .args(["tune", "--config", c, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // wait until trial 1 has started and reported once, then kill
    loop {
        let j = journal(&study);
        let started = events(&j, "start").iter().any(|e| e["trial"] == 1);
        let reported = events(&j, "report").iter().any(|e| e["trial"] == 1);
        if started && reported {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "trial 1 never reported"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "sonic tune ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let j = journal(&study);
    let finished = |n: u64| {
        j.iter().any(|e| {
            e["trial"] == n
                && ["complete", "pruned", "failed"].contains(&e["event"].as_str().unwrap())
        })
    };
    assert!(
        !finished(1),
        "trial 1 finished before the kill; make the trials longer"
    );
    let params1 = events(&j, "start")[1]["params"].clone();
    let (_, err) = run_ok(&["tune", "--config", c, "--quiet"]);
    assert!(
        err.contains("trials [1] were interrupted") && err.contains("re-running [1]"),
        "{err}"
    );
    let j = journal(&study);
    let failed: Vec<&Value> = events(&j, "failed");
    assert!(
        failed
            .iter()
            .any(|e| e["trial"] == 1 && e["interrupted"] == true)
    );
    let starts = events(&j, "start");
    assert_eq!(
        starts[2]["params"], params1,
        "the interrupted parameters run again next"
    );
    assert_eq!(starts[2]["requeued_from"], 1);
    // 4 counted trials: 0, 2, 3, 4 (trial 1 does not count)
    assert_eq!(starts.len(), 5);
    assert!(study.join("best_config.json").exists());
}

#[test]
fn tune_stage2_runs_on_the_tiny_models() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dataset(d);
    let base = json!({
        "training": {"seed": 1, "batch_size": 2, "val_fraction": 0.25},
        "model": {"sd": fixtures().join("sd15-tiny"),
                  "clap": fixtures().join("sonic-tiny/clap.safetensors"),
                  "projector": fixtures().join("sonic-tiny/projector.safetensors"),
                  "projector_config": fixtures().join("sonic-tiny/config.json")},
        "resolution": 64
    });
    std::fs::write(
        d.join("stage2.json"),
        serde_json::to_vec_pretty(&base).unwrap(),
    )
    .unwrap();
    let tune = json!({
        "stage": "stage2",
        "base_config": "stage2.json",
        "study_dir": "study",
        "manifest": "manifest.csv",
        "n_trials": 2,
        "sampler": {"type": "random"},
        "pruner": {"type": "none"},
        "budget": {"max_steps": 2, "val_every": 1},
        "space": {
            "training.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
            "gate_init": {"type": "float", "low": 0.0, "high": 0.5},
            "train_projector": {"type": "categorical", "choices": [false, true]}
        }
    });
    let cfg = d.join("tune2.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&tune).unwrap()).unwrap();
    let (out, _) = run_ok(&["tune", "--config", cfg.to_str().unwrap(), "--quiet"]);
    assert!(
        out.contains("trials: 2 complete, 0 pruned, 0 failed"),
        "{out}"
    );
    let j = journal(&d.join("study"));
    assert_eq!(events(&j, "report").len(), 4);
    let best: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("study/best_params.json")).unwrap())
            .unwrap();
    let bc =
        sonic_train::config::Stage2Config::from_file(&d.join("study/best_config.json")).unwrap();
    assert_eq!(
        bc.train_projector,
        best["params"]["train_projector"].as_bool().unwrap()
    );
    assert_eq!(
        bc.gate_init as f64,
        best["params"]["gate_init"].as_f64().unwrap() as f32 as f64
    );
}
