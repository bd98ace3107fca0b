//! Shared by the file-parser targets: the fuzzed bytes become a file (in /dev/shm when it
//! exists, one per process) with the extension the parser dispatches on, and every error must
//! be a typed one whose message names that file.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

/// A scratch folder for this process.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("sonic-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}

/// Writes `bytes` to `<scratch>/<name>` and returns the path.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, bytes).expect("scratch write");
    p
}

/// Asserts that an error message names the file (its name is enough).
pub fn names(msg: &str, name: &str) {
    assert!(msg.contains(name), "error does not name {name}: {msg}");
}
