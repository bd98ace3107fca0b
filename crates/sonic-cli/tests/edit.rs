//! End-to-end tests of `sonic edit` on the tiny fixtures (sd15-tiny + sonic-tiny): both modes
//! write a PNG of the requested size with the run's metadata; bad input fails with a message
//! naming the problem and leaves no output file.

mod common;

use common::{thunder, tiny_models};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A smooth 70x50 picture.
fn write_png(dir: &Path) -> PathBuf {
    let img = image::RgbImage::from_fn(70, 50, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
    });
    let p = dir.join("in.png");
    img.save(&p).unwrap();
    p
}

fn edit(image: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
        .arg("edit")
        .arg("--image")
        .arg(image)
        .arg("--audio")
        .arg(thunder())
        .args(["--prompt", "a stormy sea", "--steps", "4"])
        .args(tiny_models())
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn edit_writes_a_png_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_png(dir.path());
    for (name, extra, size) in [
        ("pnp", vec!["--size", "64x64"], (64, 64)),
        // Default size rule: centre-cropped to multiples of 8.
        ("pnp-own-size", vec![], (64, 48)),
        (
            "sdedit",
            vec!["--mode", "sdedit", "--strength", "0.5", "--size", "32x24"],
            (32, 24),
        ),
    ] {
        let out = dir.path().join(format!("{name}.png"));
        let o = edit(&input, &out, &extra);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let img = image::open(&out).unwrap();
        assert_eq!((img.width(), img.height()), size, "{name}");
        let bytes = std::fs::read(&out).unwrap();
        let has = |k: &str| bytes.windows(k.len()).any(|w| w == k.as_bytes());
        assert!(
            has("sonic:mode") && has("sonic:audio"),
            "{name}: no metadata"
        );
    }
}

#[test]
fn bad_input_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_png(dir.path());
    let corrupt = dir.path().join("corrupt.png");
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(60);
    std::fs::write(&corrupt, &bytes).unwrap();
    let out = dir.path().join("out.png");
    let o = edit(&corrupt, &out, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("corrupt.png"), "{}", stderr(&o));
    assert!(!out.exists());
    // An injection fraction outside [0, 1] is refused, naming the parameter.
    let o = edit(&good, &out, &["--pnp-f-t", "1.5", "--size", "32x32"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pnp_f_t"), "{}", stderr(&o));
    assert!(!out.exists());
    // A size that is not a multiple of 8.
    let o = edit(&good, &out, &["--size", "30x30"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("30x30"), "{}", stderr(&o));
    assert!(!out.exists());
}
