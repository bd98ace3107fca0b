//! The error type of the hub downloads.

use std::fmt;
use std::path::PathBuf;

/// One file that offline mode could not find in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFile {
    /// The repository as the hub addresses it (`CompVis/stable-diffusion-v1-4`,
    /// `spaces/burakcanbiner/SonicDiffusion`).
    pub repo: String,
    /// The revision asked for (`main`).
    pub revision: String,
    /// The file's path inside the repository.
    pub file: String,
}

impl fmt::Display for MissingFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.repo, self.file)?;
        if self.revision != "main" {
            write!(f, " (revision {})", self.revision)?;
        }
        Ok(())
    }
}

fn list(missing: &[MissingFile]) -> String {
    missing.iter().map(|m| format!("\n  {m}")).collect()
}

/// Errors of this crate. Every variant names the file, URL or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Offline mode (or a missing cache) and the files are not in the cache.
    #[error(
        "{} file(s) needed are not in the Hugging Face cache at {} and offline mode is on:{}\nfetch them with `{hint}`",
        missing.len(), cache_dir.display(), list(missing)
    )]
    Missing {
        /// The files that are missing.
        missing: Vec<MissingFile>,
        /// The hub cache folder that was searched.
        cache_dir: PathBuf,
        /// The command (or action) that fetches them.
        hint: String,
    },
    /// The hub refused access (401 / 403): a gated or private repository, a bad token, or a
    /// repository that does not exist (the hub answers 401 for those too).
    #[error(
        "{url}: the hub answered {status} for {repo}: {file}{}; the repository is gated, private or \
         does not exist: accept its terms on the hub and set HF_TOKEN (or pass a token){}",
        server_message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
        if *had_token { "; the token sent was refused" } else { "; no token was sent" }
    )]
    Unauthorized {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// The URL asked.
        url: String,
        /// 401 or 403.
        status: u16,
        /// Whether a token was sent.
        had_token: bool,
        /// The hub's `x-error-message`, if any.
        server_message: Option<String>,
    },
    /// The repository, revision or file does not exist (404).
    #[error("{url}: not found on the hub ({repo}: {file}){}",
        server_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    NotFound {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// The URL asked.
        url: String,
        /// The hub's `x-error-message`, if any.
        server_message: Option<String>,
    },
    /// Any other HTTP status that is not success.
    #[error("{url}: the hub answered HTTP {status}{}",
        server_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Http {
        /// The URL asked.
        url: String,
        /// The status.
        status: u16,
        /// The hub's `x-error-message`, if any.
        server_message: Option<String>,
    },
    /// The connection failed before a response came (DNS, TLS, refused, timeout); the message
    /// says what to try.
    #[error(
        "{url}: request failed: {source}\nthe hub could not be reached; try: check the network \
         connection; set HF_ENDPOINT to the URL of a hub mirror; or, with the files already in the cache, run with \
         --offline (HF_HUB_OFFLINE=1); on a machine without access, run `sonic download` on one \
         with access and copy its HF_HOME folder over"
    )]
    Transport {
        /// The URL asked.
        url: String,
        /// The client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The transfer stopped before the whole file came; the part already received is kept
    /// and the next call resumes from it with an HTTP Range request.
    #[error(
        "{repo}: {file}: transfer interrupted after {bytes_done}{} bytes ({reason}); run again to resume",
        total.map(|t| format!(" of {t}")).unwrap_or_default()
    )]
    Interrupted {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// Bytes on disk in the partial file.
        bytes_done: u64,
        /// The file's size, if the hub said.
        total: Option<u64>,
        /// What stopped it.
        reason: String,
    },
    /// The file's size differs from the size the hub advertised; it was discarded.
    #[error(
        "{repo}: {file}: size mismatch: the hub advertised {expected} bytes, received {actual}; the file was discarded"
    )]
    SizeMismatch {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// Bytes advertised (`x-linked-size` / `Content-Length`).
        expected: u64,
        /// Bytes received (at least).
        actual: u64,
    },
    /// The file's sha256 differs from the hub's (`x-linked-etag`); it was discarded.
    #[error(
        "{repo}: {file}: checksum mismatch: expected sha256 {expected}, got {actual}; the file was discarded"
    )]
    ChecksumMismatch {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// The hub's sha256 (hex).
        expected: String,
        /// The sha256 of what arrived (hex).
        actual: String,
    },
    /// A response lacked a header the hub always sends, or carried an unusable value.
    #[error("{url}: {message}")]
    Protocol {
        /// The URL asked.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// A file path asked for is not a plain relative path inside the repository.
    #[error("invalid file path in {repo}: {file:?} (must be relative, without `.` or `..`)")]
    InvalidPath {
        /// The repository.
        repo: String,
        /// The path.
        file: String,
    },
    /// An option has an unusable value.
    #[error("invalid hub option `{name}` = {value:?}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// No cache folder could be determined (no `HF_HUB_CACHE`, `HF_HOME` or home folder).
    #[error("no Hugging Face cache folder: set HF_HOME or HF_HUB_CACHE, or pass a cache dir")]
    NoCacheDir,
    /// Reading or writing the cache failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    /// Whether trying again may succeed (interrupted transfers, connection failures, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            HubError::Interrupted { .. } | HubError::Transport { .. } => true,
            HubError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
        let path = path.into();
        move |source| HubError::Io { path, source }
    }
}
