//! A local stand-in for the Hugging Face hub (127.0.0.1 only), for the tests of this crate and
//! of the crates above it (enabled by the `test-server` feature): files are served under their
//! real repository names at `/{repo}/resolve/{revision}/{file}`; LFS files (`.safetensors`,
//! `.pth`, `.pt`) answer with a redirect to a "CDN" path carrying `X-Linked-Size` /
//! `X-Linked-Etag` (sha256) / `X-Repo-Commit`, as the hub does; the CDN honours
//! `Range: bytes=N-`. Knobs ([`State`]): cut one transfer or every transfer of a file after N
//! bytes, send a body that does not match the advertised sha256, advertise a wrong size, ignore
//! Range, require a token. The accept loop is bounded in time and connection count.
//!
//! ```
//! use sonic_hub::test_server::{Entry, Hub};
//! use sonic_hub::{HubOptions, HubRepo, fetch};
//! let hub = Hub::start(vec![Entry::new("org/model", "config.json", b"{}".to_vec())]);
//! let cache = tempfile::tempdir().unwrap();
//! let options = HubOptions::new(cache.path()).with_endpoint(hub.endpoint());
//! let snap = fetch(&HubRepo::model("org/model"), &["config.json"], &options, &mut |_| {}).unwrap();
//! assert_eq!(std::fs::read(snap.path("config.json")).unwrap(), b"{}");
//! ```

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The commit every repository is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// No server lives longer than this ...
pub const SERVER_LIFETIME: Duration = Duration::from_secs(300);
/// ... or serves more connections.
pub const MAX_CONNECTIONS: usize = 1000;

/// One file of one repository.
#[derive(Clone)]
pub struct Entry {
    /// The URL prefix of the repository (`CompVis/...`, `spaces/...`).
    pub repo: String,
    /// The path in the repository.
    pub file: String,
    /// The content the hub advertises (sha256, size).
    pub data: Vec<u8>,
    /// What is actually sent, when it differs (a corrupted body).
    pub body: Option<Vec<u8>>,
    /// An advertised size that differs from the content's.
    pub advertised_size: Option<u64>,
}

impl Entry {
    /// A file served as it is.
    pub fn new(repo: &str, file: &str, data: Vec<u8>) -> Self {
        Self {
            repo: repo.into(),
            file: file.into(),
            data,
            body: None,
            advertised_size: None,
        }
    }

    /// Stored in LFS on the hub (weights).
    pub fn lfs(&self) -> bool {
        [".safetensors", ".pth", ".pt"]
            .iter()
            .any(|s| self.file.ends_with(s))
    }

    /// The sha256 of the advertised content (hex).
    pub fn sha256(&self) -> String {
        sha256(&self.data)
    }
}

/// The sha256 of `data` (hex).
pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `GET` / `HEAD`.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `Authorization` header.
    pub auth: Option<String>,
}

/// What the server serves and how (change it with [`Hub::set`]).
#[derive(Default)]
pub struct State {
    /// The files served.
    pub entries: Vec<Entry>,
    /// (file, n): the next GET of that file's body sends n bytes, then closes the connection.
    pub cut_once: Option<(String, usize)>,
    /// (file, n): every GET of that file's body sends n bytes, then closes the connection
    /// (every retry of a run fails, so the run gives up with a partial file).
    pub cut_always: Option<(String, usize)>,
    /// Answer Range requests with the whole file (200).
    pub ignore_range: bool,
    /// Resolve requests need `Authorization: Bearer {token}`.
    pub token: Option<String>,
    /// The requests so far.
    pub log: Vec<Logged>,
}

/// The running server; stops when dropped.
pub struct Hub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Binds 127.0.0.1 on a free port and serves `entries`.
    ///
    /// # Panics
    ///
    /// When no port of 127.0.0.1 can be bound (this is test code).
    pub fn start(entries: Vec<Entry>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
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

    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .clone()
    }

    /// Changes the state (knobs, entries).
    pub fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
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
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
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
            _ => match &st.cut_always {
                Some((f, n)) if *f == e.file && !head => Some(*n),
                _ => None,
            },
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

/// Every file below `dir` (links not followed), for tests that check what a fetch left in a
/// cache (no `.incomplete` partials, the expected snapshot files).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
