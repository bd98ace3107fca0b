//! Hub downloads against a local stand-in for the Hugging Face hub (127.0.0.1 only): the tiny
//! fixtures served under the real repository names, LFS files behind a redirect to a "CDN"
//! path with `x-linked-size` / `x-linked-etag` / `x-repo-commit`, Range support, and knobs
//! to cut a transfer, corrupt a body, lie about a size, ignore Range and require a token.

use sonic_hub::test_server::{COMMIT, Entry, Hub, files_under, sha256};
use sonic_pipeline::hub::{
    self, Checkpoint, DownloadProgress, HubError, HubOptions, HubRepo, KnownRepos, Preset,
    ProgressState,
};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SD: &str = "CompVis/stable-diffusion-v1-4";
const CLAP: &str = "microsoft/msclap";
const SPACE: &str = "spaces/burakcanbiner/SonicDiffusion";

// ---------------------------------------------------------------------------------------------
// Files served.

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
