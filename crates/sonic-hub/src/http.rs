//! The hub's HTTP protocol: file metadata (HEAD) and verified, resumable transfers (GET with
//! Range), over ureq 3 (the client hf-hub itself uses).
//!
//! Redirects are followed here, not by the client, so that a resumed request keeps its
//! `Range` header across the hub's redirect to its CDN and the token is only ever sent to the
//! hub's own origin.

use super::cache::is_safe_name;
use super::error::HubError;
use super::{DownloadProgress, HubOptions, ProgressState};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use ureq::http::Response;

/// How many redirects one request may follow.
const MAX_REDIRECTS: usize = 8;
/// Read size of a transfer.
const CHUNK: usize = 256 * 1024;
/// Bytes between two progress reports of a transfer.
const REPORT_EVERY: u64 = 512 * 1024;

/// What the hub says about one file.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    /// The commit the revision resolved to (`x-repo-commit`).
    pub commit: String,
    /// The blob name: `x-linked-etag` (sha256 for LFS files) or `ETag` (git blob id).
    pub etag: String,
    /// The size (`x-linked-size`, or `Content-Length` of a direct answer), if known.
    pub size: Option<u64>,
}

impl FileMeta {
    /// The sha256 to verify against: LFS etags are the file's sha256 (64 hex digits).
    pub(crate) fn sha256(&self) -> Option<String> {
        (self.etag.len() == 64 && self.etag.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.etag.to_ascii_lowercase())
    }
}

/// Where one file lives and who asks for it (for error messages).
pub(crate) struct Target<'a> {
    pub repo: &'a str,
    pub file: &'a str,
    pub url: &'a str,
}

/// The HTTP side of the hub.
pub(crate) struct Client {
    agent: ureq::Agent,
    endpoint_origin: String,
    token: Option<String>,
    max_retries: u32,
    retry_delay: std::time::Duration,
}

impl Client {
    pub(crate) fn new(options: &HubOptions) -> Result<Self, HubError> {
        let endpoint_origin = origin(&options.endpoint)
            .ok_or_else(|| HubError::InvalidOption {
                name: "endpoint",
                value: options.endpoint.clone(),
                reason: "must be an http:// or https:// URL",
            })?
            .to_string();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .user_agent(format!(
                "sonic-diffusion/{}; hf-hub/0.5",
                env!("CARGO_PKG_VERSION")
            ))
            .build();
        Ok(Self {
            agent: config.into(),
            endpoint_origin,
            token: options.token.clone().filter(|t| !t.is_empty()),
            max_retries: options.max_retries,
            retry_delay: options.retry_delay,
        })
    }

    /// Sends a HEAD or GET, following up to [`MAX_REDIRECTS`] redirects by hand. With
    /// `relative_only`, only relative redirects (a renamed repository) are followed and a
    /// redirect to an absolute URL (the hub's CDN) is returned as is: its headers carry the
    /// file's metadata (`huggingface_hub` does the same).
    fn send(
        &self,
        head: bool,
        url: &str,
        range_from: Option<u64>,
        relative_only: bool,
    ) -> Result<(String, Response<ureq::Body>), HubError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = if head {
                self.agent.head(&url)
            } else {
                self.agent.get(&url)
            };
            req = req.header("Accept-Encoding", "identity");
            if let Some(start) = range_from {
                req = req.header("Range", format!("bytes={start}-"));
            }
            if let Some(token) = &self.token
                && origin(&url) == Some(self.endpoint_origin.as_str())
            {
                req = req.header("Authorization", format!("Bearer {token}"));
            }
            let resp = req.call().map_err(|e| HubError::Transport {
                url: url.clone(),
                source: Box::new(e),
            })?;
            if !resp.status().is_redirection() {
                return Ok((url, resp));
            }
            let Some(location) = header(&resp, "location") else {
                return Ok((url, resp));
            };
            let next = join_url(&url, &location).ok_or_else(|| HubError::Protocol {
                url: url.clone(),
                message: format!("unusable redirect location {location:?}"),
            })?;
            if relative_only && (origin(&location).is_some() || location.starts_with("//")) {
                return Ok((url, resp));
            }
            url = next;
        }
        Err(HubError::Protocol {
            url,
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The file's metadata, from a HEAD request (relative redirects followed, as
    /// `huggingface_hub` does; the headers of the hub's redirect to its CDN are used).
    pub(crate) fn metadata(&self, t: &Target<'_>) -> Result<FileMeta, HubError> {
        let (url, resp) = self.send(true, t.url, None, true)?;
        let status = resp.status().as_u16();
        if !(200..400).contains(&status) {
            return Err(status_error(&resp, t, &url, self.token.is_some()));
        }
        let commit = header(&resp, "x-repo-commit").ok_or_else(|| HubError::Protocol {
            url: url.clone(),
            message: "no x-repo-commit header: is the endpoint a Hugging Face hub?".into(),
        })?;
        let etag = header(&resp, "x-linked-etag")
            .or_else(|| header(&resp, "etag"))
            .map(|e| normalize_etag(&e))
            .ok_or_else(|| HubError::Protocol {
                url: url.clone(),
                message: "no ETag header".into(),
            })?;
        for (what, v) in [("commit", &commit), ("etag", &etag)] {
            if !is_safe_name(v) {
                return Err(HubError::Protocol {
                    url,
                    message: format!("unusable {what} {v:?}"),
                });
            }
        }
        let size_header = header(&resp, "x-linked-size").or_else(|| {
            resp.status()
                .is_success()
                .then(|| header(&resp, "content-length"))
                .flatten()
        });
        let size = match size_header {
            Some(s) => Some(s.trim().parse::<u64>().map_err(|_| HubError::Protocol {
                url: url.clone(),
                message: format!("unusable size header {s:?}"),
            })?),
            None => None,
        };
        Ok(FileMeta { commit, etag, size })
    }

    /// Downloads the file into `part`, resuming from what `part` already holds, and checks
    /// size and sha256. On success `part` holds exactly the file; on a verification failure
    /// `part` is removed; on an interruption it is kept for the next call. Transient failures
    /// are retried `max_retries` times, each resuming where the last stopped.
    pub(crate) fn download(
        &self,
        t: &Target<'_>,
        meta: &FileMeta,
        part: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<(), HubError> {
        let mut attempt = 0u32;
        loop {
            match self.transfer(t, meta, part, progress) {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < self.max_retries => {
                    let delay = self.retry_delay.saturating_mul(1u32 << attempt.min(6));
                    tracing::warn!(file = t.file, error = %e, "retrying in {delay:?}");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        self.verify(t, meta, part, progress)
    }

    /// One attempt: GET from the partial file's length to the end.
    fn transfer(
        &self,
        t: &Target<'_>,
        meta: &FileMeta,
        part: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<(), HubError> {
        let mut start = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if let Some(size) = meta.size {
            if start > size {
                tracing::warn!(
                    file = t.file,
                    "partial file longer than the file; starting over"
                );
                fs::remove_file(part).map_err(HubError::io(part))?;
                start = 0;
            }
            if start == size {
                return Ok(());
            }
        }
        let report = |done: u64| DownloadProgress {
            repo: t.repo.to_string(),
            file: t.file.to_string(),
            bytes_done: done,
            total: meta.size,
            state: ProgressState::Downloading,
        };
        let (url, resp) = self.send(false, t.url, (start > 0).then_some(start), false)?;
        let status = resp.status().as_u16();
        let append = match status {
            206 => {
                let range = header(&resp, "content-range").unwrap_or_default();
                if content_range_start(&range) != Some(start) {
                    return Err(HubError::Protocol {
                        url,
                        message: format!("asked for bytes {start}-, got Content-Range {range:?}"),
                    });
                }
                true
            }
            200 => {
                if start > 0 {
                    tracing::info!(
                        file = t.file,
                        "the server ignored the Range request; starting over"
                    );
                }
                false
            }
            416 if start > 0 => {
                // The partial file does not fit the file any more: start over (once: the
                // next attempt has no Range, so it cannot answer 416 again).
                tracing::info!(
                    file = t.file,
                    "the server refused to resume (416); starting over"
                );
                drop(resp);
                fs::remove_file(part).map_err(HubError::io(part))?;
                return self.transfer(t, meta, part, progress);
            }
            _ => return Err(status_error(&resp, t, &url, self.token.is_some())),
        };
        if let Some(parent) = part.parent() {
            fs::create_dir_all(parent).map_err(HubError::io(parent))?;
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(!append)
            .open(part)
            .map_err(HubError::io(part))?;
        let mut done = if append {
            file.seek(SeekFrom::End(0)).map_err(HubError::io(part))?
        } else {
            0
        };
        progress(report(done));
        let mut reported = done;
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; CHUNK];
        let interrupted = |done: u64, reason: String| HubError::Interrupted {
            repo: t.repo.into(),
            file: t.file.into(),
            bytes_done: done,
            total: meta.size,
            reason,
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    file.sync_all().map_err(HubError::io(part))?;
                    return Err(interrupted(done, e.to_string()));
                }
            };
            file.write_all(&buf[..n]).map_err(HubError::io(part))?;
            done += n as u64;
            if let Some(size) = meta.size
                && done > size
            {
                drop(file);
                let _ = fs::remove_file(part);
                return Err(HubError::SizeMismatch {
                    repo: t.repo.into(),
                    file: t.file.into(),
                    expected: size,
                    actual: done,
                });
            }
            if done - reported >= REPORT_EVERY || meta.size == Some(done) {
                progress(report(done));
                reported = done;
            }
        }
        file.sync_all().map_err(HubError::io(part))?;
        if let Some(size) = meta.size
            && done < size
        {
            return Err(interrupted(done, "the connection closed early".into()));
        }
        Ok(())
    }

    /// Checks the complete partial file against the advertised size and sha256; removes it
    /// when it does not match.
    fn verify(
        &self,
        t: &Target<'_>,
        meta: &FileMeta,
        part: &Path,
        progress: &mut dyn FnMut(DownloadProgress),
    ) -> Result<(), HubError> {
        let len = fs::metadata(part).map_err(HubError::io(part))?.len();
        progress(DownloadProgress {
            repo: t.repo.to_string(),
            file: t.file.to_string(),
            bytes_done: len,
            total: meta.size,
            state: ProgressState::Verifying,
        });
        if let Some(size) = meta.size
            && len != size
        {
            let _ = fs::remove_file(part);
            return Err(HubError::SizeMismatch {
                repo: t.repo.into(),
                file: t.file.into(),
                expected: size,
                actual: len,
            });
        }
        if let Some(expected) = meta.sha256() {
            let actual = sha256_file(part)?;
            if actual != expected {
                let _ = fs::remove_file(part);
                return Err(HubError::ChecksumMismatch {
                    repo: t.repo.into(),
                    file: t.file.into(),
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// The lowercase hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut f = fs::File::open(path).map_err(HubError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(HubError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(resp: &Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn status_error(
    resp: &Response<ureq::Body>,
    t: &Target<'_>,
    url: &str,
    had_token: bool,
) -> HubError {
    let status = resp.status().as_u16();
    let server_message = header(resp, "x-error-message");
    match status {
        401 | 403 => HubError::Unauthorized {
            repo: t.repo.into(),
            file: t.file.into(),
            url: url.into(),
            status,
            had_token,
            server_message,
        },
        404 => HubError::NotFound {
            repo: t.repo.into(),
            file: t.file.into(),
            url: url.into(),
            server_message,
        },
        _ => HubError::Http {
            url: url.into(),
            status,
            server_message,
        },
    }
}

/// `W/"abc"` -> `abc`.
fn normalize_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// The start of a `Content-Range: bytes a-b/total` value.
fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// `scheme://authority` of an http(s) URL.
pub(crate) fn origin(url: &str) -> Option<&str> {
    let scheme_end = if url.starts_with("https://") {
        8
    } else if url.starts_with("http://") {
        7
    } else {
        return None;
    };
    let end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    (end > scheme_end).then(|| &url[..end])
}

/// Resolves a `Location` against the URL that answered it.
fn join_url(base: &str, location: &str) -> Option<String> {
    if origin(location).is_some() {
        return Some(location.to_string());
    }
    let base_origin = origin(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &base[..base.find("://")?];
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{base_origin}{location}"));
    }
    let path = &base[base_origin.len()..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = path.rfind('/').map_or("", |i| &path[..=i]);
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{base_origin}{dir}{location}"))
}

/// Percent-encodes a path (keeps `/` and unreserved characters).
pub(crate) fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            origin("https://huggingface.co/a/b"),
            Some("https://huggingface.co")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("ftp://x"), None);
        assert_eq!(origin("http://"), None);
        assert_eq!(
            join_url("https://hf.co/a/resolve/main/x", "/b/resolve/main/x").as_deref(),
            Some("https://hf.co/b/resolve/main/x")
        );
        assert_eq!(
            join_url("https://hf.co/a/b", "https://cdn.hf.co/z?sig=1").as_deref(),
            Some("https://cdn.hf.co/z?sig=1")
        );
        assert_eq!(
            join_url("https://hf.co/a/b", "//cdn/z").as_deref(),
            Some("https://cdn/z")
        );
        assert_eq!(
            join_url("https://hf.co/a/b?q", "c").as_deref(),
            Some("https://hf.co/a/c")
        );
        assert_eq!(encode_path("unet/a b.json"), "unet/a%20b.json");
    }

    #[test]
    fn headers() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        let m = FileMeta {
            commit: "c".into(),
            etag: "A".repeat(64),
            size: None,
        };
        assert_eq!(m.sha256(), Some("a".repeat(64)));
        let m = FileMeta {
            commit: "c".into(),
            etag: "a".repeat(40),
            size: None,
        };
        assert_eq!(m.sha256(), None);
    }
}
