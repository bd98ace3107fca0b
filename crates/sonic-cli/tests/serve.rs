//! `sonic serve` and `sonic live --stdin` as processes, on the tiny fixtures: the server prints
//! its address once it accepts connections and answers the API; a non-loopback address gets a
//! warning; live mode turns raw PCM on standard input into numbered pictures.

mod common;

use common::{start_server, tiny_models};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn serve_prints_its_address_and_answers() {
    let (mut child, url) = start_server(&[]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut r = ureq::get(&format!("{url}/api/openapi.json"))
        .call()
        .unwrap();
    let spec: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(spec["openapi"], "3.0.3");
    let mut r = ureq::get(&url).call().unwrap();
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("sonic-diffusion")
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // Any other address: a warning on stderr.
    let (mut child, url) = start_server(&["--host", "0.0.0.0"]);
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("no authentication"),
        "{err}"
    );

    // Models that do not load: an error naming the file, no address.
    let out = Command::new(env!("CARGO_BIN_EXE_sonic"))
        .args(["serve", "--port", "0", "--model", "/nonexistent/model"])
        .args(["--clap", "a", "--projector", "b", "--adapters", "c"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[test]
fn live_stdin_writes_numbered_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let wav = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/assets/thunder.wav");
    let audio = sonic_audio::decode_file(&wav).unwrap();
    let pcm: Vec<u8> = audio
        .to_mono()
        .iter()
        .map(|v| (v * 32767.0) as i16)
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sonic"))
        .args(["live", "--stdin", "--rate"])
        .arg(audio.sample_rate.to_string())
        .args([
            "--steps",
            "2",
            "--width",
            "64",
            "--height",
            "64",
            "--min-new",
            "0.5",
        ])
        .arg("--out-dir")
        .arg(dir.path())
        .args(tiny_models())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&pcm).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let first = dir.path().join("live-00001.png");
    assert!(printed.contains("live-00001.png"), "{printed}");
    let img = image::open(&first).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));

    // Nothing on standard input: an error, no picture.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sonic"))
        .args(["live", "--stdin", "--out-dir"])
        .arg(empty.path())
        .args(tiny_models())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without any sound"));
    let out = Command::new(env!("CARGO_BIN_EXE_sonic"))
        .args(["live", "--stdin", "--rate", "5", "--out-dir"])
        .arg(empty.path())
        .args(tiny_models())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate 5"));
}
