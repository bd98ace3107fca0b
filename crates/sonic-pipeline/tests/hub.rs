//! Hub downloads against a local stand-in for the Hugging Face hub (127.0.0.1 only): the tiny
//! fixtures served under the real repository names, LFS files behind a redirect to a "CDN"
//! path with `x-linked-size` / `x-linked-etag` / `x-repo-commit`, Range support, and knobs
//! to cut a transfer, corrupt a body, lie about a size, ignore Range and require a token.

use sha2::{Digest, Sha256};
use sonic_pipeline::hub::{
    self, Checkpoint, DownloadProgress, HubError, HubOptions, HubRepo, Preset, ProgressState,
};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const SD: &str = "CompVis/stable-diffusion-v1-4";
const CLAP: &str = "microsoft/msclap";
const SPACE: &str = "spaces/burakcanbiner/SonicDiffusion";
/// No test server lives longer than this, or serves more connections than [`MAX_CONNECTIONS`].
const SERVER_LIFETIME: Duration = Duration::from_secs(120);
const MAX_CONNECTIONS: usize = 500;

// ---------------------------------------------------------------------------------------------
// Files served.

#[derive(Clone)]
struct Entry {
    /// The URL prefix of the repository (`CompVis/...`, `spaces/...`).
    repo: String,
    file: String,
    /// The content the hub advertises (sha256, size).
    data: Vec<u8>,
    /// What is actually sent, when it differs (a corrupted body).
    body: Option<Vec<u8>>,
    /// An advertised size that differs from the content's.
    advertised_size: Option<u64>,
}

impl Entry {
    fn new(repo: &str, file: &str, data: Vec<u8>) -> Self {
        Self {
            repo: repo.into(),
            file: file.into(),
            data,
            body: None,
            advertised_size: None,
        }
    }
    fn lfs(&self) -> bool {
        [".safetensors", ".pth", ".pt"]
            .iter()
            .any(|s| self.file.ends_with(s))
    }
    fn sha256(&self) -> String {
        sha256(&self.data)
    }
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fixture(name: &str) -> Option<PathBuf> {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .map(|r| r.join(name))
        .filter(|p| p.is_dir())
}

/// Deterministic filler bytes, for when the fixtures are absent.
fn synthetic(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn read_or(dir: Option<&Path>, rel: &str, seed: u64, len: usize) -> Vec<u8> {
    dir.and_then(|d| std::fs::read(d.join(rel)).ok())
        .unwrap_or_else(|| synthetic(seed, len))
}

/// Every file of every preset (SD with both weight variants), from the tiny fixtures.
fn all_entries() -> Vec<Entry> {
    let sd = fixture("sd15-tiny");
    let sonic = fixture("sonic-tiny");
    let mut v = Vec::new();
    for (i, f) in hub::sd_files(false).iter().enumerate() {
        let data = if f.ends_with("special_tokens_map.json") {
            br#"{"bos_token":"<|startoftext|>","eos_token":"<|endoftext|>","pad_token":"<|endoftext|>","unk_token":"<|endoftext|>"}"#.to_vec()
        } else {
            read_or(sd.as_deref(), f, i as u64, 3000 + 70_000 * (i % 3))
        };
        if let Some(half) = f.strip_suffix(".safetensors") {
            v.push(Entry::new(
                SD,
                &format!("{half}.fp16.safetensors"),
                data.clone(),
            ));
        }
        v.push(Entry::new(SD, f, data));
    }
    v.push(Entry::new(
        CLAP,
        hub::CLAP_FILE,
        read_or(sonic.as_deref(), "clap.safetensors", 50, 400_000),
    ));
    for (i, c) in Checkpoint::ALL.iter().enumerate() {
        let seed = 60 + 2 * i as u64;
        // Distinct blobs per checkpoint (the fixture files are shared).
        let mut adapters = read_or(sonic.as_deref(), "adapters.safetensors", seed, 257_364);
        adapters.extend_from_slice(c.name().as_bytes());
        v.push(Entry::new(SPACE, c.adapters_file(), adapters));
        let mut projector = read_or(sonic.as_deref(), "projector.safetensors", seed + 1, 300_000);
        projector.extend_from_slice(c.name().as_bytes());
        v.push(Entry::new(SPACE, c.projector_file(), projector));
    }
    v
}

fn entry<'a>(entries: &'a [Entry], repo: &str, file: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.repo == repo && e.file == file)
        .expect("entry")
}

// ---------------------------------------------------------------------------------------------
// The server.

#[derive(Debug, Clone)]
struct Logged {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    /// (file, n): the next GET of that file's body sends n bytes, then closes the connection.
    cut_once: Option<(String, usize)>,
    /// Answer Range requests with the whole file (200).
    ignore_range: bool,
    /// Resolve requests need `Authorization: Bearer {token}`.
    token: Option<String>,
    log: Vec<Logged>,
}

struct Hub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    fn start(entries: Vec<Entry>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            entries,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + SERVER_LIFETIME;
            let mut served = 0;
            while !sp.load(Ordering::SeqCst)
                && Instant::now() < deadline
                && served < MAX_CONNECTIONS
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let _ = handle(stream, &st, addr);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
        });
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<State>, addr: SocketAddr) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let head = method == "HEAD";
    let mut st = state.lock().unwrap();
    st.log.push(Logged {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
    });

    // The "CDN": /cdn/{index}, with Range.
    if let Some(idx) = path.strip_prefix("/cdn/") {
        let Some(e) = idx
            .parse::<usize>()
            .ok()
            .and_then(|i| st.entries.get(i))
            .cloned()
        else {
            return respond(&mut stream, "404 Not Found", &[], b"", head, None);
        };
        let cut = match &st.cut_once {
            Some((f, n)) if *f == e.file && !head => {
                let n = *n;
                st.cut_once = None;
                Some(n)
            }
            _ => None,
        };
        let ignore_range = st.ignore_range;
        drop(st);
        let body = e.body.clone().unwrap_or_else(|| e.data.clone());
        let range = headers.get("range").filter(|_| !ignore_range);
        return serve_body(&mut stream, &body, range, head, cut, &[]);
    }

    // The hub: /{repo}/resolve/{revision}/{file}.
    let found = st.entries.iter().enumerate().find_map(|(i, e)| {
        let rest = path.strip_prefix(&format!("/{}/resolve/", e.repo))?;
        let (rev, file) = rest.split_once('/')?;
        (file == e.file && (rev == "main" || rev == COMMIT)).then(|| (i, e.clone()))
    });
    let Some((idx, e)) = found else {
        let h = [("X-Error-Code", "EntryNotFound".to_string())];
        return respond(&mut stream, "404 Not Found", &h, b"", head, None);
    };
    if let Some(token) = &st.token
        && headers.get("authorization") != Some(&format!("Bearer {token}"))
    {
        let h = [(
            "X-Error-Message",
            "Access to this repo is restricted.".to_string(),
        )];
        return respond(&mut stream, "401 Unauthorized", &h, b"", head, None);
    }
    drop(st);
    if e.lfs() {
        let size = e.advertised_size.unwrap_or(e.data.len() as u64);
        let h = [
            ("Location", format!("http://{addr}/cdn/{idx}")),
            ("X-Linked-Size", size.to_string()),
            ("X-Linked-Etag", format!("\"{}\"", e.sha256())),
            ("ETag", format!("\"{}\"", &e.sha256()[..40])),
            ("X-Repo-Commit", COMMIT.to_string()),
        ];
        respond(&mut stream, "302 Found", &h, b"", head, None)
    } else {
        let h = [
            ("ETag", format!("\"{}\"", &e.sha256()[..40])),
            ("X-Repo-Commit", COMMIT.to_string()),
        ];
        serve_body(&mut stream, &e.data, headers.get("range"), head, None, &h)
    }
}

fn serve_body(
    stream: &mut TcpStream,
    body: &[u8],
    range: Option<&String>,
    head: bool,
    cut: Option<usize>,
    extra: &[(&str, String)],
) -> std::io::Result<()> {
    let len = body.len();
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'));
    match start.and_then(|s| s.parse::<usize>().ok()) {
        Some(s) if s >= len => {
            let h = [("Content-Range", format!("bytes */{len}"))];
            respond(stream, "416 Range Not Satisfiable", &h, b"", head, None)
        }
        Some(s) => {
            let mut h = extra.to_vec();
            h.push(("Content-Range", format!("bytes {s}-{}/{len}", len - 1)));
            respond(stream, "206 Partial Content", &h, &body[s..], head, cut)
        }
        None => respond(stream, "200 OK", extra, body, head, cut),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
    head: bool,
    cut: Option<usize>,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head {
        let n = cut.unwrap_or(body.len()).min(body.len());
        stream.write_all(&body[..n])?;
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn options(cache: &Path, hub: &Hub) -> HubOptions {
    let mut o = HubOptions::new(cache).with_endpoint(hub.endpoint());
    o.max_retries = 0;
    o.retry_delay = Duration::from_millis(10);
    o.connect_timeout = Duration::from_secs(10);
    o.read_timeout = Duration::from_secs(10);
    o
}

/// An endpoint where nothing listens (a port bound, then released).
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_no_partials(cache: &Path) {
    let partial: Vec<_> = files_under(cache)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".incomplete") || name.contains(".tmp")
        })
        .collect();
    assert!(partial.is_empty(), "left behind: {partial:?}");
}

fn assert_model_files_match(
    files: &hub::ModelFiles,
    entries: &[Entry],
    preset: Preset,
    fp16: bool,
) {
    for f in hub::sd_files(fp16) {
        let got = std::fs::read(files.sd_dir.join(&f)).unwrap();
        assert!(got == entry(entries, SD, &f).data, "{f} differs");
    }
    assert!(std::fs::read(&files.clap).unwrap() == entry(entries, CLAP, hub::CLAP_FILE).data);
    assert_eq!(files.checkpoints.len(), preset.checkpoints().len());
    for c in preset.checkpoints() {
        let cf = files.checkpoint(*c).unwrap();
        assert!(
            std::fs::read(&cf.adapters).unwrap() == entry(entries, SPACE, c.adapters_file()).data
        );
        assert!(
            std::fs::read(&cf.projector).unwrap() == entry(entries, SPACE, c.projector_file()).data
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// Everything of `all` arrives, equals the source, sits in the HF cache layout, loads as an SD
/// folder; afterwards the cache alone serves it, offline or not, with no server at all.
#[test]
fn download_all_then_cache_only_without_server() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let mut events: Vec<DownloadProgress> = Vec::new();
    let files = hub::resolve(Preset::All, &opts, &mut |p| events.push(p)).unwrap();
    assert_model_files_match(&files, &entries, Preset::All, false);

    // The HF layout: refs/main -> commit, blobs named by sha256, snapshot links.
    let sd_root = tmp.path().join("models--CompVis--stable-diffusion-v1-4");
    assert_eq!(
        std::fs::read_to_string(sd_root.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(files.sd_dir, sd_root.join("snapshots").join(COMMIT));
    let unet = entry(&entries, SD, "unet/diffusion_pytorch_model.safetensors");
    assert!(sd_root.join("blobs").join(unet.sha256()).is_file());
    #[cfg(unix)]
    assert!(
        files
            .sd_dir
            .join("unet/diffusion_pytorch_model.safetensors")
            .is_symlink()
    );
    assert!(
        files
            .clap
            .starts_with(tmp.path().join("models--microsoft--msclap/snapshots"))
    );
    assert!(
        files.checkpoints[0].adapters.starts_with(
            tmp.path()
                .join("spaces--burakcanbiner--SonicDiffusion/snapshots")
                .join(COMMIT)
        )
    );
    assert_no_partials(tmp.path());

    // Progress: every file ends Done with its full size; bytes only grow per file.
    let n_files = 12 + 1 + 4;
    let done: Vec<_> = events
        .iter()
        .filter(|e| e.state == ProgressState::Done)
        .collect();
    assert_eq!(done.len(), n_files);
    for d in &done {
        assert_eq!(Some(d.bytes_done), d.total, "{}", d.file);
    }
    let unet_events: Vec<_> = events
        .iter()
        .filter(|e| {
            e.file == "unet/diffusion_pytorch_model.safetensors"
                && e.state == ProgressState::Downloading
        })
        .collect();
    assert!(!unet_events.is_empty());
    assert!(
        unet_events
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done)
    );
    assert_eq!(unet_events[0].total, Some(unet.data.len() as u64));

    // One commit for the whole repo: after the first file, requests go to the commit.
    let log = hub.log();
    let sd_heads: Vec<_> = log
        .iter()
        .filter(|l| l.method == "HEAD" && l.path.starts_with(&format!("/{SD}/")))
        .collect();
    assert_eq!(sd_heads.len(), 12);
    assert!(sd_heads[0].path.contains("/resolve/main/"));
    assert!(
        sd_heads[1..]
            .iter()
            .all(|l| l.path.contains(&format!("/resolve/{COMMIT}/")))
    );
    assert!(
        log.iter().all(|l| l.auth.is_none()),
        "no token configured, none sent"
    );
    assert!(
        log.iter().all(|l| l.range.is_none()),
        "fresh downloads need no Range"
    );

    // The downloaded SD folder loads (tokenizer from vocab.json + merges.txt).
    if fixture("sd15-tiny").is_some() {
        let device = sonic_core::device::default_device().unwrap();
        sonic_pipeline::StableDiffusion::from_dir(&files.sd_dir, &device).unwrap();
    }

    // No server any more: online mode with a complete cache makes no request, offline too.
    drop(hub);
    for offline in [false, true] {
        let opts = HubOptions::new(tmp.path())
            .with_endpoint(dead_endpoint())
            .with_offline(offline);
        let mut cached = Vec::new();
        let again = hub::resolve(Preset::All, &opts, &mut |p| cached.push(p)).unwrap();
        assert_eq!(again, files);
        assert_eq!(cached.len(), n_files);
        assert!(cached.iter().all(|e| e.state == ProgressState::Cached));
        let one = hub::resolve(Preset::GreatestHits, &opts, &mut |_| {}).unwrap();
        assert_eq!(one.checkpoints.len(), 1);
        assert_eq!(
            one.checkpoint(Checkpoint::GreatestHits),
            files.checkpoint(Checkpoint::GreatestHits)
        );
    }
}

/// A transfer cut mid-file fails with `Interrupted`, keeps its partial file, and the next call
/// resumes it with a Range request to complete the file with the right content.
#[test]
fn cut_transfer_resumes_on_next_call_with_range() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    let file = Checkpoint::Landscape.adapters_file();
    let cut_at = 100_000;
    hub.set(|s| s.cut_once = Some((file.to_string(), cut_at)));
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let space = HubRepo::sonic_space();
    let want = [Checkpoint::Landscape.projector_file(), file];

    let err = hub::fetch(&space, &want, &opts, &mut |_| {}).unwrap_err();
    match &err {
        HubError::Interrupted {
            file: f,
            bytes_done,
            total,
            ..
        } => {
            assert_eq!(f, file);
            assert_eq!(*bytes_done, cut_at as u64);
            assert_eq!(*total, Some(entry(&entries, SPACE, file).data.len() as u64));
        }
        other => panic!("expected Interrupted, got {other:?}"),
    }
    assert!(err.to_string().contains("run again to resume"), "{err}");
    let sha = entry(&entries, SPACE, file).sha256();
    let blobs = tmp
        .path()
        .join("spaces--burakcanbiner--SonicDiffusion/blobs");
    let part = blobs.join(format!("{sha}.incomplete"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut_at as u64);
    assert!(
        !blobs.join(&sha).exists(),
        "no complete blob from a cut transfer"
    );
    assert!(
        hub::cached_snapshot(&space, &want, tmp.path())
            .unwrap()
            .is_err()
    );

    let mut events = Vec::new();
    let snap = hub::fetch(&space, &want, &opts, &mut |p| events.push(p)).unwrap();
    assert!(std::fs::read(snap.path(file)).unwrap() == entry(&entries, SPACE, file).data);
    assert!(!part.exists());
    assert_no_partials(tmp.path());
    let first = events
        .iter()
        .find(|e| e.file == file && e.state == ProgressState::Downloading)
        .unwrap();
    assert_eq!(
        first.bytes_done, cut_at as u64,
        "progress starts at the resumed offset"
    );

    let gets: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|l| l.method == "GET" && l.path.starts_with("/cdn/"))
        .filter(|l| {
            let i: usize = l.path[5..].parse().unwrap();
            entries[i].file == file
        })
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={cut_at}-").as_str())
    );
}

/// With retries allowed, a cut transfer is resumed within the same call.
#[test]
fn cut_transfer_resumes_within_one_call_when_retrying() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    let file = hub::CLAP_FILE;
    hub.set(|s| s.cut_once = Some((file.to_string(), 12_345)));
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), &hub);
    opts.max_retries = 2;
    let snap = hub::fetch(&HubRepo::clap(), &[file], &opts, &mut |_| {}).unwrap();
    assert!(std::fs::read(snap.path(file)).unwrap() == entry(&entries, CLAP, file).data);
    let ranges: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with("/cdn/"))
        .filter_map(|l| l.range)
        .collect();
    assert_eq!(ranges, vec!["bytes=12345-".to_string()]);
    assert_no_partials(tmp.path());
}

/// A server that ignores Range (answers 200) on the resumed request does not corrupt the file:
/// the transfer starts over.
#[test]
fn resume_against_server_ignoring_range_starts_over() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    let file = Checkpoint::GreatestHits.projector_file();
    hub.set(|s| {
        s.cut_once = Some((file.to_string(), 777));
        s.ignore_range = true;
    });
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let space = HubRepo::sonic_space();
    assert!(matches!(
        hub::fetch(&space, &[file], &opts, &mut |_| {}),
        Err(HubError::Interrupted {
            bytes_done: 777,
            ..
        })
    ));
    let snap = hub::fetch(&space, &[file], &opts, &mut |_| {}).unwrap();
    assert!(std::fs::read(snap.path(file)).unwrap() == entry(&entries, SPACE, file).data);
    assert_no_partials(tmp.path());
}

/// A body that does not match the advertised sha256 is refused, named, and nothing of it is
/// left in the cache; once the server sends the right bytes, the download succeeds.
#[test]
fn content_not_matching_sha256_is_refused() {
    let mut entries = all_entries();
    let file = Checkpoint::Landscape.projector_file();
    let i = entries.iter().position(|e| e.file == file).unwrap();
    let mut bad = entries[i].data.clone();
    bad[1000] ^= 0xff;
    let bad_sha = sha256(&bad);
    entries[i].body = Some(bad);
    let hub = Hub::start(entries.clone());
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let err = hub::resolve(Preset::Landscape, &opts, &mut |_| {}).unwrap_err();
    match &err {
        HubError::ChecksumMismatch {
            repo,
            file: f,
            expected,
            actual,
        } => {
            assert_eq!(repo, SPACE);
            assert_eq!(f, file);
            assert_eq!(*expected, entries[i].sha256());
            assert_eq!(*actual, bad_sha);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(file) && msg.contains(&bad_sha) && msg.contains(&entries[i].sha256()),
        "{msg}"
    );
    let space_root = tmp.path().join("spaces--burakcanbiner--SonicDiffusion");
    assert!(!space_root.join("blobs").join(entries[i].sha256()).exists());
    assert!(
        !space_root
            .join("snapshots")
            .join(COMMIT)
            .join(file)
            .exists()
    );
    assert_no_partials(tmp.path());

    hub.set(|s| s.entries[i].body = None);
    let files = hub::resolve(Preset::Landscape, &opts, &mut |_| {}).unwrap();
    assert_model_files_match(&files, &entries, Preset::Landscape, false);
}

/// A body longer than the advertised size is refused and not kept.
#[test]
fn content_not_matching_size_is_refused() {
    let mut entries = all_entries();
    let file = Checkpoint::GreatestHits.adapters_file();
    let i = entries.iter().position(|e| e.file == file).unwrap();
    let real = entries[i].data.len() as u64;
    entries[i].advertised_size = Some(real - 10);
    let hub = Hub::start(entries.clone());
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let err = hub::fetch(&HubRepo::sonic_space(), &[file], &opts, &mut |_| {}).unwrap_err();
    match &err {
        HubError::SizeMismatch {
            file: f,
            expected,
            actual,
            ..
        } => {
            assert_eq!(f, file);
            assert_eq!(*expected, real - 10);
            assert!(*actual > real - 10);
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(file));
    assert_no_partials(tmp.path());
    assert!(
        !tmp.path()
            .join("spaces--burakcanbiner--SonicDiffusion/blobs")
            .join(entries[i].sha256())
            .exists()
    );
}

/// Offline with an empty cache: a typed error that lists every missing file and names the
/// command that fetches them; no network is touched (the endpoint is dead).
#[test]
fn offline_with_empty_cache_says_what_is_missing_and_how_to_fetch_it() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions::new(tmp.path())
        .with_endpoint(dead_endpoint())
        .with_offline(true);
    let err = hub::resolve(Preset::Landscape, &opts, &mut |_| {}).unwrap_err();
    let HubError::Missing {
        missing,
        cache_dir,
        hint,
    } = &err
    else {
        panic!("expected Missing, got {err:?}")
    };
    assert_eq!(missing.len(), 12 + 1 + 2);
    assert_eq!(cache_dir, tmp.path());
    assert_eq!(hint, "sonic download --preset landscape");
    let msg = err.to_string();
    println!("{msg}");
    for needle in [
        "offline",
        "CompVis/stable-diffusion-v1-4: unet/diffusion_pytorch_model.safetensors",
        "microsoft/msclap: CLAP_weights_2022.pth",
        "spaces/burakcanbiner/SonicDiffusion: ckpts/landscape.pt",
        "spaces/burakcanbiner/SonicDiffusion: ckpts/audio_projector_landscape.pth",
        "sonic download --preset landscape",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
    assert!(!msg.contains("greatest_hits"), "{msg}");
    let fp16 = hub::resolve(
        Preset::GreatestHits,
        &opts.clone().with_fp16(true),
        &mut |_| {},
    )
    .unwrap_err();
    let msg = fp16.to_string();
    assert!(
        msg.contains("unet/diffusion_pytorch_model.fp16.safetensors"),
        "{msg}"
    );
    assert!(
        msg.contains("sonic download --preset greatest-hits --fp16"),
        "{msg}"
    );
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "offline mode writes nothing"
    );
}

/// Offline with a partial cache lists only what is missing.
#[test]
fn offline_with_partial_cache_lists_only_the_missing_files() {
    let entries = all_entries();
    let hub = Hub::start(entries);
    let tmp = tempfile::tempdir().unwrap();
    hub::resolve(Preset::Landscape, &options(tmp.path(), &hub), &mut |_| {}).unwrap();
    drop(hub);
    let opts = HubOptions::new(tmp.path())
        .with_endpoint(dead_endpoint())
        .with_offline(true);
    let err = hub::resolve(Preset::All, &opts, &mut |_| {}).unwrap_err();
    let HubError::Missing { missing, hint, .. } = &err else {
        panic!("{err:?}")
    };
    let names: Vec<_> = missing.iter().map(|m| m.file.as_str()).collect();
    assert_eq!(
        names,
        vec!["ckpts/audio_projector_gh.pth", "ckpts/greatest_hits.pt"]
    );
    assert_eq!(hint, "sonic download --preset all");
}

/// The fp16 option fetches the `.fp16.safetensors` variants instead of the float32 weights.
#[test]
fn fp16_fetches_the_half_precision_variants() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub).with_fp16(true);
    let files = hub::resolve(Preset::GreatestHits, &opts, &mut |_| {}).unwrap();
    assert_model_files_match(&files, &entries, Preset::GreatestHits, true);
    assert!(
        !files
            .sd_dir
            .join("unet/diffusion_pytorch_model.safetensors")
            .exists()
    );
    assert!(
        files
            .sd_dir
            .join("unet/diffusion_pytorch_model.fp16.safetensors")
            .is_file()
    );
}

/// A gated repository: without a token the hub's 401 becomes `Unauthorized` (telling the user
/// to set HF_TOKEN); with one, every hub request carries it and the download succeeds.
#[test]
fn token_is_sent_and_required_by_gated_repos() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    hub.set(|s| s.token = Some("hf_secret".into()));
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let err = hub::fetch(&HubRepo::clap(), &[hub::CLAP_FILE], &opts, &mut |_| {}).unwrap_err();
    match &err {
        HubError::Unauthorized {
            status,
            had_token,
            server_message,
            ..
        } => {
            assert_eq!(*status, 401);
            assert!(!had_token);
            assert_eq!(
                server_message.as_deref(),
                Some("Access to this repo is restricted.")
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    let opts = opts.with_token(Some("hf_secret".into()));
    let snap = hub::fetch(&HubRepo::clap(), &[hub::CLAP_FILE], &opts, &mut |_| {}).unwrap();
    assert!(
        std::fs::read(snap.path(hub::CLAP_FILE)).unwrap()
            == entry(&entries, CLAP, hub::CLAP_FILE).data
    );
    let log = hub.log();
    let with_token: Vec<_> = log
        .iter()
        .filter(|l| l.path.contains("/resolve/"))
        .skip(1)
        .collect();
    assert!(!with_token.is_empty());
    assert!(
        with_token
            .iter()
            .all(|l| l.auth.as_deref() == Some("Bearer hf_secret")),
        "{log:?}"
    );
}

/// Files that do not exist give `NotFound`; bad paths are refused before any request.
#[test]
fn missing_files_and_bad_paths_are_typed_errors() {
    let hub = Hub::start(all_entries());
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let err = hub::fetch(&HubRepo::clap(), &["nope.bin"], &opts, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, HubError::NotFound { file, .. } if file == "nope.bin"),
        "{err:?}"
    );
    let before = hub.log().len();
    for bad in ["../etc/passwd", "/abs", "a/./b"] {
        let err = hub::fetch(&HubRepo::clap(), &[bad], &opts, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, HubError::InvalidPath { .. }),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(hub.log().len(), before);
    let err = HubOptions::new(tmp.path()).with_endpoint("ftp://x");
    assert!(matches!(
        hub::fetch(&HubRepo::clap(), &["a"], &err, &mut |_| {}),
        Err(HubError::InvalidOption {
            name: "endpoint",
            ..
        })
    ));
}

/// `refresh` asks the hub again even with a complete cache, and re-downloads nothing.
#[test]
fn refresh_revalidates_without_redownloading() {
    let entries = all_entries();
    let hub = Hub::start(entries);
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), &hub);
    let want = [Checkpoint::Landscape.projector_file()];
    hub::fetch(&HubRepo::sonic_space(), &want, &opts, &mut |_| {}).unwrap();
    opts.refresh = true;
    let mut events = Vec::new();
    hub::fetch(&HubRepo::sonic_space(), &want, &opts, &mut |p| {
        events.push(p)
    })
    .unwrap();
    let log = hub.log();
    assert_eq!(log.iter().filter(|l| l.method == "HEAD").count(), 2);
    // The first fetch: GET resolve (302) + GET cdn; the refresh: one HEAD, no GET.
    assert_eq!(log.iter().filter(|l| l.method == "GET").count(), 2);
    assert!(events.iter().all(|e| e.state == ProgressState::Cached));
}

/// Stale partial files heal: one longer than the file is discarded before any Range request;
/// one holding wrong bytes fails the sha256 check once, is discarded, and the next call
/// downloads the file cleanly.
#[test]
fn stale_partial_files_are_discarded() {
    let entries = all_entries();
    let hub = Hub::start(entries.clone());
    let tmp = tempfile::tempdir().unwrap();
    let opts = options(tmp.path(), &hub);
    let space = HubRepo::sonic_space();
    let blobs = tmp
        .path()
        .join("spaces--burakcanbiner--SonicDiffusion/blobs");
    std::fs::create_dir_all(&blobs).unwrap();

    let long = entry(&entries, SPACE, Checkpoint::Landscape.adapters_file());
    std::fs::write(
        blobs.join(format!("{}.incomplete", long.sha256())),
        vec![7u8; long.data.len() + 5],
    )
    .unwrap();
    let snap = hub::fetch(&space, &[&long.file], &opts, &mut |_| {}).unwrap();
    assert!(std::fs::read(snap.path(&long.file)).unwrap() == long.data);

    let wrong = entry(&entries, SPACE, Checkpoint::GreatestHits.adapters_file());
    std::fs::write(
        blobs.join(format!("{}.incomplete", wrong.sha256())),
        vec![0u8; 1000],
    )
    .unwrap();
    let err = hub::fetch(&space, &[&wrong.file], &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, HubError::ChecksumMismatch { .. }), "{err:?}");
    assert_no_partials(tmp.path());
    let snap = hub::fetch(&space, &[&wrong.file], &opts, &mut |_| {}).unwrap();
    assert!(std::fs::read(snap.path(&wrong.file)).unwrap() == wrong.data);
    let ranges: Vec<_> = hub.log().into_iter().filter_map(|l| l.range).collect();
    assert_eq!(
        ranges,
        vec!["bytes=1000-".to_string(); 2],
        "only the wrong partial was resumed"
    );
}
