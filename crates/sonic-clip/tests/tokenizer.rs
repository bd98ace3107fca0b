//! The CLIP tokenizer against transformers' ids stored in the fixtures
//! (`<fixture>/reference/cases.json`, section `text_encoder[0]`).

use sonic_clip::tokenizer::{ClipTokenizer, ClipTokenizerError, TokenizerSource};
use sonic_core::fixtures::{TensorFile, fixtures_root};
use std::path::{Path, PathBuf};

const FIXTURES: [&str; 2] = ["sd15-tiny", "sd21-tiny"];

fn fixture(name: &str) -> PathBuf {
    let root = fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures not found: set $SONIC_FIXTURES or provide ../shared/fixtures");
    let dir = root.join(name);
    assert!(dir.is_dir(), "missing fixture {}", dir.display());
    dir
}

/// The prompts and transformers' `input_ids` (one row per prompt) of a fixture.
fn reference(name: &str) -> (Vec<String>, Vec<Vec<u32>>) {
    let dir = fixture(name).join("reference");
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&python_json_to_strict(&text)).unwrap();
    let case = &cases["text_encoder"][0];
    let prompts: Vec<String> = case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    let key = case["input_ids"].as_str().unwrap();
    let tensors = TensorFile::open(&dir.join("tensors.safetensors")).unwrap();
    let t = tensors.get(key).unwrap();
    assert_eq!(t.shape.len(), 2);
    assert_eq!(t.shape[0], prompts.len());
    let rows = t
        .data
        .chunks(t.shape[1])
        .map(|row| {
            row.iter()
                .map(|&v| {
                    assert!(v >= 0.0 && v.fract() == 0.0, "bad id {v}");
                    v as u32
                })
                .collect()
        })
        .collect();
    (prompts, rows)
}

/// Python's `json.dumps` writes bare `NaN` / `Infinity` / `-Infinity` (the scheduler configs
/// embedded in `cases.json` hold some); turns them into `null` outside strings.
fn python_json_to_strict(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if !in_string
            && let Some(lit) = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|lit| rest.starts_with(lit))
        {
            out.push_str("null");
            rest = &rest[lit.len()..];
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A copy of a fixture's tokenizer folder without `tokenizer.json`.
fn vocab_merges_copy(name: &str) -> tempfile::TempDir {
    let src = fixture(name).join("tokenizer");
    let tmp = tempfile::tempdir().unwrap();
    for f in ["vocab.json", "merges.txt", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

fn assert_matches_reference(tok: &ClipTokenizer, name: &str) {
    let (prompts, expected) = reference(name);
    for (prompt, want) in prompts.iter().zip(&expected) {
        let got = tok.encode(prompt).unwrap();
        assert_eq!(
            &got.ids,
            want,
            "{name} ({:?}): prompt {prompt:?}",
            tok.source()
        );
    }
    let batch = tok.encode_batch(&prompts).unwrap();
    let batch_ids: Vec<Vec<u32>> = batch.into_iter().map(|p| p.ids).collect();
    assert_eq!(batch_ids, expected, "{name}: encode_batch");
}

#[test]
fn tokenizer_json_matches_transformers() {
    for name in FIXTURES {
        let tok = ClipTokenizer::from_dir(fixture(name).join("tokenizer")).unwrap();
        assert_eq!(tok.source(), TokenizerSource::TokenizerJson);
        assert_matches_reference(&tok, name);
    }
}

#[test]
fn vocab_merges_fallback_matches_transformers() {
    for name in FIXTURES {
        let tmp = vocab_merges_copy(name);
        let tok = ClipTokenizer::from_dir(tmp.path()).unwrap();
        assert_eq!(tok.source(), TokenizerSource::VocabMerges);
        assert_matches_reference(&tok, name);
    }
}

#[test]
fn special_ids_follow_tokenizer_config() {
    for (name, pad) in [("sd15-tiny", 49407), ("sd21-tiny", 0)] {
        let json = ClipTokenizer::from_dir(fixture(name).join("tokenizer")).unwrap();
        let tmp = vocab_merges_copy(name);
        let fallback = ClipTokenizer::from_dir(tmp.path()).unwrap();
        for tok in [&json, &fallback] {
            assert_eq!(tok.max_length(), 77, "{name}");
            assert_eq!(tok.bos_id(), 49406, "{name}");
            assert_eq!(tok.eos_id(), 49407, "{name}");
            assert_eq!(tok.pad_id(), pad, "{name}");
            assert_eq!(tok.vocab_size(), 49408, "{name}");
        }
    }
}

#[test]
fn model_max_length_is_honoured() {
    let tmp = vocab_merges_copy("sd15-tiny");
    let cfg = tmp.path().join("tokenizer_config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    config["model_max_length"] = serde_json::json!(8);
    std::fs::write(&cfg, serde_json::to_vec(&config).unwrap()).unwrap();
    let tok = ClipTokenizer::from_dir(tmp.path()).unwrap();
    assert_eq!(tok.max_length(), 8);
    let p = tok
        .encode("a photograph of waves crashing on a rocky beach")
        .unwrap();
    assert_eq!(p.ids, [49406, 320, 8853, 539, 7882, 24991, 525, 49407]);
    assert!(p.truncated);
    assert_eq!(p.dropped_tokens, 3);
    let p = tok.encode("a beach").unwrap();
    assert_eq!(p.ids.len(), 8);
    assert!(!p.truncated);
}

#[test]
fn truncation_is_reported() {
    let tok = ClipTokenizer::from_dir(fixture("sd21-tiny").join("tokenizer")).unwrap();
    let (prompts, _) = reference("sd21-tiny");

    let short = tok.encode(&prompts[0]).unwrap();
    assert!(!short.truncated);
    assert_eq!(short.dropped_tokens, 0);
    assert_eq!(short.len, 13);
    assert_eq!(short.eos_index(), 12);
    assert_eq!(short.ids[short.eos_index()], tok.eos_id());
    let mask = short.attention_mask();
    assert_eq!(mask.iter().sum::<u32>(), 13);
    assert_eq!(mask.len(), 77);

    let empty = tok.encode("").unwrap();
    assert_eq!(empty.len, 2);
    assert!(!empty.truncated);

    let long = prompts.last().unwrap();
    let n = tok.prompt_tokens(long).unwrap().len();
    assert!(n > 75);
    let p = tok.encode(long).unwrap();
    assert!(p.truncated);
    assert_eq!(p.dropped_tokens, n - 75);
    assert_eq!(p.len, 77);
    assert_eq!(p.eos_index(), 76);
    assert_eq!(p.ids[76], tok.eos_id());
}

#[test]
fn batch_tensor_has_one_row_per_prompt() {
    let device = sonic_core::device::default_device().unwrap();
    let tok = ClipTokenizer::from_dir(fixture("sd15-tiny").join("tokenizer")).unwrap();
    let (prompts, expected) = reference("sd15-tiny");
    let t = tok.encode_batch_tensor(&prompts, &device).unwrap();
    assert_eq!(t.dims(), [prompts.len(), 77]);
    let values: Vec<i64> = t.into_data().convert::<i64>().try_to_vec().unwrap();
    let want: Vec<i64> = expected.iter().flatten().map(|&v| i64::from(v)).collect();
    assert_eq!(values, want);
    let one = tok.encode(&prompts[1]).unwrap().to_tensor(&device);
    assert_eq!(one.dims(), [1, 77]);
}

#[test]
fn defaults_without_tokenizer_config() {
    // SD 1.x: no config -> pad with eos; SD 2.x: tokenizer.json's own padding names "!".
    for (name, pad) in [("sd15-tiny", 49407), ("sd21-tiny", 0)] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(
            fixture(name).join("tokenizer/tokenizer.json"),
            tmp.path().join("tokenizer.json"),
        )
        .unwrap();
        let tok = ClipTokenizer::from_dir(tmp.path()).unwrap();
        assert_eq!(tok.max_length(), 77);
        assert_eq!(tok.pad_id(), pad, "{name}");
    }
}

#[test]
fn missing_folder_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-tokenizer");
    let err = ClipTokenizer::from_dir(&missing).unwrap_err();
    assert!(
        matches!(err, ClipTokenizerError::MissingDir { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-tokenizer"), "{err}");
}

#[test]
fn missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(err, ClipTokenizerError::MissingFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("vocab.json"), "{err}");

    std::fs::copy(
        fixture("sd15-tiny").join("tokenizer/vocab.json"),
        tmp.path().join("vocab.json"),
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(err, ClipTokenizerError::MissingFile { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("merges.txt"), "{err}");
}

#[test]
fn corrupt_tokenizer_json_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("tokenizer.json"),
        b"{\"version\": \"1.0\", \"model\": ",
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, ClipTokenizerError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    // Valid JSON, but not a tokenizer.
    std::fs::write(tmp.path().join("tokenizer.json"), b"{\"model\": 3}").unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, ClipTokenizerError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn corrupt_fallback_files_are_named() {
    let tmp = vocab_merges_copy("sd15-tiny");
    std::fs::write(tmp.path().join("vocab.json"), b"[1, 2").unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, ClipTokenizerError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("vocab.json"), "{err}");

    let tmp = vocab_merges_copy("sd15-tiny");
    std::fs::write(tmp.path().join("merges.txt"), "#version: 0.2\ni n\nzz\n").unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, ClipTokenizerError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("merges.txt"), "{err}");

    let tmp = vocab_merges_copy("sd15-tiny");
    std::fs::write(tmp.path().join("tokenizer_config.json"), "not json").unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, ClipTokenizerError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");

    let tmp = vocab_merges_copy("sd15-tiny");
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        r#"{"pad_token": "<|no-such-token|>"}"#,
    )
    .unwrap();
    let err = ClipTokenizer::from_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(err, ClipTokenizerError::UnknownToken { role: "pad", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("<|no-such-token|>"), "{err}");
}
