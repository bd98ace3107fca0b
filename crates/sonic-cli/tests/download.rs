//! `sonic download` / `sonic generate --preset` end to end against a local stand-in for the
//! Hugging Face hub (127.0.0.1 only, `sonic_hub::test_server`), serving the tiny fixtures under the
//! real repository names:
//!
//! - `CompVis/stable-diffusion-v1-4`: `sd15-tiny` (plus a small `special_tokens_map.json`,
//!   which the fixture's tokenizer folder lacks);
//! - `microsoft/msclap` -> `CLAP_weights_2022.pth`: `sonic-tiny/clap.safetensors` (the CLAP
//!   loader detects the format from the bytes);
//! - space `burakcanbiner/SonicDiffusion` -> `ckpts/audio_projector_landscape.pth`: the tiny
//!   projector re-saved with `Projector::save_safetensors`, whose metadata carries the config
//!   (4 heads, which the bare weights cannot state; the projector loader also detects the format
//!   from the bytes); `ckpts/landscape.pt`: `tests/data/landscape_tiny.pt`, a real torch pickle
//!   of the tiny adapters (the adapter loader picks the reader by extension), written by
//!   `tests/data/make_checkpoints.py`.
//!
//! - `latent-consistency/lcm-lora-sdv1-5` and `madebyollin/taesd` (the `--fast` extras):
//!   `fast-tiny`'s kohya LoRA (made for sd15-tiny's UNet) and its tiny autoencoder.
//!
//! Every command runs the real `sonic` binary with `HF_ENDPOINT` at the server and `HF_HOME`
//! in a temporary folder.

use sonic_hub::test_server::{COMMIT, Entry, Hub, files_under};
mod common;

use sonic_pipeline::hub::{self, Checkpoint};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const SD: &str = "CompVis/stable-diffusion-v1-4";
const CLAP: &str = "microsoft/msclap";
const SPACE: &str = "spaces/burakcanbiner/SonicDiffusion";
const UNET: &str = "unet/diffusion_pytorch_model.safetensors";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(manifest()).expect("fixtures not found")
}

fn thunder() -> PathBuf {
    manifest().join("../../examples/assets/thunder.wav")
}

/// The tiny projector as a safetensors file with its config in the metadata.
fn projector_bytes() -> Vec<u8> {
    let tiny = fixtures().join("sonic-tiny");
    let device = sonic_core::device::parse_device("flex").unwrap();
    let projector = sonic_projector::Projector::from_files(
        &tiny.join("projector.safetensors"),
        &tiny.join("config.json"),
        &device,
    )
    .expect("tiny projector");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projector.safetensors");
    projector.save_safetensors(&path).expect("save projector");
    std::fs::read(&path).unwrap()
}

/// Every file of every preset, from the tiny fixtures (built once).
fn entries() -> Vec<Entry> {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES
        .get_or_init(|| {
            let sd = fixtures().join("sd15-tiny");
            let tiny = fixtures().join("sonic-tiny");
            let mut v = Vec::new();
            for f in hub::sd_files(false) {
                let data = if f.ends_with("special_tokens_map.json") {
                    br#"{"bos_token":"<|startoftext|>","eos_token":"<|endoftext|>","pad_token":"<|endoftext|>","unk_token":"<|endoftext|>"}"#.to_vec()
                } else {
                    std::fs::read(sd.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"))
                };
                v.push(Entry::new(SD, &f, data));
            }
            v.push(Entry::new(
                CLAP,
                hub::CLAP_FILE,
                std::fs::read(tiny.join("clap.safetensors")).unwrap(),
            ));
            let projector = projector_bytes();
            let adapters = std::fs::read(manifest().join("tests/data/landscape_tiny.pt")).unwrap();
            for c in Checkpoint::ALL {
                v.push(Entry::new(SPACE, c.projector_file(), projector.clone()));
                v.push(Entry::new(SPACE, c.adapters_file(), adapters.clone()));
            }
            let fast = fixtures().join("fast-tiny");
            v.push(Entry::new(
                hub::LCM_LORA_REPO,
                hub::LCM_LORA_FILE,
                std::fs::read(fast.join("lora_kohya/lora.safetensors")).unwrap(),
            ));
            for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
                v.push(Entry::new(
                    hub::TAESD_REPO,
                    f,
                    std::fs::read(fast.join("vae_tiny").join(f)).unwrap(),
                ));
            }
            for (f, data) in full_clip_files() {
                v.push(Entry::new(hub::CLIP_EVAL_REPO, &f, data));
            }
            let blip = manifest().join("../../tests-data/blip-tiny");
            for f in [
                "config.json",
                "model.safetensors",
                "preprocessor_config.json",
                "tokenizer_config.json",
                "vocab.txt",
            ] {
                v.push(Entry::new(hub::BLIP_BASE_REPO, f, std::fs::read(blip.join(f)).unwrap()));
            }
            v.push(Entry::new(
                hub::BLIP_BASE_REPO,
                "special_tokens_map.json",
                br#"{"cls_token":"[CLS]","sep_token":"[SEP]","pad_token":"[PAD]","unk_token":"[UNK]","mask_token":"[MASK]","bos_token":"[DEC]"}"#.to_vec(),
            ));
            v
        })
        .clone()
}

/// eval-tiny's two CLIP towers as one transformers `CLIPModel` repository (one config with
/// `vision_config` / `text_config`, one weights file with both towers and `logit_scale`, the
/// processor's and tokenizer's files at the top).
fn full_clip_files() -> Vec<(String, Vec<u8>)> {
    use sonic_core::weights::tensor_file::{
        NamedTensor, read_safetensors_f32, write_safetensors_f32,
    };
    let tiny = fixtures().join("eval-tiny");
    let read_json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let vision = read_json(tiny.join("image_encoder/config.json"));
    let text = read_json(tiny.join("text_encoder/config.json"));
    let config = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": vision["projection_dim"],
        "vision_config": vision,
        "text_config": text,
    });
    let mut tensors: Vec<NamedTensor> = Vec::new();
    for part in ["image_encoder", "text_encoder"] {
        tensors.extend(read_safetensors_f32(&tiny.join(part).join("model.safetensors")).unwrap());
    }
    tensors.push(NamedTensor {
        name: "logit_scale".into(),
        shape: vec![],
        data: vec![2.6592],
    });
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    write_safetensors_f32(&weights, &tensors, None).unwrap();
    let mut files = vec![
        ("config.json".to_string(), serde_json::to_vec_pretty(&config).unwrap()),
        ("model.safetensors".to_string(), std::fs::read(&weights).unwrap()),
        (
            "preprocessor_config.json".to_string(),
            std::fs::read(tiny.join("image_encoder/preprocessor_config.json")).unwrap(),
        ),
        (
            "special_tokens_map.json".to_string(),
            br#"{"bos_token":"<|startoftext|>","eos_token":"<|endoftext|>","pad_token":"<|endoftext|>","unk_token":"<|endoftext|>"}"#.to_vec(),
        ),
    ];
    for f in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        files.push((
            f.to_string(),
            std::fs::read(tiny.join("tokenizer").join(f)).unwrap(),
        ));
    }
    files
}

fn entry<'a>(entries: &'a [Entry], repo: &str, file: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.repo == repo && e.file == file)
        .expect("entry")
}

/// `sonic ARGS` with the hub environment of this test only.
fn sonic(hf_home: &Path, endpoint: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonic"));
    for k in [
        "HF_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
        "XDG_CACHE_HOME",
        "SONIC_DEVICE",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .args(args)
        .output()
        .expect("run sonic")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The snapshot folder of a repository in the cache (`{HF_HOME}/hub/{folder}/snapshots/{commit}`).
fn snapshot(hf_home: &Path, folder: &str) -> PathBuf {
    hf_home
        .join("hub")
        .join(folder)
        .join("snapshots")
        .join(COMMIT)
}

fn incomplete_files(hf_home: &Path) -> Vec<PathBuf> {
    files_under(hf_home)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".incomplete"))
        .collect()
}

#[test]
fn download_then_generate_with_the_landscape_preset() {
    let hub = Hub::start(entries());
    let home = tempfile::tempdir().unwrap();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("landscape: projector"), "{stdout}");

    // Every file of the preset is in the cache, byte for byte.
    let e = entries();
    let sd = snapshot(home.path(), "models--CompVis--stable-diffusion-v1-4");
    for f in hub::sd_files(false) {
        assert_eq!(
            std::fs::read(sd.join(&f)).unwrap(),
            entry(&e, SD, &f).data,
            "{f}"
        );
    }
    let clap = snapshot(home.path(), "models--microsoft--msclap").join(hub::CLAP_FILE);
    assert_eq!(
        std::fs::read(clap).unwrap(),
        entry(&e, CLAP, hub::CLAP_FILE).data
    );
    let space = snapshot(home.path(), "spaces--burakcanbiner--SonicDiffusion");
    for f in ["ckpts/audio_projector_landscape.pth", "ckpts/landscape.pt"] {
        assert_eq!(
            std::fs::read(space.join(f)).unwrap(),
            entry(&e, SPACE, f).data
        );
    }
    assert!(
        !space.join("ckpts/greatest_hits.pt").exists(),
        "the landscape preset fetches only its own checkpoint"
    );
    assert!(incomplete_files(home.path()).is_empty());

    // Generate: everything resolves from the cache (HEAD requests only, no body transfers).
    let png = home.path().join("thunder.png");
    let before = hub.log().len();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &[
            "generate",
            "--preset",
            "landscape",
            "--audio",
            thunder().to_str().unwrap(),
            "--steps",
            "2",
            "--seed",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            png.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(&png).expect("the PNG was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        hub.log()[before..].iter().all(|l| l.method != "GET"),
        "a complete cache downloads nothing again: {:?}",
        &hub.log()[before..]
    );

    // And offline, with the server gone, the cache alone is enough.
    let endpoint = hub.endpoint();
    drop(hub);
    let png2 = home.path().join("offline.png");
    let out = sonic(
        home.path(),
        &endpoint,
        &[
            "generate",
            "--preset",
            "landscape",
            "--offline",
            "--audio",
            thunder().to_str().unwrap(),
            "--steps",
            "2",
            "--seed",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            png2.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // `sonic edit` takes the preset too (here from the cache, offline).
    let photo = home.path().join("photo.png");
    image::RgbImage::from_fn(40, 32, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 7) as u8, 90])
    })
    .save(&photo)
    .unwrap();
    let edited = home.path().join("edited.jpg");
    let edit = sonic(
        home.path(),
        &endpoint,
        &[
            "edit",
            "--preset",
            "landscape",
            "--offline",
            "--mode",
            "sdedit",
            "--image",
            photo.to_str().unwrap(),
            "--audio",
            thunder().to_str().unwrap(),
            "--steps",
            "2",
            "--out",
            edited.to_str().unwrap(),
        ],
    );
    assert!(edit.status.success(), "{}", text(&edit));
    let picture = image::open(&edited).expect("the edit was written");
    assert_eq!((picture.width(), picture.height()), (40, 32));
    assert_eq!(
        image_pixels(&std::fs::read(&png2).unwrap()),
        image_pixels(&bytes),
        "same seed, same image"
    );

    // `sonic export` takes the preset: its UNet and adapters, offline.
    let exported = home.path().join("adapters.safetensors");
    let export = sonic(
        home.path(),
        &endpoint,
        &[
            "export",
            "--preset",
            "landscape",
            "--offline",
            "--out",
            exported.to_str().unwrap(),
        ],
    );
    assert!(export.status.success(), "{}", text(&export));
    let keys = sonic_core::weights::read_safetensors_header(&exported).unwrap();
    assert!(
        !keys.is_empty() && keys.keys().all(|k| k.contains("_adapter")),
        "{keys:?}"
    );

    // So does `sonic train`: SD and CLAP from the preset, the rest from the config.
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let manifest = common::dataset(&data);
    let config = home.path().join("stage1.json");
    let c = serde_json::json!({
        "training": {"seed": 3, "batch_size": 2, "max_steps": 1, "val_fraction": 0.0,
                     "val_every": 0, "checkpoint_every": 1},
        "loss": {"negatives": 2, "temperature": 0.5},
        "model": {"projector_config": fixtures().join("sonic-tiny/config.json")}
    });
    std::fs::write(&config, serde_json::to_vec(&c).unwrap()).unwrap();
    let run = home.path().join("run");
    let train = sonic(
        home.path(),
        &endpoint,
        &[
            "train",
            "stage1",
            "--preset",
            "landscape",
            "--offline",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
    );
    assert!(train.status.success(), "{}", text(&train));
    assert!(
        run.join("projector.safetensors").is_file(),
        "{}",
        text(&train)
    );

    // And `sonic tune`: one trial of one step, the frozen models from the preset.
    let base = serde_json::json!({
        "training": {"seed": 3, "batch_size": 2, "val_fraction": 0.2},
        "loss": {"negatives": 2, "temperature": 0.5},
        "model": {"projector_config": fixtures().join("sonic-tiny/config.json")}
    });
    std::fs::write(data.join("base.json"), serde_json::to_vec(&base).unwrap()).unwrap();
    let tune = serde_json::json!({
        "stage": "stage1", "base_config": "base.json", "study_dir": "study",
        "manifest": "manifest.csv", "n_trials": 1, "seed": 7,
        "sampler": {"type": "random"}, "pruner": {"type": "none"},
        "budget": {"max_steps": 1, "val_every": 1},
        "space": {"loss.temperature": {"type": "float", "low": 0.2, "high": 1.0}}
    });
    let tune_path = data.join("tune.json");
    std::fs::write(&tune_path, serde_json::to_vec(&tune).unwrap()).unwrap();
    let tuned = sonic(
        home.path(),
        &endpoint,
        &[
            "tune",
            "--preset",
            "landscape",
            "--offline",
            "--quiet",
            "--config",
            tune_path.to_str().unwrap(),
        ],
    );
    assert!(tuned.status.success(), "{}", text(&tuned));
    assert!(data.join("study/study.jsonl").is_file(), "{}", text(&tuned));
}

/// The PNG without its metadata chunks (the output path is recorded there): IHDR + IDAT.
fn image_pixels(png: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 8;
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().unwrap()) as usize;
        let kind = &png[i + 4..i + 8];
        let end = (i + 12 + len).min(png.len());
        if kind == b"IHDR" || kind == b"IDAT" {
            out.extend_from_slice(&png[i..end]);
        }
        i = end;
    }
    out
}

#[test]
fn offline_with_an_empty_cache_says_what_is_missing_and_how_to_fetch_it() {
    let hub = Hub::start(entries());
    let home = tempfile::tempdir().unwrap();
    let generate = [
        "generate",
        "--preset",
        "landscape",
        "--offline",
        "--audio",
        thunder().to_str().unwrap(),
        "--steps",
        "2",
        "--out",
        home.path().join("x.png").to_str().unwrap(),
    ]
    .map(str::to_string);
    let generate: Vec<&str> = generate.iter().map(String::as_str).collect();
    for args in [
        &["download", "--preset", "landscape", "--offline"][..],
        &generate[..],
    ] {
        let out = sonic(home.path(), &hub.endpoint(), args);
        assert!(!out.status.success(), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in [
            "offline",
            "CompVis/stable-diffusion-v1-4: unet/diffusion_pytorch_model.safetensors",
            "CompVis/stable-diffusion-v1-4: model_index.json",
            "microsoft/msclap: CLAP_weights_2022.pth",
            "spaces/burakcanbiner/SonicDiffusion: ckpts/landscape.pt",
            "spaces/burakcanbiner/SonicDiffusion: ckpts/audio_projector_landscape.pth",
            "sonic download --preset landscape",
        ] {
            assert!(stderr.contains(needle), "no `{needle}` in:\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // HF_HUB_OFFLINE=1 is the same as --offline.
    let out = Command::new(env!("CARGO_BIN_EXE_sonic"))
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HUB_CACHE")
        .args(["download", "--preset", "greatest-hits"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ckpts/greatest_hits.pt")
            && stderr.contains("sonic download --preset greatest-hits"),
        "{stderr}"
    );
    assert!(
        hub.log().is_empty(),
        "offline touched the network: {:?}",
        hub.log()
    );
    assert!(
        !snapshot(home.path(), "models--CompVis--stable-diffusion-v1-4").exists(),
        "offline mode writes nothing into the cache"
    );
}

#[test]
fn a_transfer_cut_mid_file_resumes_on_the_next_run() {
    let hub = Hub::start(entries());
    let home = tempfile::tempdir().unwrap();
    let total = entry(&entries(), SD, UNET).data.len();
    let cut = 100_000;
    // Every attempt of the first run (the CLI retries transient failures) stops after `cut`
    // more bytes, so the run gives up with a partial file.
    hub.set(|s| s.cut_always = Some((UNET.to_string(), cut)));
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(UNET), "{stderr}");
    let partial = incomplete_files(home.path());
    assert_eq!(partial.len(), 1, "{partial:?}");
    let kept = std::fs::metadata(&partial[0]).unwrap().len() as usize;
    assert!(kept >= cut && kept < total, "kept {kept} of {total} bytes");
    assert!(
        !snapshot(home.path(), "models--CompVis--stable-diffusion-v1-4")
            .join(UNET)
            .exists()
    );

    // The second run asks only for the rest.
    hub.set(|s| s.cut_always = None);
    let before = hub.log().len();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = hub.log();
    let unet_cdn = log[before..]
        .iter()
        .filter(|l| l.method == "GET" && l.path.starts_with("/cdn/"))
        .find(|l| l.range.is_some())
        .unwrap_or_else(|| panic!("no Range request in {:?}", &log[before..]));
    assert_eq!(unet_cdn.range.as_deref(), Some(&*format!("bytes={kept}-")));
    assert_eq!(
        std::fs::read(snapshot(home.path(), "models--CompVis--stable-diffusion-v1-4").join(UNET))
            .unwrap(),
        entry(&entries(), SD, UNET).data
    );
    assert!(incomplete_files(home.path()).is_empty());
}

#[test]
fn a_file_that_does_not_match_its_sha256_is_refused() {
    let mut served = entries();
    let bad = served
        .iter_mut()
        .find(|e| e.repo == SPACE && e.file == "ckpts/landscape.pt")
        .unwrap();
    let mut body = bad.data.clone();
    let mid = body.len() / 2;
    body[mid] ^= 0x55;
    bad.body = Some(body.clone());
    let hub = Hub::start(served);
    let home = tempfile::tempdir().unwrap();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains("ckpts/landscape.pt"),
        "{stderr}"
    );
    let space = snapshot(home.path(), "spaces--burakcanbiner--SonicDiffusion");
    assert!(!space.join("ckpts/landscape.pt").exists());
    for f in files_under(home.path()) {
        if f.is_file() {
            assert_ne!(
                std::fs::read(&f).unwrap(),
                body,
                "{} holds the bad body",
                f.display()
            );
        }
    }
    // Once the hub serves the right bytes, the download completes.
    hub.set(|s| {
        for e in &mut s.entries {
            e.body = None;
        }
    });
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(space.join("ckpts/landscape.pt")).unwrap(),
        entry(&entries(), SPACE, "ckpts/landscape.pt").data
    );
}

#[test]
fn export_converts_the_released_adapter_pickle_to_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("landscape.safetensors");
    let unet_out = dir.path().join("diffusion_pytorch_model.safetensors");
    let export = |with_adapters: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sonic"));
        cmd.arg("export")
            .arg("--model")
            .arg(fixtures().join("sd15-tiny"));
        if with_adapters {
            cmd.arg("--adapters")
                .arg(manifest().join("tests/data/landscape_tiny.pt"))
                .arg("--out")
                .arg(&out)
                .arg("--unet-out")
                .arg(&unet_out);
        } else {
            cmd.arg("--out").arg(&out);
        }
        cmd.output().unwrap()
    };
    let run = export(true);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The adapter-only file holds exactly the official keys and values of the pickle (which
    // was written from the fixture's safetensors).
    let want = sonic_core::weights::read_safetensors_f32(
        &fixtures().join("sonic-tiny/adapters.safetensors"),
    )
    .unwrap();
    let got = sonic_core::weights::read_safetensors_f32(&out).unwrap();
    assert_eq!(got.len(), want.len());
    for t in &got {
        let w = want.iter().find(|w| w.name == t.name).expect(&t.name);
        assert_eq!((&w.shape, &w.data), (&t.shape, &t.data), "{}", t.name);
    }
    // The whole UNet carries the base weights and the adapters.
    let full = sonic_core::weights::read_safetensors_header(&unet_out).unwrap();
    assert!(full.contains_key("conv_in.weight"));
    assert!(full.keys().any(|k| k.ends_with(".gate_adapter")));
    assert!(full.keys().any(|k| k.contains(".ff.net.0.proj.")));

    // Without --adapters there is nothing to put in --out.
    let bad = export(false);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(err.contains("--adapters"), "{err}");
}

/// The library's builder takes a preset too: the files come from the hub on first use, then
/// from the cache offline, and the pipeline it builds generates.
#[test]
fn the_pipeline_builder_resolves_a_preset() {
    use sonic_hub::HubOptions;
    use sonic_pipeline::sonic::{AudioSource, SonicPipeline};
    let hub = Hub::start(entries());
    let cache = tempfile::tempdir().unwrap();
    let device = sonic_core::device::parse_device("flex").unwrap();
    let build = |options: HubOptions| {
        SonicPipeline::builder()
            .preset(Checkpoint::Landscape)
            .hub_options(options)
            .device(device.clone())
            .build()
    };
    let online = HubOptions::new(cache.path()).with_endpoint(hub.endpoint());
    let pipe = build(online.clone()).expect("the preset downloads and loads");
    let sound = pipe.embed(&[AudioSource::File(thunder())]).unwrap();
    let req = sonic_pipeline::AudioToImage {
        steps: 2,
        seed: 1,
        width: 64,
        height: 64,
        ..Default::default()
    };
    let out = pipe.generate(sound, &req, &mut |_| {}).unwrap();
    assert_eq!(out.images.dims(), [1, 3, 64, 64]);
    // Offline with the server gone: the cache alone is enough.
    drop(hub);
    let mut offline = online;
    offline.offline = true;
    build(offline).expect("offline from the cache");
    // An empty cache offline is an error that says what to fetch.
    let empty = tempfile::tempdir().unwrap();
    let mut options = HubOptions::new(empty.path());
    options.offline = true;
    let e = build(options).err().expect("nothing cached");
    assert!(e.to_string().contains("sonic download"), "{e}");
}

/// `download --fast` fetches LCM-LoRA and TAESD; `generate --fast` then uses them with the LCM
/// scheduler, 4 steps and no guidance (recorded in the PNG), from the cache alone, and writes
/// previews with `--preview-every`; an explicit `--steps` still wins.
#[test]
fn fast_generation_fetches_lcm_lora_and_taesd_and_uses_them() {
    let hub = Hub::start(entries());
    let home = tempfile::tempdir().unwrap();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape", "--fast"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let e = entries();
    let lora = snapshot(home.path(), "models--latent-consistency--lcm-lora-sdv1-5")
        .join(hub::LCM_LORA_FILE);
    assert_eq!(
        std::fs::read(&lora).unwrap(),
        entry(&e, hub::LCM_LORA_REPO, hub::LCM_LORA_FILE).data
    );
    let taesd = snapshot(home.path(), "models--madebyollin--taesd");
    assert!(taesd.join("diffusion_pytorch_model.safetensors").is_file());

    let before = hub.log().len();
    let wav = thunder();
    let run = |png: &Path, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--preset",
            "landscape",
            "--fast",
            "--audio",
            wav.to_str().unwrap(),
            "--seed",
            "3",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            png.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = sonic(home.path(), &hub.endpoint(), &args);
        assert!(out.status.success(), "{}", text(&out));
    };
    let png = home.path().join("fast.png");
    run(&png, &["--preview-every", "2"]);
    let preview = std::fs::read(home.path().join("fast-preview.png")).expect("a preview");
    assert!(
        preview.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the preview is a PNG"
    );
    assert!(
        hub.log()[before..].iter().all(|l| l.method != "GET"),
        "the cache holds everything: {:?}",
        &hub.log()[before..]
    );
    assert_eq!(
        common::meta(&png, "sonic:scheduler").as_deref(),
        Some("lcm")
    );
    assert_eq!(common::meta(&png, "sonic:steps").as_deref(), Some("4"));
    assert_eq!(common::meta(&png, "sonic:guidance").as_deref(), Some("1"));
    let lora_meta = common::meta(&png, "sonic:lora").expect("the LoRA is recorded");
    assert!(
        lora_meta.ends_with("pytorch_lora_weights.safetensors:1"),
        "{lora_meta}"
    );
    assert!(common::meta(&png, "sonic:tiny_vae").is_some());
    let png2 = home.path().join("fast2.png");
    run(&png2, &["--steps", "2"]);
    assert_eq!(common::meta(&png2, "sonic:steps").as_deref(), Some("2"));
    // `--vae full` keeps the model's own decoder under --fast.
    let png3 = home.path().join("fast3.png");
    run(&png3, &["--vae", "full"]);
    assert!(common::meta(&png3, "sonic:tiny_vae").is_none());
    assert_eq!(
        common::meta(&png3, "sonic:scheduler").as_deref(),
        Some("lcm")
    );
    assert_ne!(
        image_pixels(&std::fs::read(&png).unwrap()),
        image_pixels(&std::fs::read(&png2).unwrap())
    );
}

/// `download --eval` fetches the metrics' CLIP as one transformers `CLIPModel` repository;
/// `eval` then finds it in the cache by itself (offline) and scores exactly as with the same
/// towers given as a split folder (`--clip eval-tiny`).
#[test]
fn eval_clip_comes_from_the_hub_and_scores_like_the_split_folder() {
    let hub = Hub::start(entries());
    let home = tempfile::tempdir().unwrap();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape", "--eval"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("clip (metrics):"));
    let data = home.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let manifest = common::dataset(&data);
    // The ground-truth pictures stand in for generated ones.
    let pictures = home.path().join("pictures");
    std::fs::create_dir(&pictures).unwrap();
    for clip in ["a", "b", "c", "d", "e"] {
        std::fs::copy(
            data.join(format!("{clip}.png")),
            pictures.join(format!("{clip}.png")),
        )
        .unwrap();
    }
    let score = |out: &Path, clip: Option<PathBuf>| -> serde_json::Value {
        let mut args = vec![
            "eval".to_string(),
            "--offline".into(),
            "--manifest".into(),
            manifest.display().to_string(),
            "--images".into(),
            pictures.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        if let Some(c) = clip {
            args.extend(["--clip".to_string(), c.display().to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = sonic(home.path(), &hub.endpoint(), &refs);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap()
    };
    let from_hub = score(&home.path().join("hub-eval"), None);
    let split = score(
        &home.path().join("split-eval"),
        Some(fixtures().join("eval-tiny")),
    );
    assert_eq!(from_hub["summary"], split["summary"]);
    assert_eq!(from_hub["items"], split["items"]);
    // The pictures are their own ground truth: IIS is 1.
    let iis = from_hub["summary"]["iis"].as_f64().unwrap();
    assert!((iis - 1.0).abs() < 1e-6, "{iis}");
}

/// `download --caption` fetches the captioner; `train caption` then finds it in the cache by
/// itself (offline) and captions exactly as the same folder given with `--captioner`.
#[test]
fn captioner_comes_from_the_hub_and_captions_like_the_folder() {
    let hub = Hub::start(entries());
    let home = tempfile::tempdir().unwrap();
    let out = sonic(
        home.path(),
        &hub.endpoint(),
        &["download", "--preset", "landscape", "--caption"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("blip (captions):"));
    let data = home.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let manifest_csv = common::dataset(&data);
    // The same folder without generation_config.json, as the hub serves it.
    let folder = home.path().join("blip");
    std::fs::create_dir(&folder).unwrap();
    let blip = manifest().join("../../tests-data/blip-tiny");
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "vocab.txt",
    ] {
        std::fs::copy(blip.join(f), folder.join(f)).unwrap();
    }
    let caption = |out: &Path, captioner: Option<&Path>| -> Vec<String> {
        let mut args = vec![
            "train".to_string(),
            "caption".into(),
            "--offline".into(),
            "--overwrite".into(),
            "--manifest".into(),
            manifest_csv.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        if let Some(c) = captioner {
            args.extend(["--captioner".to_string(), c.display().to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = sonic(home.path(), &hub.endpoint(), &refs);
        assert!(o.status.success(), "{}", text(&o));
        sonic_train::dataset::Dataset::open(out)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.caption)
            .collect()
    };
    let from_hub = caption(&home.path().join("hub.csv"), None);
    let from_folder = caption(&home.path().join("folder.csv"), Some(&folder));
    assert_eq!(from_hub, from_folder);
    assert!(from_hub.iter().all(|c| !c.is_empty()), "{from_hub:?}");
}
