//! The HTTP API on the tiny fixtures (sd15-tiny + sonic-tiny), in process: generate, edit,
//! mix, progress events, the picture, cancellation, bad requests, oversized uploads, a full
//! queue, 50 concurrent clients, live mode over a WebSocket.

use sonic_pipeline::sonic::SonicPipeline;
use sonic_serve::{Limits, Server, ServerConfig, start};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures")
}

fn asset(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/assets")
            .join(name),
    )
    .unwrap()
}

fn server(queue_len: usize, max_upload: usize) -> Server {
    let f = fixtures();
    let config = ServerConfig {
        port: 0,
        queue_len,
        limits: Limits {
            max_upload,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    start(&config, move || {
        let s = f.join("sonic-tiny");
        SonicPipeline::builder()
            .model(f.join("sd15-tiny"))
            .clap(s.join("clap.safetensors"))
            .projector(s.join("projector.safetensors"))
            .projector_config(s.join("config.json"))
            .adapters(s.join("adapters.safetensors"))
            .build()
    })
    .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// One part of a multipart body: name, file name, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A multipart body: (name, file name, bytes) parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "sonicboundary7d93a";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn post(s: &Server, path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, serde_json::Value) {
    let (ct, body) = multipart(parts);
    let mut r = agent()
        .post(&format!("http://{}{path}", s.addr()))
        .header("Content-Type", &ct)
        .send(&body[..])
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn get_json(s: &Server, path: &str) -> (u16, serde_json::Value) {
    let mut r = agent()
        .get(&format!("http://{}{path}", s.addr()))
        .call()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn wait(s: &Server, id: &str) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (code, job) = get_json(s, &format!("/api/jobs/{id}"));
        assert_eq!(code, 200, "{job}");
        if ["done", "failed", "cancelled"].contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job {id} never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn image(s: &Server, id: &str) -> (u16, Vec<u8>) {
    let mut r = agent()
        .get(&format!("http://{}/api/jobs/{id}/image", s.addr()))
        .call()
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
}

const SMALL: [(&str, Option<&str>, &[u8]); 4] = [
    ("steps", None, b"2"),
    ("width", None, b"64"),
    ("height", None, b"64"),
    ("seed", None, b"5"),
];

fn with<'a>(
    extra: &[(&'a str, Option<&'a str>, &'a [u8])],
) -> Vec<(&'a str, Option<&'a str>, &'a [u8])> {
    SMALL.iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn generate_edit_mix_events_and_pictures() {
    let s = server(8, 32 << 20);
    let thunder = asset("thunder.wav");
    let birds = asset("birdsong.wav");
    let (code, body) = post(
        &s,
        "/api/generate",
        &with(&[
            ("audio", Some("t.wav"), &thunder),
            ("prompt", None, b"a storm"),
        ]),
    );
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    // Progress events: the stream ends with the final state.
    let mut r = agent()
        .get(&format!("http://{}/api/jobs/{id}/events", s.addr()))
        .call()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = r.body_mut().read_to_string().unwrap();
    assert!(events.contains("event: progress"), "{events}");
    assert!(events.contains("\"status\":\"done\""), "{events}");
    let job = wait(&s, &id);
    assert_eq!(job["status"], "done");
    assert_eq!(job["progress"], 1.0);
    assert_eq!(job["params"]["seed"], 5);
    assert_eq!(job["params"]["prompt"], "a storm");
    let (code, png) = image(&s, &id);
    assert_eq!(code, 200);
    let img = image::load_from_memory(&png).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    assert!(png.windows(12).any(|w| w == b"sonic:params"));

    // The same request again: the same picture; mixing two sounds: another one.
    let (_, again) = post(
        &s,
        "/api/generate",
        &with(&[
            ("audio", Some("t.wav"), &thunder),
            ("prompt", None, b"a storm"),
        ]),
    );
    let again = again["id"].as_str().unwrap().to_string();
    assert_eq!(wait(&s, &again)["status"], "done");
    assert_eq!(image(&s, &again).1, png);
    let (code, mixed) = post(
        &s,
        "/api/generate",
        &with(&[
            ("audio", Some("t.wav"), &thunder),
            ("audio2", Some("b.wav"), &birds),
            ("mix", None, b"0.7,0.3"),
            ("prompt", None, b"a storm"),
        ]),
    );
    assert_eq!(code, 202, "{mixed}");
    let mixed = mixed["id"].as_str().unwrap().to_string();
    assert_eq!(wait(&s, &mixed)["status"], "done");
    assert_ne!(image(&s, &mixed).1, png);

    // Edits, both modes, take the photo's size (cropped to multiples of 8).
    let photo = {
        let img = image::RgbImage::from_fn(70, 50, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 4) as u8, 60])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    for mode in ["pnp", "sdedit"] {
        let (code, body) = post(
            &s,
            "/api/edit",
            &[
                ("steps", None, b"2"),
                ("audio", Some("t.wav"), &thunder),
                ("image", Some("p.png"), &photo),
                ("mode", None, mode.as_bytes()),
            ],
        );
        assert_eq!(code, 202, "{mode}: {body}");
        let id = body["id"].as_str().unwrap().to_string();
        let job = wait(&s, &id);
        assert_eq!(job["status"], "done", "{mode}: {job}");
        assert_eq!(job["kind"], "edit");
        assert_eq!(job["params"]["edit"]["mode"], mode);
        let img = image::load_from_memory(&image(&s, &id).1).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48), "{mode}");
    }
    s.stop();
}

#[test]
fn bad_requests_get_4xx_with_a_json_error() {
    let s = server(8, 1 << 20);
    let thunder = asset("thunder.wav");
    let junk = b"RIFF\x10\x00\x00\x00WAVEjunkjunk".to_vec();
    let big = vec![7u8; 2 << 20];
    let cases: Vec<(&str, Vec<Part>, u16, &str)> = vec![
        ("/api/generate", with(&[]), 400, "audio"),
        (
            "/api/generate",
            with(&[("audio", Some("x.wav"), &junk)]),
            400,
            "sound 0",
        ),
        (
            "/api/generate",
            with(&[("audio", Some("x.wav"), b"")]),
            400,
            "audio",
        ),
        (
            "/api/generate",
            vec![
                ("audio", Some("t.wav"), &thunder),
                ("steps", None, b"100000"),
            ],
            400,
            "steps",
        ),
        (
            "/api/generate",
            vec![("audio", Some("t.wav"), &thunder), ("width", None, b"65")],
            400,
            "width",
        ),
        (
            "/api/generate",
            vec![
                ("audio", Some("t.wav"), &thunder),
                ("guidance", None, b"NaN"),
            ],
            400,
            "guidance",
        ),
        (
            "/api/generate",
            vec![("audio", Some("t.wav"), &thunder), ("mix", None, b"1,1")],
            400,
            "mix",
        ),
        (
            "/api/generate",
            vec![("audio", Some("../../etc/passwd"), &junk)],
            400,
            "sound 0",
        ),
        (
            "/api/edit",
            with(&[("audio", Some("t.wav"), &thunder)]),
            400,
            "image",
        ),
        (
            "/api/edit",
            with(&[
                ("audio", Some("t.wav"), &thunder),
                ("image", Some("p.png"), b"not a png"),
            ]),
            202,
            "",
        ),
        (
            "/api/generate",
            vec![("audio", Some("big.wav"), &big)],
            413,
            "upload too large",
        ),
    ];
    for (path, parts, want, needle) in cases {
        let (code, body) = post(&s, path, &parts);
        assert_eq!(code, want, "{path} {needle}: {body}");
        if want == 202 {
            // A photo that does not decode fails the job, naming the problem.
            let job = wait(&s, body["id"].as_str().unwrap());
            assert_eq!(job["status"], "failed", "{job}");
            assert!(job["error"].as_str().unwrap().contains("image"), "{job}");
            continue;
        }
        let e = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: not JSON: {body}"));
        assert!(e.contains(needle), "{path}: {e}");
        // The server's own paths never leak into messages.
        assert!(!e.contains("sonic-serve-"), "{e}");
    }
    // Not JSON multipart at all.
    let mut r = agent()
        .post(&format!("http://{}/api/generate", s.addr()))
        .header("Content-Type", "application/json")
        .send("{}")
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e = r.body_mut().read_to_string().unwrap();
    assert!(e.contains("multipart/form-data"), "{e}");
    // Wrong methods and a live request that is not a WebSocket: JSON errors too.
    let mut r = agent()
        .put(&format!("http://{}/api/generate", s.addr()))
        .send("x")
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.body_mut().read_to_string().unwrap().contains("\"error\""));
    for (path, want) in [
        ("/api/generate", 405),
        ("/api/live", 400),
        ("/api/jobs/0123", 404),
        ("/api/jobs/0123/image", 404),
        ("/nothing/here", 404),
        ("/api/jobs/..%2F..%2Fetc/image", 404),
    ] {
        let (code, body) = get_json(&s, path);
        assert_eq!(code, want, "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // The page and the API description.
    let (code, spec) = get_json(&s, "/api/openapi.json");
    assert_eq!(code, 200);
    for p in [
        "/api/generate",
        "/api/edit",
        "/api/jobs/{id}",
        "/api/jobs/{id}/events",
        "/api/jobs/{id}/image",
        "/api/live",
    ] {
        assert!(
            spec["paths"][p].is_object(),
            "{p} missing from the OpenAPI file"
        );
    }
    let (code, page) = get_json(&s, "/");
    assert_eq!(code, 200);
    assert!(page.as_str().unwrap().contains("id=\"generate\""));
    s.stop();
}

#[test]
fn cancellation_and_a_full_queue() {
    let s = server(1, 32 << 20);
    let thunder = asset("thunder.wav");
    let long: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("audio", Some("t.wav"), &thunder),
        ("steps", None, b"150"),
        ("width", None, b"128"),
        ("height", None, b"128"),
    ];
    let (code, a) = post(&s, "/api/generate", &long);
    assert_eq!(code, 202);
    let a = a["id"].as_str().unwrap().to_string();
    // Wait until it runs, then queue one more: the queue (length 1) is then full.
    let start = Instant::now();
    while get_json(&s, &format!("/api/jobs/{a}")).1["status"] != "running" {
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    let (code, b) = post(&s, "/api/generate", &long);
    assert_eq!(code, 202, "{b}");
    let b = b["id"].as_str().unwrap().to_string();
    let (code, full) = post(&s, "/api/generate", &long);
    assert_eq!(code, 503, "{full}");
    assert!(full["error"].as_str().unwrap().contains("queue"));
    // Cancel the queued job (never starts) and the running one (stops at its next step).
    let (code, j) = agent_delete(&s, &b);
    assert_eq!((code, j["status"].as_str()), (200, Some("cancelled")));
    let (code, _) = agent_delete(&s, &a);
    assert_eq!(code, 200);
    assert_eq!(wait(&s, &a)["status"], "cancelled");
    assert_eq!(wait(&s, &b)["status"], "cancelled");
    assert_eq!(image(&s, &a).0, 409);
    // The server goes on.
    let (code, c) = post(
        &s,
        "/api/generate",
        &with(&[("audio", Some("t.wav"), &thunder)]),
    );
    assert_eq!(code, 202);
    assert_eq!(wait(&s, c["id"].as_str().unwrap())["status"], "done");
    s.stop();
}

fn agent_delete(s: &Server, id: &str) -> (u16, serde_json::Value) {
    let mut r = agent()
        .delete(&format!("http://{}/api/jobs/{id}", s.addr()))
        .call()
        .unwrap();
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

#[test]
fn fifty_concurrent_clients_are_served_or_refused() {
    let s = std::sync::Arc::new(server(4, 32 << 20));
    let thunder = std::sync::Arc::new(asset("thunder.wav"));
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            let thunder = thunder.clone();
            std::thread::spawn(move || {
                let seed = i.to_string();
                let (code, body) = post(
                    &s,
                    "/api/generate",
                    &[
                        ("audio", Some("t.wav"), &thunder),
                        ("steps", None, b"2"),
                        ("width", None, b"64"),
                        ("height", None, b"64"),
                        ("seed", None, seed.as_bytes()),
                    ],
                );
                match code {
                    202 => Some(wait(&s, body["id"].as_str().unwrap())["status"].clone()),
                    503 => None,
                    other => panic!("client {i}: {other} {body}"),
                }
            })
        })
        .collect();
    // The server stays responsive meanwhile.
    let t = Instant::now();
    let (code, _) = get_json(&s, "/api/openapi.json");
    assert_eq!(code, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let results: Vec<Option<serde_json::Value>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let served = results.iter().flatten().count();
    assert!(served >= 5, "only {served} of 50 served");
    assert!(results.iter().flatten().all(|s| s == "done"), "{results:?}");
    if let Ok(s) = std::sync::Arc::try_unwrap(s) {
        s.stop();
    }
}

#[test]
fn live_mode_sends_a_picture_per_window() {
    let s = server(4, 32 << 20);
    let decoded =
        sonic_audio::decode_bytes(&asset("thunder.wav"), Path::new("thunder.wav"), Some("wav"))
            .unwrap();
    let rate = decoded.sample_rate;
    let mono = decoded.to_mono();
    let url = format!(
        "ws://{}/api/live?rate={rate}&steps=2&width=64&height=64&seed=3&min_new=0.5",
        s.addr()
    );
    let (mut ws, _) = tungstenite::connect(url.as_str()).unwrap();
    // One second of sound, in chunks as a page sends them.
    let second: Vec<u8> = mono[..rate as usize]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for chunk in second.chunks(4096 * 4) {
        ws.send(tungstenite::Message::Binary(chunk.to_vec().into()))
            .unwrap();
    }
    let mut pictures = Vec::new();
    while pictures.is_empty() {
        match ws.read().unwrap() {
            tungstenite::Message::Binary(b) => pictures.push(b.to_vec()),
            tungstenite::Message::Text(t) => panic!("live error: {t}"),
            _ => {}
        }
    }
    // More sound: another picture.
    for chunk in second.chunks(4096 * 4) {
        ws.send(tungstenite::Message::Binary(chunk.to_vec().into()))
            .unwrap();
    }
    while pictures.len() < 2 {
        if let tungstenite::Message::Binary(b) = ws.read().unwrap() {
            pictures.push(b.to_vec());
        }
    }
    for p in &pictures {
        let img = image::load_from_memory(p).unwrap();
        assert_eq!((img.width(), img.height()), (64, 64));
    }
    // Bad parameters are refused before the upgrade.
    let bad = format!("ws://{}/api/live?rate=12&steps=2", s.addr());
    assert!(tungstenite::connect(bad.as_str()).is_err());
    ws.close(None).ok();
    s.stop();
}
