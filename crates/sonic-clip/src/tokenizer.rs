//! The CLIP tokenizer of Stable Diffusion, producing the same ids as transformers'
//! `CLIPTokenizer(prompt, padding="max_length", truncation=True)`.
//!
//! A diffusers `tokenizer/` folder is read by [`ClipTokenizer::from_dir`]:
//!
//! - `tokenizer.json` (the Hugging Face `tokenizers` serialization) when present;
//! - otherwise `vocab.json` + `merges.txt`, from which the CLIP byte-level BPE pipeline is
//!   rebuilt (NFC, whitespace collapsing, lower-casing, the CLIP pre-tokenizer regex, GPT-2
//!   byte-level mapping, `</w>` end-of-word suffix);
//! - `tokenizer_config.json` (optional) supplies `model_max_length` (77 for CLIP) and the
//!   bos / eos / pad / unk tokens. Stable Diffusion 1.x pads with `<|endoftext|>`,
//!   Stable Diffusion 2.x with `!` (id 0).
//!
//! Every prompt becomes `max_length` ids: `BOS`, at most `max_length - 2` prompt tokens, `EOS`,
//! then the pad id. Prompts that do not fit are cut (with a `tracing` warning) and
//! [`TokenizedPrompt::truncated`] is set.
//!
//! ```no_run
//! use sonic_clip::tokenizer::ClipTokenizer;
//! let tok = ClipTokenizer::from_dir("stable-diffusion-v1-5/tokenizer")?;
//! let prompt = tok.encode("a photograph of an astronaut riding a horse")?;
//! assert_eq!(prompt.ids.len(), tok.max_length());
//! assert_eq!(prompt.ids[0], tok.bos_id());
//! # Ok::<(), sonic_clip::tokenizer::ClipTokenizerError>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::{Replace, ReplacePattern};
use tokenizers::normalizers::{Lowercase, NFC, NormalizerWrapper, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// The serialized tokenizer file of the `tokenizers` library.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// The BPE vocabulary (token -> id), used when [`TOKENIZER_JSON`] is absent.
pub const VOCAB_JSON: &str = "vocab.json";
/// The BPE merge rules, used when [`TOKENIZER_JSON`] is absent.
pub const MERGES_TXT: &str = "merges.txt";
/// The transformers tokenizer settings (max length, special tokens); optional.
pub const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";

/// CLIP's context length, used when `tokenizer_config.json` gives none.
pub const DEFAULT_MAX_LENGTH: usize = 77;
/// CLIP's begin-of-text token.
pub const DEFAULT_BOS_TOKEN: &str = "<|startoftext|>";
/// CLIP's end-of-text token (also the unknown and, for SD 1.x, the padding token).
pub const DEFAULT_EOS_TOKEN: &str = "<|endoftext|>";

/// The regex CLIP splits normalized text with before the byte-level BPE.
const CLIP_PRETOKENIZER_REGEX: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A `model_max_length` above this is transformers' "no limit" sentinel (`int(1e30)`).
const MAX_SENSIBLE_LENGTH: u64 = 1_000_000;

/// What can go wrong loading a CLIP tokenizer or encoding a prompt.
#[derive(Debug, thiserror::Error)]
pub enum ClipTokenizerError {
    /// The tokenizer folder does not exist or is not a folder.
    #[error("tokenizer folder {} does not exist or is not a folder", path.display())]
    MissingDir {
        /// The folder that was asked for.
        path: PathBuf,
    },
    /// A file the tokenizer needs is missing (the folder needs `tokenizer.json`, or
    /// `vocab.json` and `merges.txt`).
    #[error(
        "missing {} (a CLIP tokenizer folder needs tokenizer.json, or vocab.json and merges.txt)",
        path.display()
    )]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is corrupt: invalid JSON, an unexpected structure, or a malformed merge line.
    #[error("cannot parse {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A setting of `tokenizer_config.json` (or the tokenizer built from the files) is invalid.
    #[error("invalid tokenizer setting in {}: {message}", path.display())]
    Config {
        /// The file holding the setting.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A special token (bos, eos, pad, unk) is not in the vocabulary.
    #[error("the {role} token {token:?} is not in the vocabulary of {}", path.display())]
    UnknownToken {
        /// Which special token: "bos", "eos", "pad" or "unk".
        role: &'static str,
        /// Its text.
        token: String,
        /// The folder of the tokenizer.
        path: PathBuf,
    },
    /// The `tokenizers` library failed to encode a prompt.
    #[error("cannot tokenize prompt {prompt:?}: {message}")]
    Encode {
        /// The prompt (cut to its first 80 characters).
        prompt: String,
        /// The library's message.
        message: String,
    },
}

/// The result type of this module.
pub type Result<T> = std::result::Result<T, ClipTokenizerError>;

/// Which files a [`ClipTokenizer`] was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerSource {
    /// `tokenizer.json`.
    TokenizerJson,
    /// `vocab.json` + `merges.txt` (no `tokenizer.json` in the folder).
    VocabMerges,
}

/// One prompt turned into CLIP input ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedPrompt {
    /// Exactly [`ClipTokenizer::max_length`] ids: BOS, the prompt's tokens, EOS, then padding.
    pub ids: Vec<u32>,
    /// How many ids are real (BOS + prompt tokens + EOS), i.e. before the padding.
    pub len: usize,
    /// Whether prompt tokens were dropped to fit [`ClipTokenizer::max_length`].
    pub truncated: bool,
    /// How many prompt tokens were dropped (0 unless `truncated`).
    pub dropped_tokens: usize,
}

impl TokenizedPrompt {
    /// The position of the EOS token (`len - 1`), where CLIP's pooled output is taken.
    pub fn eos_index(&self) -> usize {
        self.len.saturating_sub(1)
    }

    /// The attention mask: 1 for the first [`len`](Self::len) positions, 0 for padding.
    pub fn attention_mask(&self) -> Vec<u32> {
        (0..self.ids.len())
            .map(|i| u32::from(i < self.len))
            .collect()
    }

    /// The ids as `i64` (the dtype transformers returns and Burn's int tensors accept).
    pub fn ids_i64(&self) -> Vec<i64> {
        self.ids.iter().map(|&id| i64::from(id)).collect()
    }

    /// The ids as a `[1, max_length]` int tensor on `device`, ready for the text encoder.
    pub fn to_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(TensorData::new(self.ids_i64(), [1, self.ids.len()]), device)
    }
}

/// The special tokens and length read from `tokenizer_config.json` (or defaulted).
#[derive(Debug, Clone)]
struct SpecialTokens {
    max_length: usize,
    bos: String,
    eos: String,
    /// `None` when neither the config nor `tokenizer.json` names one: the eos token is used.
    pad: Option<String>,
    unk: String,
}

/// Stable Diffusion's CLIP tokenizer (transformers' `CLIPTokenizer` with
/// `padding="max_length", truncation=True`).
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    source: TokenizerSource,
    max_length: usize,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    /// `tokenizer.get_vocab_size(true)`, which copies the whole vocabulary: computed once.
    vocab_size: usize,
}

impl ClipTokenizer {
    /// Loads the tokenizer of a diffusers `tokenizer/` folder: `tokenizer.json` when present,
    /// else `vocab.json` + `merges.txt`; `tokenizer_config.json` (optional) sets the maximum
    /// length and the special tokens.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ClipTokenizerError::MissingDir {
                path: dir.to_path_buf(),
            });
        }
        let config_path = dir.join(TOKENIZER_CONFIG_JSON);
        let config = if config_path.is_file() {
            Some(read_json(&config_path)?)
        } else {
            None
        };

        let json_path = dir.join(TOKENIZER_JSON);
        let (mut tokenizer, source, json_pad) = if json_path.is_file() {
            let (tokenizer, json_pad) = load_tokenizer_json(&json_path)?;
            (tokenizer, TokenizerSource::TokenizerJson, json_pad)
        } else {
            let vocab_path = dir.join(VOCAB_JSON);
            let merges_path = dir.join(MERGES_TXT);
            for path in [&vocab_path, &merges_path] {
                if !path.is_file() {
                    return Err(ClipTokenizerError::MissingFile { path: path.clone() });
                }
            }
            let unk = match &config {
                Some(c) => token_setting(c, "unk_token", &config_path)?,
                None => None,
            }
            .unwrap_or_else(|| DEFAULT_EOS_TOKEN.to_string());
            let tokenizer = build_bpe_tokenizer(&vocab_path, &merges_path, &unk)?;
            (tokenizer, TokenizerSource::VocabMerges, None)
        };

        let special = special_tokens(config.as_ref(), &config_path)?;
        let pad = special.pad.clone().or(json_pad);
        // Every special token must already be in the vocabulary: a new id would lie outside
        // the text encoder's embedding table.
        let id_of = |role: &'static str, token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| ClipTokenizerError::UnknownToken {
                    role,
                    token: token.to_string(),
                    path: dir.to_path_buf(),
                })
        };
        let bos_id = id_of("bos", &special.bos)?;
        let eos_id = id_of("eos", &special.eos)?;
        let pad_id = match &pad {
            Some(p) => id_of("pad", p)?,
            None => eos_id,
        };
        id_of("unk", &special.unk)?;

        // transformers registers the configured special tokens as (non-normalized) added
        // tokens: they are matched in the raw prompt and never split. For SD 2.x this makes
        // every "!" of a prompt the pad token (id 0), exactly as in Python. The ids stay the
        // vocabulary's, looked up above.
        let mut added: Vec<AddedToken> = Vec::new();
        for token in [&special.bos, &special.eos, &special.unk]
            .into_iter()
            .chain(pad.as_ref())
        {
            if !added.iter().any(|a| &a.content == token) {
                added.push(AddedToken::from(token.clone(), true));
            }
        }
        tokenizer.add_special_tokens(&added);

        let vocab_size = tokenizer.get_vocab_size(true);
        Ok(Self {
            vocab_size,
            tokenizer,
            source,
            max_length: special.max_length,
            bos_id,
            eos_id,
            pad_id,
        })
    }

    /// Tokenizes one prompt into exactly [`max_length`](Self::max_length) ids (BOS, at most
    /// `max_length - 2` tokens, EOS, padding). Longer prompts are cut, with a warning.
    pub fn encode(&self, prompt: &str) -> Result<TokenizedPrompt> {
        let tokens = self.prompt_tokens(prompt)?;
        let room = self.max_length - 2;
        let kept = tokens.len().min(room);
        let dropped = tokens.len() - kept;
        if dropped > 0 {
            tracing::warn!(
                dropped_tokens = dropped,
                max_length = self.max_length,
                "prompt is longer than CLIP's {}-token window: {} of its {} tokens were dropped",
                self.max_length,
                dropped,
                tokens.len()
            );
        }
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos_id);
        ids.extend_from_slice(&tokens[..kept]);
        ids.push(self.eos_id);
        let len = ids.len();
        ids.resize(self.max_length, self.pad_id);
        Ok(TokenizedPrompt {
            ids,
            len,
            truncated: dropped > 0,
            dropped_tokens: dropped,
        })
    }

    /// Tokenizes several prompts (see [`encode`](Self::encode)); every result has
    /// [`max_length`](Self::max_length) ids.
    pub fn encode_batch<S: AsRef<str>>(&self, prompts: &[S]) -> Result<Vec<TokenizedPrompt>> {
        prompts.iter().map(|p| self.encode(p.as_ref())).collect()
    }

    /// Tokenizes several prompts into one `[prompts.len(), max_length]` int tensor on
    /// `device` (see [`encode`](Self::encode)).
    pub fn encode_batch_tensor<S: AsRef<str>>(
        &self,
        prompts: &[S],
        device: &Device,
    ) -> Result<Tensor<2, Int>> {
        let encoded = self.encode_batch(prompts)?;
        let ids: Vec<i64> = encoded.iter().flat_map(TokenizedPrompt::ids_i64).collect();
        Ok(Tensor::from_data(
            TensorData::new(ids, [encoded.len(), self.max_length]),
            device,
        ))
    }

    /// The ids of a prompt's tokens without BOS, EOS, truncation or padding.
    pub fn prompt_tokens(&self, prompt: &str) -> Result<Vec<u32>> {
        let encoding =
            self.tokenizer
                .encode(prompt, false)
                .map_err(|e| ClipTokenizerError::Encode {
                    prompt: prompt.chars().take(80).collect(),
                    message: e.to_string(),
                })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The number of ids of every encoded prompt (`model_max_length`, 77 for CLIP).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id prompts are padded with (`<|endoftext|>` = 49407 for SD 1.x, `!` = 0 for SD 2.x).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of the end-of-text token (49407 for CLIP).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The id of the begin-of-text token (49406 for CLIP).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The vocabulary size, added tokens included (49408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Which files the tokenizer was built from.
    pub fn source(&self) -> TokenizerSource {
        self.source
    }
}

/// Reads a file, mapping a missing file and other I/O failures to typed errors.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ClipTokenizerError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            ClipTokenizerError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads and parses a JSON file, naming it in every error.
fn read_json(path: &Path) -> Result<Value> {
    let bytes = read_bytes(path)?;
    serde_json::from_slice(&bytes).map_err(|e| ClipTokenizerError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Loads `tokenizer.json` with its own truncation and padding switched off (this module does
/// both); also returns the pad token it names, if any.
fn load_tokenizer_json(path: &Path) -> Result<(Tokenizer, Option<String>)> {
    let value = read_json(path)?;
    let json_pad = value
        .get("padding")
        .and_then(|p| p.get("pad_token"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut tokenizer: Tokenizer =
        serde_json::from_value(value).map_err(|e| ClipTokenizerError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| ClipTokenizerError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    tokenizer.with_padding(None);
    Ok((tokenizer, json_pad))
}

/// Parses `merges.txt`: an optional `#version` header, then one `left right` pair a line.
fn read_merges(path: &Path) -> Result<Vec<(String, String)>> {
    let bytes = read_bytes(path)?;
    let text = String::from_utf8(bytes).map_err(|e| ClipTokenizerError::Parse {
        path: path.to_path_buf(),
        message: format!("not UTF-8: {e}"),
    })?;
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push((a.to_string(), b.to_string()))
            }
            _ => {
                return Err(ClipTokenizerError::Parse {
                    path: path.to_path_buf(),
                    message: format!("line {}: expected two tokens, found {line:?}", i + 1),
                });
            }
        }
    }
    Ok(merges)
}

/// Builds CLIP's byte-level BPE tokenizer from `vocab.json` + `merges.txt`, the same pipeline
/// transformers' converter writes into `tokenizer.json`.
fn build_bpe_tokenizer(vocab_path: &Path, merges_path: &Path, unk: &str) -> Result<Tokenizer> {
    let vocab_value = read_json(vocab_path)?;
    let vocab: HashMap<String, u32> =
        serde_json::from_value(vocab_value).map_err(|e| ClipTokenizerError::Parse {
            path: vocab_path.to_path_buf(),
            message: format!("expected an object of token -> id: {e}"),
        })?;
    let merges = read_merges(merges_path)?;
    let vocab: tokenizers::models::bpe::Vocab = vocab.into_iter().collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk.to_string())
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".to_string())
        .fuse_unk(false)
        .byte_fallback(false)
        .build()
        .map_err(|e| ClipTokenizerError::Parse {
            path: merges_path.to_path_buf(),
            message: format!("vocab.json and merges.txt do not form a BPE model: {e}"),
        })?;

    // The regexes are constants; a failure here is a bug, reported rather than panicking.
    let internal = |e: tokenizers::Error| ClipTokenizerError::Config {
        path: vocab_path.to_path_buf(),
        message: format!("building the CLIP pipeline failed: {e}"),
    };
    let normalizer = NormSequence::new(vec![
        NormalizerWrapper::NFC(NFC),
        NormalizerWrapper::Replace(
            Replace::new(ReplacePattern::Regex(r"\s+".to_string()), " ").map_err(internal)?,
        ),
        NormalizerWrapper::Lowercase(Lowercase),
    ]);
    let pre_tokenizer = PreSequence::new(vec![
        PreTokenizerWrapper::Split(
            Split::new(
                SplitPattern::Regex(CLIP_PRETOKENIZER_REGEX.to_string()),
                SplitDelimiterBehavior::Removed,
                true,
            )
            .map_err(internal)?,
        ),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_decoder(Some(ByteLevel::new(true, true, true)));
    Ok(tokenizer)
}

/// A special-token setting: either a string or an `{"content": ...}` object; `None` when
/// absent or null.
fn token_setting(config: &Value, key: &str, path: &Path) -> Result<Option<String>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(ClipTokenizerError::Config {
                path: path.to_path_buf(),
                message: format!("{key} is an object without a string \"content\""),
            }),
        },
        Some(other) => Err(ClipTokenizerError::Config {
            path: path.to_path_buf(),
            message: format!("{key} should be a string, found {other}"),
        }),
    }
}

/// Reads `model_max_length` and the special tokens, defaulting to CLIP's.
fn special_tokens(config: Option<&Value>, path: &Path) -> Result<SpecialTokens> {
    let Some(config) = config else {
        return Ok(SpecialTokens {
            max_length: DEFAULT_MAX_LENGTH,
            bos: DEFAULT_BOS_TOKEN.to_string(),
            eos: DEFAULT_EOS_TOKEN.to_string(),
            pad: None,
            unk: DEFAULT_EOS_TOKEN.to_string(),
        });
    };
    if !config.is_object() {
        return Err(ClipTokenizerError::Parse {
            path: path.to_path_buf(),
            message: "expected a JSON object".to_string(),
        });
    }
    let bad_length = |v: &Value| ClipTokenizerError::Config {
        path: path.to_path_buf(),
        message: format!("model_max_length must be an integer of at least 2, found {v}"),
    };
    let max_length = match config.get("model_max_length") {
        None | Some(Value::Null) => DEFAULT_MAX_LENGTH,
        Some(v @ Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) if u > MAX_SENSIBLE_LENGTH => DEFAULT_MAX_LENGTH,
            (Some(u), _) if u >= 2 => usize::try_from(u).map_err(|_| bad_length(v))?,
            (None, Some(f)) if f > MAX_SENSIBLE_LENGTH as f64 => DEFAULT_MAX_LENGTH,
            _ => return Err(bad_length(v)),
        },
        Some(v) => return Err(bad_length(v)),
    };
    let eos =
        token_setting(config, "eos_token", path)?.unwrap_or_else(|| DEFAULT_EOS_TOKEN.to_string());
    Ok(SpecialTokens {
        max_length,
        bos: token_setting(config, "bos_token", path)?
            .unwrap_or_else(|| DEFAULT_BOS_TOKEN.to_string()),
        pad: token_setting(config, "pad_token", path)?,
        unk: token_setting(config, "unk_token", path)?.unwrap_or_else(|| eos.clone()),
        eos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_defaults_and_overrides() {
        let p = Path::new("tokenizer_config.json");
        let s = special_tokens(None, p).unwrap();
        assert_eq!(s.max_length, 77);
        assert_eq!(s.pad, None);
        let c =
            json!({"model_max_length": 1e30, "pad_token": {"content": "!"}, "bos_token": "<s>"});
        let s = special_tokens(Some(&c), p).unwrap();
        assert_eq!(s.max_length, 77);
        assert_eq!(s.pad.as_deref(), Some("!"));
        assert_eq!(s.bos, "<s>");
        assert_eq!(s.unk, DEFAULT_EOS_TOKEN);
        let c = json!({"model_max_length": 1});
        assert!(matches!(
            special_tokens(Some(&c), p),
            Err(ClipTokenizerError::Config { .. })
        ));
        let c = json!({"model_max_length": 16});
        assert_eq!(special_tokens(Some(&c), p).unwrap().max_length, 16);
    }

    #[test]
    fn malformed_merges_line_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MERGES_TXT);
        std::fs::write(&path, "#version: 0.2\ni n\nbroken\n").unwrap();
        let err = read_merges(&path).unwrap_err();
        assert!(matches!(err, ClipTokenizerError::Parse { .. }));
        assert!(err.to_string().contains("merges.txt"));
        assert!(err.to_string().contains("line 3"));
        std::fs::write(&path, "#version: 0.2\ni n\nt h\n").unwrap();
        assert_eq!(read_merges(&path).unwrap().len(), 2);
    }
}
