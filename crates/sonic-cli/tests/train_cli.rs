//! `sonic train` end to end on the tiny fixtures: SIGKILL mid-run then `--resume` continues
//! with exactly the losses of an uninterrupted run; caches are reused (a second run calls no
//! model); stage 2 writes official adapters and sample images.

mod common;

use common::dataset;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures")
}

fn sonic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
}

fn stage1_config(dir: &Path, steps: u64) -> PathBuf {
    let c = serde_json::json!({
        "training": {"seed": 3, "batch_size": 2, "max_steps": steps, "val_fraction": 0.0,
                     "val_every": 0, "checkpoint_every": 1, "keep_checkpoints": 2,
                     "optimizer": {"lr": 1e-3}, "clip_grad_norm": 1.0},
        "loss": {"negatives": 2, "temperature": 0.5},
        "model": {"sd": fixtures().join("sd15-tiny"),
                  "clap": fixtures().join("sonic-tiny/clap.safetensors"),
                  "projector_config": fixtures().join("sonic-tiny/config.json")}
    });
    let p = dir.join("stage1.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    p
}

fn log(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The losses by step logged after the last start line of the log.
fn losses_of_last_run(out: &Path) -> (Value, Vec<(u64, String)>) {
    let lines = log(out);
    let start = lines
        .iter()
        .rposition(|v| v.get("cache").is_some())
        .expect("a start line");
    let losses = lines[start + 1..]
        .iter()
        .filter_map(|v| Some((v.get("step")?.as_u64()?, v.get("loss")?.to_string())))
        .collect();
    (lines[start].clone(), losses)
}

fn args1(cfg: &Path, manifest: &Path, out: &Path, cache: &Path) -> Vec<String> {
    [
        "train",
        "stage1",
        "--config",
        cfg.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn stage1_survives_sigkill_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = dataset(d);
    let steps = 60;
    let cfg = stage1_config(d, steps);
    let cache = d.join("cache");

    // Uninterrupted run (fills the cache).
    let full = d.join("full");
    let o = sonic()
        .args(args1(&cfg, &manifest, &full, &cache))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (start, full_losses) = losses_of_last_run(&full);
    assert_eq!(full_losses.len(), steps as usize);
    assert_eq!(start["cache"]["clap"]["computed"], 5, "{start}");
    assert!(full.join("projector.safetensors").is_file());

    // Killed with SIGKILL right after its first checkpoint.
    let killed = d.join("killed");
    let mut child = sonic()
        .args(args1(&cfg, &manifest, &killed, &cache))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let latest = killed.join("checkpoints/latest");
    let t0 = Instant::now();
    while !latest.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        !killed.join("projector.safetensors").exists(),
        "the run finished before the kill; the test proves nothing"
    );
    // Its cache start line: nothing computed, everything read.
    let (start, _) = losses_of_last_run(&killed);
    assert_eq!(start["cache"]["clap"]["computed"], 0, "{start}");
    assert_eq!(start["cache"]["text"]["computed"], 0, "{start}");
    assert_eq!(start["cache"]["clap"]["hits"], 5, "{start}");

    // Without --resume the folder is refused; with it the run continues.
    let o = sonic()
        .args(args1(&cfg, &manifest, &killed, &cache))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    let mut a = args1(&cfg, &manifest, &killed, &cache);
    a.push("--resume".into());
    let o = sonic().args(&a).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (start, resumed) = losses_of_last_run(&killed);
    let k = start["resumed_from"].as_u64().expect("resumed_from");
    assert!(k >= 1 && k < steps, "{start}");
    assert_eq!(resumed.first().map(|r| r.0), Some(k + 1));
    assert_eq!(
        resumed,
        full_losses[k as usize..].to_vec(),
        "losses after resuming from step {k} differ from the uninterrupted run"
    );
    // The final projectors are identical.
    let a = std::fs::read(full.join("projector.safetensors")).unwrap();
    let b = std::fs::read(killed.join("projector.safetensors")).unwrap();
    assert!(a == b, "final projector differs");
}

#[test]
fn stage2_trains_adapters_and_writes_samples() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = dataset(d);
    let c = serde_json::json!({
        "training": {"seed": 1, "batch_size": 2, "max_steps": 2, "val_fraction": 0.2,
                     "val_every": 2, "checkpoint_every": 1},
        "model": {"sd": fixtures().join("sd15-tiny"),
                  "clap": fixtures().join("sonic-tiny/clap.safetensors"),
                  "projector": fixtures().join("sonic-tiny/projector.safetensors"),
                  "projector_config": fixtures().join("sonic-tiny/config.json")},
        "resolution": 64, "sample_every": 2, "sample_steps": 2, "gate_init": 0.1
    });
    let cfg = d.join("stage2.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let out = d.join("run");
    let o = sonic()
        .args([
            "train",
            "stage2",
            "--config",
            cfg.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = log(&out);
    // 4 training images, plain and flipped, and 1 validation image.
    assert_eq!(lines[0]["cache"]["latents"]["computed"], 9, "{}", lines[0]);
    assert!(lines.iter().any(|v| v.get("val_loss").is_some()));
    let samples: Vec<String> = lines
        .iter()
        .filter_map(|v| v.get("samples"))
        .flat_map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(samples.len(), 1, "one validation clip -> one sample image");
    assert!(std::fs::read(&samples[0]).unwrap().starts_with(b"\x89PNG"));
    // The adapters load as an official adapter file with 7 adapters.
    let device = burn::tensor::Device::default();
    let unet =
        sonic_unet::UNet2DConditionModel::from_dir(&fixtures().join("sd15-tiny/unet"), &device)
            .unwrap();
    let (unet, _) = unet
        .with_adapters(&out.join("adapters.safetensors"), &device)
        .unwrap();
    assert_eq!(unet.adapter_count(), 7);
}

/// `sonic train import-labels`: the official layout (CRLF `labels.csv`, images beside the clips
/// with the same stem) becomes a manifest; a clip without an image is refused naming the line,
/// and no manifest is written.
#[test]
fn import_labels_writes_a_manifest_and_names_the_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let refs = fixtures().join("sonic-tiny/reference");
    for (clip, ext) in [("a", "png"), ("b", "jpg")] {
        std::fs::copy(
            refs.join(format!("clip_{clip}.wav")),
            data.join(format!("{clip}.wav")),
        )
        .unwrap();
        std::fs::write(data.join(format!("{clip}.{ext}")), b"image bytes").unwrap();
    }
    std::fs::write(
        data.join("labels.csv"),
        "path,label\r\na.wav,rain\r\nb.wav,thunder\r\n",
    )
    .unwrap();
    let import = |out: &Path| {
        sonic()
            .args(["train", "import-labels"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    let manifest = tmp.path().join("manifest.csv");
    let out = import(&manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&manifest).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "audio,image,caption,label", "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].ends_with("a.png,,rain"), "{text}");
    assert!(lines[2].ends_with("b.jpg,,thunder"), "{text}");
    assert!(!text.contains('\r'), "{text}");

    // A third clip whose image is missing: an error naming labels.csv line 4, nothing written.
    std::fs::copy(refs.join("clip_c.wav"), data.join("c.wav")).unwrap();
    std::fs::write(
        data.join("labels.csv"),
        "path,label\r\na.wav,rain\r\nb.wav,thunder\r\nc.wav,rain\r\n",
    )
    .unwrap();
    let second = tmp.path().join("second.csv");
    let out = import(&second);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("labels.csv:4"), "{err}");
    assert!(!second.exists());
}

fn blip_tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/blip-tiny")
}

fn manifest_captions(path: &Path) -> Vec<String> {
    sonic_train::dataset::Dataset::open(path)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.caption)
        .collect()
}

/// `sonic train caption`: a manifest without captions (one kept) is captioned by the tiny BLIP
/// (the caption cache makes a second run compute nothing; a written caption survives unless
/// --overwrite), and the result trains end to end: stage 1, then stage 2.
#[test]
fn caption_fills_missing_captions_then_both_stages_train() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = dataset(d);
    // Drop the captions but one.
    let text = std::fs::read_to_string(&full).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (i, line) in lines.iter_mut().enumerate().skip(1) {
        if i != 2 {
            let (start, rest) = line.split_once(",\"").unwrap();
            let label = rest.rsplit_once(',').unwrap().1;
            *line = format!("{start},,{label}");
        }
    }
    let bare = d.join("bare.csv");
    std::fs::write(&bare, lines.join("\n") + "\n").unwrap();
    let kept = manifest_captions(&bare)[1].clone();
    assert_eq!(kept, "a photo, number 1");
    let captioned = d.join("captioned.csv");
    let caption = |extra: &[&str]| {
        let mut cmd = sonic();
        cmd.args(["train", "caption", "--manifest"])
            .arg(&bare)
            .arg("--out")
            .arg(&captioned)
            .arg("--captioner")
            .arg(blip_tiny())
            .args(extra);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = caption(&[]);
    assert!(
        first.contains("4 computed, 0 from the cache; 1 kept"),
        "{first}"
    );
    let captions = manifest_captions(&captioned);
    assert_eq!(captions[1], kept);
    assert!(
        captions.iter().all(|c| !c.trim().is_empty()),
        "{captions:?}"
    );
    // Different pictures, different captions (the tiny model is random, not constant).
    let distinct: std::collections::BTreeSet<_> = captions.iter().collect();
    assert!(distinct.len() >= 3, "{captions:?}");
    let second = caption(&[]);
    assert!(second.contains("0 computed, 4 from the cache"), "{second}");
    assert_eq!(manifest_captions(&captioned), captions);
    let overwritten = caption(&["--overwrite"]);
    assert!(overwritten.contains("0 kept"), "{overwritten}");
    assert_ne!(manifest_captions(&captioned)[1], kept);
    caption(&[]); // back to the kept caption: the cache answers, no model call
    let _ = std::fs::remove_file(&captioned);
    caption(&[]);

    // Stage 1 then stage 2 on the captioned manifest.
    let cfg1 = stage1_config(d, 2);
    let cache = d.join("cache");
    let s1 = d.join("s1");
    let o = sonic()
        .args(args1(&cfg1, &captioned, &s1, &cache))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(s1.join("projector.safetensors").is_file());
    let c = serde_json::json!({
        "training": {"seed": 1, "batch_size": 2, "max_steps": 1, "val_fraction": 0.0,
                     "val_every": 0, "checkpoint_every": 1},
        "model": {"sd": fixtures().join("sd15-tiny"),
                  "clap": fixtures().join("sonic-tiny/clap.safetensors"),
                  "projector": s1.join("projector.safetensors"),
                  "projector_config": fixtures().join("sonic-tiny/config.json")},
        "resolution": 64, "sample_every": 0, "gate_init": 0.1
    });
    let cfg2 = d.join("stage2.json");
    std::fs::write(&cfg2, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let s2 = d.join("s2");
    let o = sonic()
        .args(["train", "stage2", "--config"])
        .arg(&cfg2)
        .arg("--manifest")
        .arg(&captioned)
        .arg("--out")
        .arg(&s2)
        .arg("--cache")
        .arg(&cache)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(s2.join("adapters.safetensors").is_file());
    // Stage 2 embedded the new captions: one text-cache entry per distinct caption (+ "").
    let text_entries = walk(&cache.join("text")).len();
    assert!(text_entries > distinct.len(), "{text_entries} text entries");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `import-labels --caption`: the official layout becomes a captioned manifest in one step; a
/// picture that does not decode is an error naming it, and no manifest is written.
#[test]
fn import_labels_with_captions_and_a_corrupt_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    dataset(&src);
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for clip in ["a", "c"] {
        for ext in ["wav", "png"] {
            std::fs::copy(
                src.join(format!("{clip}.{ext}")),
                data.join(format!("{clip}.{ext}")),
            )
            .unwrap();
        }
    }
    std::fs::write(data.join("labels.csv"), "path,label\na.wav,x\nc.wav,y\n").unwrap();
    let import = |out: &Path| {
        sonic()
            .args(["train", "import-labels"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .arg("--caption")
            .arg("--captioner")
            .arg(blip_tiny())
            .arg("--cache")
            .arg(tmp.path().join("cache"))
            .output()
            .unwrap()
    };
    let manifest = tmp.path().join("m.csv");
    let o = import(&manifest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let captions = manifest_captions(&manifest);
    assert_eq!(captions.len(), 2);
    assert!(
        captions.iter().all(|c| !c.trim().is_empty()),
        "{captions:?}"
    );

    std::fs::write(data.join("c.png"), b"\x89PNG not really").unwrap();
    let second = tmp.path().join("m2.csv");
    let o = import(&second);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("c.png"), "{err}");
    assert!(!second.exists());
}
