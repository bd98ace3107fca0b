//! The command line as a new user meets it (issue 21): pictures saved whatever the prompt's
//! script and in the format the name asks for, random seeds that are printed and stored, default
//! names that never overwrite, the device printed, a warning when a preset runs without a
//! sound, network errors that say what to try, manifests that round-trip any caption, value
//! lists in `--help`, and shell completions.

mod common;
use common::meta;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures not found")
}

/// `sonic` with no device, log or hub settings from the caller's environment.
fn sonic() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonic"));
    for k in [
        "SONIC_DEVICE",
        "SONIC_LOG",
        "RUST_LOG",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "HF_HUB_CACHE",
        "HF_TOKEN",
    ] {
        cmd.env_remove(k);
    }
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A 2-step 64x64 text-to-image run of sd15-tiny in `dir` with `extra` arguments.
fn generate(dir: &Path, extra: &[&str]) -> Output {
    sonic()
        .current_dir(dir)
        .args([
            "generate", "--steps", "2", "--width", "64", "--height", "64",
        ])
        .arg("--model")
        .arg(fixtures().join("sd15-tiny"))
        .args(extra)
        .output()
        .unwrap()
}

/// The `iTXt` chunks of a PNG file.
/// The value printed on a `NAME: VALUE` line of stderr.
fn printed(o: &Output, name: &str) -> Option<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

#[test]
fn a_prompt_in_any_script_is_saved_in_png_itxt() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = "東京の夜, «neon» — ночь";
    let o = generate(
        dir.path(),
        &["--prompt", prompt, "--seed", "3", "--out", "night.png"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("night.png");
    assert_eq!(meta(&out, "sonic:prompt").as_deref(), Some(prompt));
    assert_eq!(meta(&out, "sonic:seed").as_deref(), Some("3"));
}

#[test]
fn the_extension_chooses_the_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("fox.jpg", image::ImageFormat::Jpeg),
        ("fox.webp", image::ImageFormat::WebP),
        ("fox.png", image::ImageFormat::Png),
    ] {
        let o = generate(
            dir.path(),
            &["--prompt", "狐", "--seed", "1", "--out", name],
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), format, "{name}");
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
        // The parameters (UTF-8 prompt included) travel with the picture.
        let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(has("sonic:seed") && has("狐"), "{name}: no metadata");
    }
    let o = generate(dir.path(), &["--prompt", "x", "--out", "fox.gif"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(".jpg"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("fox.gif").exists());
}

#[test]
fn seeds_are_random_printed_and_stored_and_default_names_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let first = generate(dir.path(), &["--prompt", "a red fox"]);
    assert!(first.status.success(), "{}", text(&first));
    let second = generate(dir.path(), &["--prompt", "a red fox"]);
    assert!(second.status.success(), "{}", text(&second));
    let (a, b) = (
        dir.path().join("sonic-0001.png"),
        dir.path().join("sonic-0002.png"),
    );
    assert!(a.is_file() && b.is_file(), "{}", text(&second));
    let (seed_a, seed_b) = (
        printed(&first, "seed").unwrap(),
        printed(&second, "seed").unwrap(),
    );
    assert_ne!(seed_a, seed_b, "two runs without --seed got the same seed");
    assert_eq!(meta(&a, "sonic:seed"), Some(seed_a.clone()));
    assert_eq!(meta(&b, "sonic:seed"), Some(seed_b));
    // The stored seed makes the picture again.
    let again = generate(
        dir.path(),
        &[
            "--prompt",
            "a red fox",
            "--seed",
            &seed_a,
            "--out",
            "again.png",
        ],
    );
    assert!(again.status.success(), "{}", text(&again));
    let pixels = |p: &Path| image::open(p).unwrap().to_rgb8().into_raw();
    assert_eq!(pixels(&a), pixels(&dir.path().join("again.png")));
    assert_ne!(pixels(&a), pixels(&b));
}

/// A 2-step SDEdit of a small picture with the sonic-tiny models, run in `dir`.
fn edit(dir: &Path, extra: &[&str]) -> Output {
    let photo = dir.join("photo.png");
    if !photo.exists() {
        image::RgbImage::from_fn(40, 32, |x, y| {
            image::Rgb([(x * 5) as u8, (y * 7) as u8, 90])
        })
        .save(&photo)
        .unwrap();
    }
    sonic()
        .current_dir(dir)
        .args([
            "edit",
            "--mode",
            "sdedit",
            "--steps",
            "2",
            "--prompt",
            "a stormy sea",
        ])
        .arg("--image")
        .arg(&photo)
        .arg("--audio")
        .arg(common::thunder())
        .args(common::tiny_models())
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn edit_seeds_are_random_printed_and_stored_and_default_names_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let first = edit(dir.path(), &[]);
    assert!(first.status.success(), "{}", text(&first));
    let second = edit(dir.path(), &[]);
    assert!(second.status.success(), "{}", text(&second));
    let (a, b) = (
        dir.path().join("edited-0001.png"),
        dir.path().join("edited-0002.png"),
    );
    assert!(a.is_file() && b.is_file(), "{}", text(&second));
    let (seed_a, seed_b) = (
        printed(&first, "seed").unwrap(),
        printed(&second, "seed").unwrap(),
    );
    assert_ne!(seed_a, seed_b, "two edits without --seed got the same seed");
    assert_eq!(meta(&a, "sonic:seed"), Some(seed_a.clone()));
    assert_eq!(meta(&b, "sonic:seed"), Some(seed_b));
    // The stored seed makes the edit again; another seed another one (SDEdit's noise).
    let again = edit(dir.path(), &["--seed", &seed_a, "--out", "again.png"]);
    assert!(again.status.success(), "{}", text(&again));
    let pixels = |p: &Path| image::open(p).unwrap().to_rgb8().into_raw();
    assert_eq!(pixels(&a), pixels(&dir.path().join("again.png")));
    assert_ne!(pixels(&a), pixels(&b));
}

#[test]
fn the_device_defaults_to_a_working_one_and_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let o = generate(
        dir.path(),
        &["--prompt", "x", "--seed", "1", "--out", "x.png"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // This test build has flex only.
    assert_eq!(
        printed(&o, "device").as_deref(),
        Some("flex"),
        "{}",
        text(&o)
    );
    // One global --device, before or after the subcommand, and SONIC_DEVICE.
    let o = sonic()
        .args(["--device", "tpu", "schedulers"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("flex"),
        "{}",
        text(&o)
    );
    let o = generate(
        dir.path(),
        &[
            "--prompt", "x", "--seed", "1", "--out", "y.png", "--device", "flex",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = sonic()
        .env("SONIC_DEVICE", "nonsense")
        .args(["parity", "--only", "vae"])
        .arg(fixtures().join("sd15-tiny"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nonsense"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_preset_without_audio_warns() {
    let home = tempfile::tempdir().unwrap();
    let o = sonic()
        .env("HF_HOME", home.path())
        .args([
            "generate",
            "--preset",
            "landscape",
            "--offline",
            "--prompt",
            "a lake",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("warning: --preset landscape without --audio"),
        "{}",
        text(&o)
    );
}

/// `sonic download` against an endpoint that cannot be reached.
fn download_from(endpoint: &str) -> Output {
    let home = tempfile::tempdir().unwrap();
    sonic()
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", endpoint)
        .args(["download", "--preset", "landscape"])
        .output()
        .unwrap()
}

#[test]
fn network_errors_say_what_to_try() {
    // A port nothing listens on: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for endpoint in [
        format!("http://127.0.0.1:{port}"),
        // `.invalid` never resolves (RFC 2606).
        "http://sonic-hub.invalid".to_string(),
    ] {
        let o = download_from(&endpoint);
        assert!(!o.status.success(), "{endpoint}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        for hint in [
            "network",
            "HF_ENDPOINT",
            "--offline",
            "sonic download",
            "HF_HOME",
        ] {
            assert!(
                stderr.contains(hint),
                "{endpoint}: no `{hint}` in:\n{stderr}"
            );
        }
    }
}

#[test]
fn a_manifest_round_trips_captions_with_newlines_quotes_commas_and_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["a.wav", "a.png", "b.wav", "b.jpg"] {
        std::fs::write(dir.path().join(f), b"x").unwrap();
    }
    std::fs::write(
        dir.path().join("labels.csv"),
        "\u{feff}path,label,caption\r\n\
         a.wav,rain,\"a lake, \"\"calm\"\"\nat dusk\"\r\n\
         b.wav,\"birds, morning\",plain\r\n",
    )
    .unwrap();
    let manifest = dir.path().join("manifest.csv");
    let o = sonic()
        .args(["train", "import-labels"])
        .arg(dir.path())
        .arg("--out")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let back = sonic_train::dataset::Dataset::open(&manifest).unwrap();
    let got: Vec<(String, Option<String>)> = back
        .records
        .iter()
        .map(|r| (r.caption.clone(), r.label.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "a lake, \"calm\"\nat dusk".to_string(),
                Some("rain".to_string())
            ),
            ("plain".to_string(), Some("birds, morning".to_string())),
        ]
    );
}

#[test]
fn help_lists_values_and_examples_and_completions_cover_them() {
    let o = sonic().args(["generate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for s in [
        "dpm++2m-karras",
        "greatest-hits",
        "flex",
        "Examples:",
        "SONIC_DEVICE",
    ] {
        assert!(help.contains(s), "no `{s}` in generate --help:\n{help}");
    }
    let o = sonic().args(["edit", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("--preset"));
    for shell in ["bash", "zsh", "fish"] {
        let o = sonic().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(
            script.contains("generate") && script.contains("dpm++2m"),
            "{shell}: {script}"
        );
    }
    let o = sonic().arg("schedulers").output().unwrap();
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(
        list.lines().count() == 9 && list.contains("euler-karras") && list.contains("lcm"),
        "{list}"
    );
    let o = sonic().arg("presets").output().unwrap();
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(
        list.contains("landscape") && list.contains("greatest-hits"),
        "{list}"
    );
    let o = sonic()
        .args(["generate", "--scheduler", "lms"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("euler"),
        "{}",
        text(&o)
    );
}

#[test]
fn rust_log_is_honoured_and_sonic_log_wins() {
    let dir = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = sonic();
        cmd.current_dir(dir.path())
            .args([
                "generate", "--steps", "1", "--width", "64", "--height", "64",
            ])
            .args(["--seed", "1", "--out", "log.png", "--model"])
            .arg(fixtures().join("sd15-tiny"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stderr).contains("loading Stable Diffusion")
    };
    assert!(!run(&[]));
    assert!(run(&[("RUST_LOG", "info")]));
    assert!(!run(&[("RUST_LOG", "info"), ("SONIC_LOG", "error")]));
}
