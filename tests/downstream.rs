//! A downstream crate in a temporary folder, depending on `sonic-diffusion` by path and on
//! nothing else, whose `main.rs` is `examples/downstream.rs` (generate, mix, edit, train):
//! `cargo check` must accept it, so the re-exports are enough. It shares this build's target
//! folder, lock file and profiles, so only the downstream crate itself is checked anew when the
//! workspace was checked before (as `.ci/run` does with clippy).
//!
//! Ignored by default (it runs cargo): `cargo test -p sonic-diffusion --test downstream --
//! --ignored`, as `.ci/run` does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target folder this test binary was built in (`<target>/<profile>/deps/<bin>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// The `[profile.*]` sections of the workspace manifest (same profiles, same artifacts).
fn profiles() -> String {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest
        .find("\n[profile.")
        .expect("profiles in Cargo.toml");
    manifest[start..].to_string()
}

#[test]
#[ignore = "runs cargo check on a temporary crate; .ci/run runs it with --ignored"]
fn a_downstream_crate_needs_only_the_root_crate() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(root().join("examples/downstream.rs")).unwrap();
    for line in source.lines().filter(|l| l.starts_with("use ")) {
        assert!(
            line.starts_with("use sonic_diffusion::") || line.starts_with("use std::"),
            "the example reaches past the re-exports: {line}"
        );
    }
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), source).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"downstream\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[dependencies]\nsonic-diffusion = {{ path = {:?} }}\n\n\
             [workspace]\n{}",
            root().display().to_string(),
            profiles()
        ),
    )
    .unwrap();
    std::fs::copy(root().join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let out = Command::new(env!("CARGO"))
        .current_dir(dir.path())
        .args(["check", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo check of the downstream crate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
