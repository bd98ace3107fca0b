//! Reading a tokenizer folder as transformers 5.24 does for `BertTokenizer` (see the parent
//! module's docs): the vocabulary, the normalizer flags and the added tokens in the order
//! transformers adds them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{AddedToken, Normalizer};
use crate::error::CaptionError;

/// The named special tokens, in transformers' `SPECIAL_TOKENS_ATTRIBUTES` order.
const NAMED: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// What a tokenizer folder says, resolved.
pub(super) struct Settings {
    /// `vocab.txt`.
    pub vocab_path: PathBuf,
    /// The WordPiece vocabulary: id -> token.
    pub vocab: Vec<String>,
    /// The WordPiece vocabulary: token -> id.
    pub vocab_ids: HashMap<String, i64>,
    /// The added tokens, in the order transformers adds them: the recorded ones (by id), then
    /// the named and extra special tokens not among them (named ones always special).
    pub to_add: Vec<AddedToken>,
    /// The named special tokens: (name, e.g. `cls_token`; token).
    pub named: Vec<(String, String)>,
    /// The extra special tokens (`extra_special_tokens` / `additional_special_tokens`).
    pub extra: Vec<String>,
    /// `do_lower_case`, `strip_accents` (null: as do_lower_case), `tokenize_chinese_chars`.
    pub normalizer: Normalizer,
    /// `clean_up_tokenization_spaces` (default false in transformers 5).
    pub clean_up_tokenization_spaces: bool,
    /// `split_special_tokens` (default false): special tokens in the text are not matched.
    pub split_special_tokens: bool,
    /// `model_max_length` when it is an integer.
    pub model_max_length: Option<u64>,
}

/// A [`CaptionError::Tokenizer`] naming `path`.
pub(super) fn error(path: &Path, message: impl Into<String>) -> CaptionError {
    CaptionError::Tokenizer {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A JSON object with its keys in file order (as Python's `json.load` keeps them); a key that
/// appears twice keeps its first position and its last value.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Ordered(Vec::new());
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    out.set(key, value);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Ordered {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn set(&mut self, key: String, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// A boolean setting: absent or null -> `default`.
    fn flag(&self, key: &str, default: bool, path: &Path) -> Result<bool, CaptionError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(error(
                path,
                format!("`{key}` must be true or false, found {v}"),
            )),
        }
    }
}

/// Python's truth value of a config value (absent: false).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// Reads a JSON object file; `Ok(None)` when the file does not exist.
fn read_json(path: &Path) -> Result<Option<Ordered>, CaptionError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(path, format!("cannot read: {e}"))),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| error(path, format!("not a JSON object: {e}")))
}

/// An `AddedToken` from a config value: a string (with the given defaults) or an object with
/// `content` and optional flags (`normalized` defaults to `!special`, as tokenizers does).
fn added_token(
    v: &Value,
    special: bool,
    path: &Path,
    key: &str,
) -> Result<AddedToken, CaptionError> {
    match v {
        Value::String(s) => Ok(AddedToken {
            content: s.clone(),
            special,
            normalized: !special,
            lstrip: false,
            rstrip: false,
            single_word: false,
        }),
        Value::Object(o) => {
            let content = o.get("content").and_then(Value::as_str).ok_or_else(|| {
                error(
                    path,
                    format!("`{key}`: an added token needs a string `content`, found {v}"),
                )
            })?;
            let flag = |name: &str, default: bool| match o.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(error(
                    path,
                    format!("`{key}.{name}` must be true or false, found {other}"),
                )),
            };
            let special = flag("special", special)?;
            Ok(AddedToken {
                content: content.to_string(),
                special,
                normalized: flag("normalized", !special)?,
                lstrip: flag("lstrip", false)?,
                rstrip: flag("rstrip", false)?,
                single_word: flag("single_word", false)?,
            })
        }
        other => Err(error(
            path,
            format!("`{key}` must be a token string or an added-token object, found {other}"),
        )),
    }
}

/// `vocab.txt`: one token per line (trailing whitespace removed, as tokenizers reads it).
fn read_vocab(path: &Path) -> Result<Vec<String>, CaptionError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| error(path, format!("not UTF-8: {e}")))?;
    let vocab: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    if vocab.is_empty() {
        return Err(error(path, "the vocabulary is empty"));
    }
    if i64::try_from(vocab.len()).is_err() {
        return Err(error(path, "the vocabulary is too large"));
    }
    Ok(vocab)
}

/// Reads the folder (see the parent module's docs).
pub(super) fn load(dir: &Path) -> Result<Settings, CaptionError> {
    let vocab_path = dir.join("vocab.txt");
    let vocab = read_vocab(&vocab_path)?;
    let mut vocab_ids = HashMap::with_capacity(vocab.len());
    for (i, token) in vocab.iter().enumerate() {
        if let Some(first) = vocab_ids.insert(token.clone(), i as i64) {
            return Err(error(
                &vocab_path,
                format!(
                    "token {token:?} appears on lines {} and {}",
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    let config_path = dir.join("tokenizer_config.json");
    let mut config = read_json(&config_path)?.unwrap_or(Ordered(Vec::new()));
    let cp = config_path.as_path();
    if !truthy(config.get("extra_special_tokens"))
        && let Some(v) = config.remove("additional_special_tokens")
    {
        config.set("extra_special_tokens".into(), v);
    }
    // Model-specific named tokens: other `*_token` keys, added-token objects then strings
    // (the order transformers' PreTrainedTokenizerBase.__init__ merges them in).
    let other = |k: &String| k.ends_with("_token") && !NAMED.contains(&k.as_str());
    let is_added = |v: &Value| v.get("__type").and_then(Value::as_str) == Some("AddedToken");
    let mut model_specific: Vec<(String, Value)> = config
        .0
        .iter()
        .filter(|(k, v)| other(k) && is_added(v))
        .chain(config.0.iter().filter(|(k, v)| other(k) && v.is_string()))
        .cloned()
        .collect();
    if let Some(Value::Object(o)) = config.get("extra_special_tokens") {
        model_specific.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    // Added tokens recorded with ids: the config's added_tokens_decoder, or the legacy files.
    let mut recorded: Vec<(i64, AddedToken)> = Vec::new();
    let mut has_extra = config.get("extra_special_tokens").is_some();
    let mut extra_values: Vec<Value> = match config.get("extra_special_tokens") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) | Some(Value::Object(_)) => Vec::new(),
        Some(v) => {
            return Err(error(
                cp,
                format!("`extra_special_tokens` must be a list, found {v}"),
            ));
        }
    };
    if let Some(decoder) = config.get("added_tokens_decoder") {
        let Value::Object(o) = decoder else {
            return Err(error(
                cp,
                "`added_tokens_decoder` must be an object id -> token",
            ));
        };
        for (id, token) in o {
            let id: i64 = id.parse().map_err(|_| {
                error(
                    cp,
                    format!("`added_tokens_decoder` key {id:?} is not an integer id"),
                )
            })?;
            recorded.push((id, added_token(token, false, cp, "added_tokens_decoder")?));
        }
    } else {
        let map_path = dir.join("special_tokens_map.json");
        if let Some(map) = read_json(&map_path)? {
            for (key, value) in map.0 {
                if key == "extra_special_tokens" {
                    let Value::Array(list) = value else { continue };
                    has_extra = true;
                    for v in list {
                        if !extra_values.contains(&v) {
                            extra_values.push(v);
                        }
                    }
                } else {
                    config.set(key, value);
                }
            }
        }
        // added_tokens.json's special tokens: the named ones and `extra_special_tokens` (not a
        // map's `additional_special_tokens`, which only become the extra tokens below).
        let mut specials: HashSet<String> = NAMED
            .iter()
            .filter_map(|k| config.get(k).and_then(token_content))
            .collect();
        specials.extend(extra_values.iter().filter_map(token_content));
        if !has_extra && let Some(Value::Array(list)) = config.get("additional_special_tokens") {
            extra_values = list.clone();
        }
        let added_path = dir.join("added_tokens.json");
        if let Some(added) = read_json(&added_path)? {
            for (content, id) in added.0 {
                let id = id.as_i64().ok_or_else(|| {
                    error(
                        &added_path,
                        format!("the id of {content:?} is not an integer: {id}"),
                    )
                })?;
                let special = specials.contains(&content);
                recorded.retain(|(i, _)| *i != id);
                recorded.push((
                    id,
                    added_token(&Value::String(content), special, &added_path, "")?,
                ));
            }
        }
        let json_path = dir.join("tokenizer.json");
        if let Some(json) = read_json(&json_path)? {
            let list = match json.get("added_tokens") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list.clone(),
                Some(v) => {
                    return Err(error(
                        &json_path,
                        format!("`added_tokens` must be a list, found {v}"),
                    ));
                }
            };
            for token in &list {
                let id = token.get("id").and_then(Value::as_i64).ok_or_else(|| {
                    error(
                        &json_path,
                        format!("an entry of `added_tokens` has no integer `id`: {token}"),
                    )
                })?;
                recorded.retain(|(i, _)| *i != id);
                recorded.push((id, added_token(token, false, &json_path, "added_tokens")?));
            }
        }
    }
    recorded.sort_by_key(|(id, _)| *id);

    // Named special tokens (defaults of transformers' BertTokenizer), then model-specific.
    let defaults = [
        None,
        None,
        Some("[UNK]"),
        Some("[SEP]"),
        Some("[PAD]"),
        Some("[CLS]"),
        Some("[MASK]"),
    ];
    let mut named_tokens: Vec<(String, AddedToken)> = Vec::new();
    for (key, default) in NAMED.iter().zip(defaults) {
        let token = match config.get(key) {
            None => default.map(AddedToken::special),
            Some(Value::Null) => None,
            Some(v) => Some(added_token(v, true, cp, key)?),
        };
        if let Some(mut token) = token {
            // A named token recorded in the added tokens takes that entry's flags.
            if let Some((_, rec)) = recorded.iter().find(|(_, t)| t.content == token.content) {
                token = rec.clone();
            }
            named_tokens.push((key.to_string(), token));
        }
    }
    for (key, v) in &model_specific {
        named_tokens.push((key.clone(), added_token(v, true, cp, key)?));
    }
    let extra_tokens: Vec<AddedToken> = extra_values
        .iter()
        .map(|v| added_token(v, true, cp, "extra_special_tokens"))
        .collect::<Result<_, _>>()?;

    let normalizer = Normalizer {
        lowercase: config.flag("do_lower_case", true, cp)?,
        strip_accents: match config.get("strip_accents") {
            None | Some(Value::Null) => config.flag("do_lower_case", true, cp)?,
            Some(_) => config.flag("strip_accents", false, cp)?,
        },
        chinese_chars: config.flag("tokenize_chinese_chars", true, cp)?,
    };
    let model_max_length = match config.get("model_max_length") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(v) => {
            return Err(error(
                cp,
                format!("`model_max_length` must be a number, found {v}"),
            ));
        }
    };

    // As TokenizersBackend.__init__: the recorded tokens, then named and extra special tokens
    // not among them; a named token is special even when recorded otherwise.
    let named_contents: HashSet<&str> = named_tokens
        .iter()
        .map(|(_, t)| t.content.as_str())
        .collect();
    let mut to_add: Vec<AddedToken> = recorded.iter().map(|(_, t)| t.clone()).collect();
    for token in named_tokens
        .iter()
        .map(|(_, t)| t)
        .chain(extra_tokens.iter())
    {
        if !to_add.iter().any(|t| t.content == token.content) {
            to_add.push(token.clone());
        }
    }
    for token in &mut to_add {
        if named_contents.contains(token.content.as_str()) {
            token.special = true;
        }
    }
    Ok(Settings {
        vocab_path,
        vocab,
        vocab_ids,
        to_add,
        named: named_tokens
            .into_iter()
            .map(|(k, t)| (k, t.content))
            .collect(),
        extra: extra_tokens.into_iter().map(|t| t.content).collect(),
        normalizer,
        clean_up_tokenization_spaces: config.flag("clean_up_tokenization_spaces", false, cp)?,
        split_special_tokens: config.flag("split_special_tokens", false, cp)?,
        model_max_length,
    })
}

/// The string content of a special-token config value (a string or an added-token object).
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}
