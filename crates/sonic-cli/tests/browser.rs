//! `sonic serve` in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven over WebDriver: the page uploads a WAV and shows the picture; live mode turns
//! Chromium's fake microphone (a WAV file) into pictures.
//!
//! Ignored in the default suite (it needs the browser, which `.ci/run` installs, and starts
//! one per test); run with `cargo test -p sonic-cli --test browser -- --ignored`.
//! `SONIC_SCREENSHOT=FILE` also saves a screenshot of the page with its picture.

mod common;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve() -> (Killed, String) {
    let (child, url) = common::start_server(&[]);
    (Killed(child), url)
}

/// A WebDriver session on a chromedriver of its own.
struct Browser {
    base: String,
    session: String,
    agent: ureq::Agent,
    _driver: Killed,
}

impl Browser {
    fn start(fake_audio: &Path) -> Self {
        let port = free_port();
        let driver = Killed(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian chromium-driver) is needed for this test"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let start = Instant::now();
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1200,1000",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    format!("--use-file-for-fake-audio-capture={}", fake_audio.display()),
                    "--autoplay-policy=no-user-gesture-required",
                ]
            }
        }}});
        let mut b = Self {
            base,
            session: String::new(),
            agent,
            _driver: driver,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap().to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut r = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string())
                .unwrap(),
            "DELETE" => self.agent.delete(&url).call().unwrap(),
            _ => self.agent.get(&url).call().unwrap(),
        };
        let text = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["value"]["error"].is_null(), "{method} {path}: {v}");
        v["value"].clone()
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn wait_for(&self, js: &str, what: &str, limit: Duration) {
        let start = Instant::now();
        while self.script(js) != json!(true) {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", None);
        std::fs::write(path, base64_decode(v.as_str().unwrap())).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | val(c) << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn thunder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/assets/thunder.wav")
        .canonicalize()
        .unwrap()
}

#[test]
#[ignore = "needs Debian's chromium and chromium-driver (.ci/run installs them and runs this)"]
fn the_page_uploads_a_sound_and_shows_the_picture() {
    let (_server, url) = serve();
    let b = Browser::start(&thunder());
    b.call("POST", "/url", Some(json!({"url": url})));
    let input = b.element("#audio");
    b.call(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": thunder().display().to_string()})),
    );
    b.script(
        "document.getElementById('steps').value = '3';
         document.getElementById('seed').value = '7';
         document.getElementById('prompt').value = 'a storm at sea'; return true;",
    );
    let go = b.element("#generate");
    b.call("POST", &format!("/element/{go}/click"), None);
    b.wait_for(
        "const i = document.querySelector('#gallery img'); return !!i && i.complete && i.naturalWidth > 0;",
        "the picture in the gallery",
        Duration::from_secs(120),
    );
    let meta = b.script("return document.querySelector('#gallery .meta').textContent;");
    assert!(meta.as_str().unwrap().contains("seed 7"), "{meta}");
    assert_eq!(
        b.script("return document.getElementById('progress').value;"),
        json!(1)
    );
    if let Ok(path) = std::env::var("SONIC_SCREENSHOT") {
        b.screenshot(Path::new(&path));
    }
}

#[test]
#[ignore = "needs Debian's chromium and chromium-driver (.ci/run installs them and runs this)"]
fn live_mode_turns_the_fake_microphone_into_pictures() {
    let (_server, url) = serve();
    let b = Browser::start(&thunder());
    b.call("POST", "/url", Some(json!({"url": url})));
    b.script("document.getElementById('live-steps').value = '2'; return true;");
    for css in ["#tab-live", "#live-start"] {
        let e = b.element(css);
        b.call("POST", &format!("/element/{e}/click"), None);
    }
    b.wait_for(
        "return Number(document.getElementById('live-count').textContent) >= 2
            && document.getElementById('live-image').naturalWidth > 0;",
        "two live pictures",
        Duration::from_secs(120),
    );
    let stop = b.element("#live-stop");
    b.call("POST", &format!("/element/{stop}/click"), None);
}
