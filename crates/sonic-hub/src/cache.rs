//! The Hugging Face cache layout, as `huggingface_hub` (Python) and `hf-hub` (Rust) share it:
//!
//! ```text
//! {cache}/models--CompVis--stable-diffusion-v1-4/
//!     refs/main                      the commit hash `main` resolved to
//!     blobs/{etag}                   file contents, named by etag (sha256 for LFS files)
//!     blobs/{etag}.incomplete        a partial transfer (resumed with a Range request)
//!     snapshots/{commit}/{file}      relative symlinks to ../../blobs/{etag}
//! {cache}/.locks/models--CompVis--stable-diffusion-v1-4/{etag}.lock
//! ```
//!
//! Folder names, blob and snapshot paths come from `hf_hub::{Cache, Repo}`; refs are written
//! atomically here (hf-hub's `create_ref` truncates in place) and the lock path follows
//! `huggingface_hub`, so a Python process and this one never write the same blob at once.

use super::HubRepo;
use super::error::HubError;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of a partial transfer next to its blob (`huggingface_hub`'s convention).
pub(crate) const INCOMPLETE_SUFFIX: &str = ".incomplete";

/// One repository's folder in the cache.
pub(crate) struct RepoCache {
    cache_dir: PathBuf,
    inner: hf_hub::CacheRepo,
    folder: String,
}

impl RepoCache {
    pub(crate) fn new(cache_dir: &Path, repo: &HubRepo) -> Self {
        let hf_repo = repo.to_hf_hub();
        let folder = hf_repo.folder_name();
        let inner = hf_hub::Cache::new(cache_dir.to_path_buf()).repo(hf_repo);
        Self {
            cache_dir: cache_dir.to_path_buf(),
            inner,
            folder,
        }
    }

    fn root(&self) -> PathBuf {
        self.cache_dir.join(&self.folder)
    }

    /// The commit a revision resolves to in the cache: the revision itself when it is a
    /// commit hash, else the content of `refs/{revision}`.
    pub(crate) fn read_ref(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let text = fs::read_to_string(self.root().join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_safe_name(commit).then(|| commit.to_string())
    }

    /// Points `refs/{revision}` at `commit` (temp file + rename; nothing for commit hashes).
    pub(crate) fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit || is_commit_hash(revision) {
            return Ok(());
        }
        let path = self.root().join("refs").join(revision);
        if fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
            return Ok(());
        }
        write_atomic(&path, commit.as_bytes())
    }

    /// `snapshots/{commit}`.
    pub(crate) fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.inner.pointer_path(commit)
    }

    /// `blobs/{etag}`.
    pub(crate) fn blob_path(&self, etag: &str) -> PathBuf {
        self.inner.blob_path(etag)
    }

    /// `blobs/{etag}.incomplete`.
    pub(crate) fn part_path(&self, etag: &str) -> PathBuf {
        let mut p = self.blob_path(etag).into_os_string();
        p.push(INCOMPLETE_SUFFIX);
        PathBuf::from(p)
    }

    /// `{cache}/.locks/{folder}/{etag}.lock`.
    pub(crate) fn lock_path(&self, etag: &str) -> PathBuf {
        self.cache_dir
            .join(".locks")
            .join(&self.folder)
            .join(format!("{etag}.lock"))
    }

    /// Makes `snapshots/{commit}/{file}` point at `blobs/{etag}`: a relative symlink on Unix,
    /// else a hard link, else a copy (written under a temporary name, then renamed).
    pub(crate) fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        let pointer = self.snapshot_dir(commit).join(file);
        let parent = pointer.parent().unwrap_or(&pointer).to_path_buf();
        fs::create_dir_all(&parent).map_err(HubError::io(&parent))?;
        let blob = self.blob_path(etag);
        let tmp = temp_sibling(&pointer);
        let _ = fs::remove_file(&tmp);
        #[cfg(unix)]
        {
            let depth = Path::new(file).components().count();
            let mut target = PathBuf::new();
            for _ in 0..=depth {
                target.push("..");
            }
            target.push("blobs");
            target.push(etag);
            std::os::unix::fs::symlink(&target, &tmp).map_err(HubError::io(&tmp))?;
        }
        #[cfg(not(unix))]
        {
            if fs::hard_link(&blob, &tmp).is_err() {
                fs::copy(&blob, &tmp).map_err(HubError::io(&tmp))?;
            }
        }
        fs::rename(&tmp, &pointer).map_err(HubError::io(&pointer))?;
        debug_assert!(blob.exists());
        Ok(pointer)
    }
}

/// Whether `s` looks like a full git commit hash (40 hex digits).
pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a server-supplied name (etag, commit) is safe as one path component.
pub(crate) fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 160
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `file` is a plain relative path (`unet/config.json`): no root, no `.`/`..`, no
/// backslash, no empty component.
pub(crate) fn is_safe_file(file: &str) -> bool {
    !file.is_empty()
        && !file.contains('\\')
        && !file.starts_with('/')
        && file
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(HubError::io(parent))?;
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(HubError::Io {
            path: tmp,
            source: e,
        });
    }
    fs::rename(&tmp, path).map_err(HubError::io(path))
}

/// An exclusive lock on a lock file, released on drop.
pub(crate) struct FileLock {
    _file: fs::File,
}

impl FileLock {
    /// Takes the lock, waiting while another process (or thread) holds it.
    pub(crate) fn acquire(path: &Path) -> Result<Self, HubError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(HubError::io(parent))?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(HubError::io(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                tracing::info!(lock = %path.display(), "another download of this file is running; waiting");
                file.lock().map_err(HubError::io(path))?;
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(HubError::Io {
                    path: path.into(),
                    source: e,
                });
            }
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_checked() {
        assert!(is_safe_name("0123abcd"));
        assert!(is_safe_name("abc.def-1_2"));
        assert!(!is_safe_name(".."));
        assert!(!is_safe_name("../x"));
        assert!(!is_safe_name("a/b"));
        assert!(!is_safe_name(""));
        assert!(is_safe_file("unet/config.json"));
        assert!(is_safe_file("ckpts/landscape.pt"));
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a\\b", "a/"] {
            assert!(!is_safe_file(bad), "{bad}");
        }
        assert!(is_commit_hash(&"a".repeat(40)));
        assert!(!is_commit_hash("main"));
    }

    #[test]
    fn layout_matches_huggingface_hub() {
        let dir = Path::new("/c");
        let rc = RepoCache::new(dir, &HubRepo::space("burakcanbiner/SonicDiffusion"));
        assert_eq!(
            rc.root(),
            Path::new("/c/spaces--burakcanbiner--SonicDiffusion")
        );
        assert_eq!(
            rc.blob_path("e"),
            Path::new("/c/spaces--burakcanbiner--SonicDiffusion/blobs/e")
        );
        assert_eq!(
            rc.part_path("e"),
            Path::new("/c/spaces--burakcanbiner--SonicDiffusion/blobs/e.incomplete")
        );
        assert_eq!(
            rc.lock_path("e"),
            Path::new("/c/.locks/spaces--burakcanbiner--SonicDiffusion/e.lock")
        );
        let rc = RepoCache::new(dir, &HubRepo::model("CompVis/stable-diffusion-v1-4"));
        assert_eq!(
            rc.snapshot_dir("abc"),
            Path::new("/c/models--CompVis--stable-diffusion-v1-4/snapshots/abc")
        );
    }

    #[test]
    fn refs_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let rc = RepoCache::new(tmp.path(), &HubRepo::model("a/b"));
        assert_eq!(rc.read_ref("main"), None);
        rc.write_ref("main", "c0ffee").unwrap();
        assert_eq!(rc.read_ref("main").as_deref(), Some("c0ffee"));
        let blob = rc.blob_path("e1");
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, b"hello").unwrap();
        let p = rc.link("c0ffee", "unet/config.json", "e1").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        // Relinking (a stale pointer) replaces the pointer.
        let p = rc.link("c0ffee", "unet/config.json", "e1").unwrap();
        assert_eq!(fs::read(p).unwrap(), b"hello");
    }
}
