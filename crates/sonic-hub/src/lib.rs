//! A client for the Hugging Face hub: verified, resumable downloads into the standard Hugging
//! Face cache, and offline lookups there.
//!
//! ```no_run
//! use sonic_hub::{HubOptions, HubRepo, fetch};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = HubOptions::from_env()?; // HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE
//! let snapshot = fetch(&HubRepo::model("microsoft/msclap"), &["CLAP_weights_2022.pth"], &options, &mut |p| {
//!     eprintln!("{} {}: {}/{:?}", p.repo, p.file, p.bytes_done, p.total)
//! })?;
//! println!("{}", snapshot.path("CLAP_weights_2022.pth").display());
//! # Ok(()) }
//! ```
//!
//! Which files the SonicDiffusion presets need (SD v1.4, MS-CLAP, the released checkpoints) is
//! the model pipeline's business: see `sonic_pipeline::hub`.
//!
//! # What hf-hub does and what this module does
//!
//! `hf-hub` 0.5 (sync/ureq flavour, rustls) provides the cache layout (`models--org--name`,
//! `spaces--…`, `blobs/`, `snapshots/`, via `hf_hub::{Cache, Repo}`), repository addressing
//! (model / dataset / space URL prefixes, revision escaping), the token file
//! (`$HF_HOME/token`) and the HTTP client (ureq 3). Its own `ApiRepo::download` is not used for
//! the transfer because, in 0.5, it:
//! - does not verify anything: a truncated or corrupted body is renamed into `blobs/` as
//!   complete (no size check, no sha256 check);
//! - appends the whole body to the partial file when a server answers a Range request with
//!   200 instead of 206, corrupting the resumed file;
//! - panics on a redirect without `Location` and on some malformed URLs;
//! - uses server-supplied etags and commit hashes as path names without checking them;
//! - has no offline mode beyond `Cache::get`, reads no `HF_TOKEN`, and reports progress only
//!   through its own trait.
//!
//! So metadata (HEAD, reading `x-repo-commit`, `x-linked-etag`/`ETag`, `x-linked-size`), the
//! resumable transfer (`blobs/{etag}.incomplete`, continued with `Range: bytes=N-`), the size
//! and sha256 checks, locking (`.locks/…/{etag}.lock`, shared with Python's
//! `huggingface_hub`), atomic commits into the cache (rename, then snapshot link, then ref)
//! and offline lookups are implemented here on top of hf-hub's layout, so the cache stays
//! interchangeable with `huggingface_hub` and `hf-hub`.
//!
//! Integrity: LFS files (all weights) are checked against the sha256 the hub advertises in
//! `x-linked-etag` and their size against `x-linked-size`; small git-stored files (JSON, text)
//! are checked against `Content-Length` only (their ETag is a git blob id). A file that fails
//! is refused with [`HubError::SizeMismatch`] / [`HubError::ChecksumMismatch`] and never
//! enters `blobs/` or `snapshots/`.
//!
//! All files of one repository are taken from one commit: the first request resolves the
//! revision (`main`) to a commit, the rest are fetched at that commit, and the returned
//! [`RepoSnapshot::dir`] is a diffusers-layout folder.
//!
//! Why one file of over 600 lines: the code is about 550 lines; the rest are its unit tests.

mod cache;
mod error;
mod http;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use error::{HubError, MissingFile};

use cache::{FileLock, RepoCache, is_safe_file};
use http::{Client, Target, encode_path};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The kind of a hub repository (it decides the URL prefix and the cache folder prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoKind {
    /// A model repository (`{endpoint}/{id}/resolve/…`, cache `models--…`).
    Model,
    /// A dataset (`{endpoint}/datasets/{id}/resolve/…`, cache `datasets--…`).
    Dataset,
    /// A space (`{endpoint}/spaces/{id}/resolve/…`, cache `spaces--…`).
    Space,
}

/// A repository at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubRepo {
    /// `owner/name`.
    pub id: String,
    /// Model, dataset or space.
    pub kind: RepoKind,
    /// A branch, tag or commit hash (`main` by default).
    pub revision: String,
}

impl HubRepo {
    /// A model repository at `main`.
    pub fn model(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: RepoKind::Model,
            revision: "main".into(),
        }
    }

    /// A space at `main`.
    pub fn space(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: RepoKind::Space,
            revision: "main".into(),
        }
    }

    /// A dataset at `main`.
    pub fn dataset(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind: RepoKind::Dataset,
            revision: "main".into(),
        }
    }

    /// The same repository at another revision.
    pub fn at(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }
    pub(crate) fn to_hf_hub(&self) -> hf_hub::Repo {
        let kind = match self.kind {
            RepoKind::Model => hf_hub::RepoType::Model,
            RepoKind::Dataset => hf_hub::RepoType::Dataset,
            RepoKind::Space => hf_hub::RepoType::Space,
        };
        hf_hub::Repo::with_revision(self.id.clone(), kind, self.revision.clone())
    }

    /// The folder name of this repository in the cache (`spaces--burakcanbiner--SonicDiffusion`).
    pub fn cache_folder_name(&self) -> String {
        self.to_hf_hub().folder_name()
    }

    /// `{endpoint}/{prefix}{id}/resolve/{revision}/{file}`.
    pub fn file_url(&self, endpoint: &str, revision: &str, file: &str) -> String {
        let repo = self.to_hf_hub().url();
        let revision = encode_path(revision).replace('/', "%2F");
        format!(
            "{}/{repo}/resolve/{revision}/{}",
            endpoint.trim_end_matches('/'),
            encode_path(file)
        )
    }
}

impl fmt::Display for HubRepo {
    /// `CompVis/stable-diffusion-v1-4`, `spaces/burakcanbiner/SonicDiffusion`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hf_hub().url())
    }
}

/// Where and how to download.
#[derive(Clone)]
pub struct HubOptions {
    /// The hub (`https://huggingface.co`; `HF_ENDPOINT`).
    pub endpoint: String,
    /// The hub cache folder, which holds `models--…` (`HF_HUB_CACHE`, else `$HF_HOME/hub`,
    /// else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// A token for gated or private repositories (`HF_TOKEN`, else the token file).
    pub token: Option<String>,
    /// Use the cache only; never touch the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Fetch the `.fp16.safetensors` weight variants of SD instead of the float32 files.
    pub fp16: bool,
    /// Ask the hub for the current commit even when the cache already holds every file of
    /// the revision (by default a complete cached snapshot is used without any request).
    pub refresh: bool,
    /// Times a transient failure (interrupted transfer, connection error, 5xx, 429) is
    /// retried within one call; each retry resumes where the last stopped.
    pub max_retries: u32,
    /// The wait before the first retry; doubled on each further one.
    pub retry_delay: Duration,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Longest wait for a response or for the next bytes of a body.
    pub read_timeout: Duration,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("fp16", &self.fp16)
            .field("refresh", &self.refresh)
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl HubOptions {
    /// Options with the given cache folder and defaults for the rest; reads no environment.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            cache_dir: cache_dir.into(),
            token: None,
            offline: false,
            fp16: false,
            refresh: false,
            max_retries: 3,
            retry_delay: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// Options from the environment, as `huggingface_hub` reads it: `HF_ENDPOINT`,
    /// `HF_HUB_CACHE` / `HF_HOME` / `XDG_CACHE_HOME`, `HF_TOKEN` / `HF_TOKEN_PATH` /
    /// `$HF_HOME/token`, `HF_HUB_OFFLINE`.
    pub fn from_env() -> Result<Self, HubError> {
        Self::from_vars(|k| std::env::var(k).ok(), dirs::home_dir())
    }

    /// [`HubOptions::from_env`] over any variable source (for tests and embedding).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        home: Option<PathBuf>,
    ) -> Result<Self, HubError> {
        let var = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let hf_home = var("HF_HOME").map(PathBuf::from).or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".cache")))
                .map(|c| c.join("huggingface"))
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")))
            .ok_or(HubError::NoCacheDir)?;
        let mut options = Self::new(cache_dir);
        if let Some(endpoint) = var("HF_ENDPOINT") {
            options.endpoint = endpoint.trim_end_matches('/').to_string();
        }
        options.token = var("HF_TOKEN").or_else(|| {
            match var("HF_TOKEN_PATH") {
                Some(p) => std::fs::read_to_string(p)
                    .ok()
                    .map(|t| t.trim().to_string()),
                // hf-hub's token file lookup: `{HF_HOME}/token`.
                None => hf_home
                    .as_ref()
                    .and_then(|h| hf_hub::Cache::new(h.join("hub")).token()),
            }
            .filter(|t| !t.is_empty())
        });
        options.offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
        });
        Ok(options)
    }

    /// Sets the endpoint (a trailing `/` is dropped).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_string();
        self
    }

    /// Sets the cache folder.
    pub fn with_cache_dir(mut self, cache_dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = cache_dir.into();
        self
    }

    /// Sets the token.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Sets offline mode.
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Chooses the fp16 weight variants.
    pub fn with_fp16(mut self, fp16: bool) -> Self {
        self.fp16 = fp16;
        self
    }
}

/// What a [`DownloadProgress`] event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// The file was already in the cache; nothing was transferred.
    Cached,
    /// Bytes are arriving (`bytes_done` counts what is on disk, including a resumed part).
    Downloading,
    /// The whole file arrived; its size and checksum are being checked.
    Verifying,
    /// The file is verified and in the cache.
    Done,
}

/// A progress event for one file (enough to drive one `indicatif` bar per file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadProgress {
    /// The repository (`CompVis/stable-diffusion-v1-4`, `spaces/…`).
    pub repo: String,
    /// The file's path in the repository.
    pub file: String,
    /// Bytes of the file on disk so far.
    pub bytes_done: u64,
    /// The file's size, when the hub said.
    pub total: Option<u64>,
    /// What is happening.
    pub state: ProgressState,
}

/// Files of one repository, all from one commit, in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSnapshot {
    /// The repository.
    pub repo: HubRepo,
    /// The commit the files come from.
    pub commit: String,
    /// `{cache}/{folder}/snapshots/{commit}`: the files below it keep their repository paths.
    pub dir: PathBuf,
}

impl RepoSnapshot {
    /// The local path of a file of the snapshot.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// Makes `files` of `repo` available locally, all from one commit: from the cache when a
/// cached snapshot holds them all, else downloading what is missing (resuming partial
/// transfers, verifying size and sha256). In offline mode, missing files give [`HubError::Missing`].
pub fn fetch<S: AsRef<str>>(
    repo: &HubRepo,
    files: &[S],
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<RepoSnapshot, HubError> {
    let files: Vec<&str> = files.iter().map(|f| f.as_ref()).collect();
    if !options.refresh || options.offline {
        match cached_snapshot(repo, &files, &options.cache_dir)? {
            Ok(s) => {
                report_cached(&s, &files, progress);
                return Ok(s);
            }
            Err(missing) if options.offline => {
                return Err(HubError::Missing {
                    missing,
                    cache_dir: options.cache_dir.clone(),
                    hint: "turn offline mode off (unset HF_HUB_OFFLINE / drop --offline) to download them"
                        .into(),
                });
            }
            Err(_) => {}
        }
    }
    download(repo, &files, options, progress)
}

/// Looks `files` up in the cache at the commit `repo.revision` points to. The outer error is
/// an invalid request; the inner one lists the missing files.
pub fn cached_snapshot<S: AsRef<str>>(
    repo: &HubRepo,
    files: &[S],
    cache_dir: &Path,
) -> Result<Result<RepoSnapshot, Vec<MissingFile>>, HubError> {
    check_files(repo, files)?;
    let rc = RepoCache::new(cache_dir, repo);
    let missing_all = || {
        files
            .iter()
            .map(|f| MissingFile {
                repo: repo.to_string(),
                revision: repo.revision.clone(),
                file: f.as_ref().to_string(),
            })
            .collect::<Vec<_>>()
    };
    let Some(commit) = rc.read_ref(&repo.revision) else {
        return Ok(Err(missing_all()));
    };
    let dir = rc.snapshot_dir(&commit);
    // `is_file` follows the symlink: a pointer whose blob is gone counts as missing.
    let missing: Vec<MissingFile> = missing_all()
        .into_iter()
        .filter(|m| !dir.join(&m.file).is_file())
        .collect();
    if missing.is_empty() {
        Ok(Ok(RepoSnapshot {
            repo: repo.clone(),
            commit,
            dir,
        }))
    } else {
        Ok(Err(missing))
    }
}

fn check_files<S: AsRef<str>>(repo: &HubRepo, files: &[S]) -> Result<(), HubError> {
    for f in files {
        if !is_safe_file(f.as_ref()) {
            return Err(HubError::InvalidPath {
                repo: repo.to_string(),
                file: f.as_ref().to_string(),
            });
        }
    }
    if repo.id.is_empty()
        || repo
            .id
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(HubError::InvalidOption {
            name: "repo",
            value: repo.id.clone(),
            reason: "expected owner/name",
        });
    }
    Ok(())
}

/// Reports every file of a cached snapshot as [`ProgressState::Cached`] (its size on disk as
/// both done and total), as [`fetch`] does when the cache already holds them.
pub fn report_cached(
    s: &RepoSnapshot,
    files: &[impl AsRef<str>],
    progress: &mut dyn FnMut(DownloadProgress),
) {
    for f in files {
        let len = std::fs::metadata(s.path(f.as_ref()))
            .map(|m| m.len())
            .unwrap_or(0);
        progress(DownloadProgress {
            repo: s.repo.to_string(),
            file: f.as_ref().to_string(),
            bytes_done: len,
            total: Some(len),
            state: ProgressState::Cached,
        });
    }
}

/// Asks the hub for every file, downloads those not yet in the cache.
fn download(
    repo: &HubRepo,
    files: &[&str],
    options: &HubOptions,
    progress: &mut dyn FnMut(DownloadProgress),
) -> Result<RepoSnapshot, HubError> {
    check_files(repo, files)?;
    let client = Client::new(options)?;
    let rc = RepoCache::new(&options.cache_dir, repo);
    let repo_name = repo.to_string();
    let mut pinned: Option<String> = None;
    for &file in files {
        let revision = pinned.as_deref().unwrap_or(&repo.revision);
        let url = repo.file_url(&options.endpoint, revision, file);
        let target = Target {
            repo: &repo_name,
            file,
            url: &url,
        };
        let meta = client.metadata(&target)?;
        if let Some(p) = &pinned
            && *p != meta.commit
        {
            return Err(HubError::Protocol {
                url,
                message: format!(
                    "asked for commit {p}, the hub answered for commit {}",
                    meta.commit
                ),
            });
        }
        let commit = meta.commit.clone();
        pinned = Some(commit.clone());
        let pointer = rc.snapshot_dir(&commit).join(file);
        let blob = rc.blob_path(&meta.etag);
        let fits = |p: &Path| {
            std::fs::metadata(p)
                .is_ok_and(|m| m.is_file() && meta.size.is_none_or(|s| s == m.len()))
        };
        if fits(&pointer) && fits(&blob) {
            report_cached(
                &RepoSnapshot {
                    repo: repo.clone(),
                    commit: commit.clone(),
                    dir: rc.snapshot_dir(&commit),
                },
                &[file],
                progress,
            );
        } else {
            let _lock = FileLock::acquire(&rc.lock_path(&meta.etag))?;
            if !fits(&blob) {
                let part = rc.part_path(&meta.etag);
                client.download(&target, &meta, &part, progress)?;
                std::fs::rename(&part, &blob).map_err(HubError::io(&blob))?;
            }
            rc.link(&commit, file, &meta.etag)?;
            let len = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
            progress(DownloadProgress {
                repo: repo_name.clone(),
                file: file.to_string(),
                bytes_done: len,
                total: Some(len),
                state: ProgressState::Done,
            });
        }
        rc.write_ref(&repo.revision, &commit)?;
    }
    let commit = match pinned {
        Some(c) => c,
        None => rc
            .read_ref(&repo.revision)
            .unwrap_or_else(|| repo.revision.clone()),
    };
    Ok(RepoSnapshot {
        repo: repo.clone(),
        dir: rc.snapshot_dir(&commit),
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_hub() {
        let e = "https://huggingface.co/";
        assert_eq!(
            HubRepo::model("CompVis/stable-diffusion-v1-4").file_url(e, "main", "unet/config.json"),
            "https://huggingface.co/CompVis/stable-diffusion-v1-4/resolve/main/unet/config.json"
        );
        assert_eq!(
            HubRepo::space("burakcanbiner/SonicDiffusion").file_url(
                e,
                "main",
                "ckpts/landscape.pt"
            ),
            "https://huggingface.co/spaces/burakcanbiner/SonicDiffusion/resolve/main/ckpts/landscape.pt"
        );
        assert_eq!(
            HubRepo::model("microsoft/msclap").file_url(e, "refs/pr/1", "CLAP_weights_2022.pth"),
            "https://huggingface.co/microsoft/msclap/resolve/refs%2Fpr%2F1/CLAP_weights_2022.pth"
        );
        assert_eq!(
            HubRepo::space("burakcanbiner/SonicDiffusion").cache_folder_name(),
            "spaces--burakcanbiner--SonicDiffusion"
        );
        assert_eq!(
            HubRepo::space("burakcanbiner/SonicDiffusion").to_string(),
            "spaces/burakcanbiner/SonicDiffusion"
        );
    }

    #[test]
    fn options_from_vars() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let o = HubOptions::from_vars(vars(&[]), Some("/home/u".into())).unwrap();
        assert_eq!(o.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert!(!o.offline);
        let o = HubOptions::from_vars(
            vars(&[
                ("HF_HOME", "/hf"),
                ("HF_ENDPOINT", "http://127.0.0.1:9/"),
                ("HF_TOKEN", "hf_x"),
                ("HF_HUB_OFFLINE", "1"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(o.cache_dir, Path::new("/hf/hub"));
        assert_eq!(o.endpoint, "http://127.0.0.1:9");
        assert_eq!(o.token.as_deref(), Some("hf_x"));
        assert!(o.offline);
        assert!(!format!("{o:?}").contains("hf_x"), "the token is redacted");
        let o = HubOptions::from_vars(vars(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/hf")]), None)
            .unwrap();
        assert_eq!(o.cache_dir, Path::new("/c"));
        assert!(matches!(
            HubOptions::from_vars(vars(&[]), None),
            Err(HubError::NoCacheDir)
        ));
        // The token file under HF_HOME, read through hf-hub.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("token"), "hf_file\n").unwrap();
        let home = tmp.path().to_str().unwrap().to_string();
        let o =
            HubOptions::from_vars(move |k| (k == "HF_HOME").then(|| home.clone()), None).unwrap();
        assert_eq!(o.token.as_deref(), Some("hf_file"));
    }
}
