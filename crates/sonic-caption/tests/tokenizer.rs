//! `BertTokenizer` against transformers 5.24's BlipProcessor tokenizer: the cases of
//! tests/data/bert_tokenizer_cases.json (made by tools/fixtures/bert_tokenizer_cases.py) on
//! tests-data/blip-tiny, tests-data/blip-variants/* and the inline tokenizer folders stored in
//! the JSON, compared exactly; and typed errors for bad files and ids.

use serde_json::Value;
use sonic_caption::{BertTokenizer, CaptionError};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cases() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bert_tokenizer_cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// The tokenizer of a case: its folder, or its files written to a temporary folder.
fn load(case: &Value, tmp: &Path) -> BertTokenizer {
    match case["dir"].as_str() {
        Some(dir) => BertTokenizer::from_dir(root().join(dir)).unwrap(),
        None => {
            let dir = tmp.join(case["name"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in case["files"].as_object().unwrap() {
                std::fs::write(dir.join(name), text.as_str().unwrap()).unwrap();
            }
            BertTokenizer::from_dir(&dir).unwrap()
        }
    }
}

#[test]
fn encode_and_decode_equal_transformers() {
    let cases = cases();
    let strings: Vec<(&str, &str)> = cases["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_str().unwrap(), s[1].as_str().unwrap()))
        .collect();
    let tokenizers = cases["tokenizers"].as_array().unwrap();
    assert!(tokenizers.len() >= 11 && strings.len() >= 30);
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut encodes, mut decodes) = (0, 0);
    for case in tokenizers {
        let name = case["name"].as_str().unwrap();
        let tok = load(case, tmp.path());
        assert_eq!(
            tok.vocab_size() as u64,
            case["vocab_size"].as_u64().unwrap(),
            "{name}"
        );
        for (key, id) in case["special_ids"].as_object().unwrap() {
            assert_eq!(
                tok.special_token_id(key),
                id.as_i64(),
                "{name}: {key}_token_id"
            );
        }
        assert_eq!(
            tok.cls_token_id(),
            case["special_ids"]["cls"].as_i64().unwrap()
        );
        assert_eq!(
            tok.sep_token_id(),
            case["special_ids"]["sep"].as_i64().unwrap()
        );
        assert_eq!(tok.pad_token_id(), case["special_ids"]["pad"].as_i64());
        assert_eq!(tok.bos_token_id(), case["special_ids"]["bos"].as_i64());
        assert_eq!(
            tok.all_special_ids(),
            ids(&case["all_special_ids"]),
            "{name}"
        );
        assert_eq!(
            tok.model_max_length(),
            case["model_max_length"].as_u64(),
            "{name}"
        );

        let expected = case["encode"].as_array().unwrap();
        assert_eq!(expected.len(), strings.len());
        for ((id, text), want) in strings.iter().zip(expected) {
            let got = tok.encode(text).unwrap();
            encodes += 1;
            if got != ids(want) {
                failures.push(format!("{name} encode {id} {text:?}: {got:?} != {want}"));
            }
        }
        for d in case["decode"].as_array().unwrap() {
            let row = ids(&d["ids"]);
            let skip = d["skip_special_tokens"].as_bool().unwrap();
            let got = tok.decode(&row, skip).unwrap();
            decodes += 1;
            if got != d["text"].as_str().unwrap() {
                failures.push(format!(
                    "{name} decode {row:?} skip {skip}: {got:?} != {}",
                    d["text"]
                ));
            }
        }
        // transformers drops unknown ids silently (or overflows on negative ones): an error here.
        for d in case["decode_unknown"].as_array().unwrap() {
            let row = ids(&d["ids"]);
            match tok.decode(&row, true) {
                Err(CaptionError::TokenOutOfRange { id, vocab }) => {
                    assert!(id < 0 || id >= vocab as i64, "{name}: {id} in 0..{vocab}");
                    assert_eq!(vocab, tok.vocab_size());
                }
                other => panic!("{name}: decode {row:?} gave {other:?}"),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        encodes >= 300 && decodes >= 500,
        "{encodes} encodes, {decodes} decodes"
    );
}

#[test]
fn blip_tiny_round_trip_and_accessors() {
    let tok = BertTokenizer::from_dir(root().join("tests-data/blip-tiny")).unwrap();
    let ids = tok.encode("A picture of two dogs.").unwrap();
    assert_eq!(ids.first(), Some(&tok.cls_token_id()));
    assert_eq!(ids.last(), Some(&tok.sep_token_id()));
    assert_eq!(tok.decode(&ids, true).unwrap(), "a picture of two dogs.");
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "[CLS] a picture of two dogs. [SEP]"
    );
    let bos = tok.bos_token_id().unwrap();
    assert_eq!(tok.id_to_token(bos), Some("[DEC]"));
    assert_eq!(tok.token_to_id("[ENC]"), Some(bos + 1));
    assert!(tok.is_special_id(bos) && !tok.is_special_id(ids[1]));
    assert_eq!(tok.vocab_size() as i64, bos + 2);
    let added: Vec<(String, i64)> = tok
        .added_tokens()
        .map(|(t, id)| (t.content.clone(), id))
        .collect();
    assert!(added.contains(&("[DEC]".to_string(), bos)), "{added:?}");
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn tokenizer_error(result: Result<BertTokenizer, CaptionError>) -> (PathBuf, String) {
    match result {
        Err(CaptionError::Tokenizer { path, message }) => (path, message),
        other => panic!("expected a tokenizer error, got {other:?}"),
    }
}

#[test]
fn bad_files_are_typed_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (path, _) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(path.ends_with("vocab.txt"), "{path:?}");

    write(dir, "vocab.txt", "");
    let (path, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(
        path.ends_with("vocab.txt") && message.contains("empty"),
        "{message}"
    );

    write(
        dir,
        "vocab.txt",
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n",
    );
    let (path, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(
        path.ends_with("vocab.txt") && message.contains("lines 6 and 7"),
        "{message}"
    );

    std::fs::write(dir.join("vocab.txt"), [0x5b, 0xff, 0x0a]).unwrap();
    let (path, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(
        path.ends_with("vocab.txt") && message.contains("UTF-8"),
        "{message}"
    );

    write(
        dir,
        "vocab.txt",
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n",
    );
    write(dir, "tokenizer_config.json", "{\"do_lower_case\": true,");
    let (path, _) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(path.ends_with("tokenizer_config.json"), "{path:?}");

    write(dir, "tokenizer_config.json", "{\"do_lower_case\": \"yes\"}");
    let (path, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(
        path.ends_with("tokenizer_config.json") && message.contains("do_lower_case"),
        "{message}"
    );

    write(
        dir,
        "tokenizer_config.json",
        "{\"added_tokens_decoder\": {\"x\": {\"content\": \"a\"}}}",
    );
    let (_, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(message.contains("added_tokens_decoder"), "{message}");

    write(dir, "tokenizer_config.json", "{\"bos_token\": 5}");
    let (_, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(message.contains("bos_token"), "{message}");

    write(dir, "tokenizer_config.json", "{}");
    write(dir, "special_tokens_map.json", "[1, 2]");
    let (path, _) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(path.ends_with("special_tokens_map.json"), "{path:?}");
    std::fs::remove_file(dir.join("special_tokens_map.json")).unwrap();

    write(
        dir,
        "tokenizer.json",
        "{\"added_tokens\": [{\"content\": \"[DEC]\"}]}",
    );
    let (path, message) = tokenizer_error(BertTokenizer::from_dir(dir));
    assert!(
        path.ends_with("tokenizer.json") && message.contains("id"),
        "{message}"
    );
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();

    // Defaults without a config: uncased BERT, specials from the vocabulary.
    std::fs::remove_file(dir.join("tokenizer_config.json")).unwrap();
    let tok = BertTokenizer::from_dir(dir).unwrap();
    assert_eq!(tok.encode("Hello wörld").unwrap(), vec![2, 5, 1, 3]);
    assert_eq!(tok.bos_token_id(), None);
    for bad in [-1, 6, i64::MAX] {
        assert!(matches!(
            tok.decode(&[2, bad], false),
            Err(CaptionError::TokenOutOfRange { id, vocab: 6 }) if id == bad
        ));
    }
}

#[test]
fn a_vocabulary_without_the_unknown_token_fails_only_when_it_is_needed() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "vocab.txt", "[PAD]\n[CLS]\n[SEP]\nhello\n##s\n");
    let tok = BertTokenizer::from_dir(tmp.path()).unwrap();
    // [UNK] and [MASK] are added after the vocabulary, as transformers does.
    assert_eq!(tok.special_token_id("unk"), Some(5));
    assert_eq!(tok.special_token_id("mask"), Some(6));
    assert_eq!(tok.encode("hellos HELLO").unwrap(), vec![1, 3, 4, 3, 2]);
    let (path, message) = match tok.encode("hello world") {
        Err(CaptionError::Tokenizer { path, message }) => (path, message),
        other => panic!("{other:?}"),
    };
    assert!(
        path.ends_with("vocab.txt") && message.contains("world"),
        "{message}"
    );
}
