//! The BERT WordPiece tokenizer of BLIP's processor, equal to transformers 5.24's
//! `BlipProcessor(...).tokenizer` (`BertTokenizer`, the `tokenizers`-backed tokenizer: in 5.x
//! `BertTokenizerFast` is an alias of it and the only BERT tokenizer the auto classes load).
//!
//! Files read from a tokenizer folder (`Salesforce/blip-image-captioning-base`'s layout):
//! `vocab.txt` (required: one token per line, id = line index), `tokenizer_config.json`
//! (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`, the special tokens,
//! `extra_special_tokens` / `additional_special_tokens`, `added_tokens_decoder`,
//! `clean_up_tokenization_spaces`, `split_special_tokens`, `model_max_length`) and, as
//! transformers does when the config has no `added_tokens_decoder`, `special_tokens_map.json`,
//! `added_tokens.json` and the `added_tokens` list of `tokenizer.json` (transformers takes the
//! WordPiece vocabulary from `tokenizer.json` when there is one; `save_pretrained` writes the
//! same tokens to both). Added tokens that are not in the vocabulary (BLIP's `[DEC]` / `[ENC]`)
//! get the ids transformers gives them: the next free id, in the order of the recorded added
//! tokens (by id), the named special tokens (bos, eos, unk, sep, pad, cls, mask, then
//! model-specific `*_token` keys) and the extra special tokens. Named tokens are special;
//! extra ones too unless recorded otherwise.
//!
//! [`BertTokenizer::encode`]: `[CLS]` + tokens + `[SEP]`, where the text is first split around
//! the added tokens written in it (special tokens such as `[SEP]` are kept whole, matched
//! case-sensitively on the raw text, leftmost-longest), then each piece is normalized
//! (tokenizers' `BertNormalizer`: control characters, U+0000 and U+FFFD removed, whitespace ->
//! space, spaces around CJK ideographs, then NFD without nonspacing marks when accents are
//! stripped, then per-character lowercase), split on whitespace and around punctuation (ASCII
//! punctuation and the Unicode P* categories) and cut into WordPiece tokens (greedy
//! longest-match-first with `##` continuations; a word longer than 100 characters, or one
//! that cannot be covered, is `[UNK]`).
//!
//! [`BertTokenizer::decode`]: tokens joined with spaces, `##` continuations glued to the
//! previous token, each token cleaned as tokenizers' WordPiece decoder does (`" ."` -> `"."`,
//! `" ?"`, `" !"`, `" ,"`), then, when `clean_up_tokenization_spaces` is set,
//! transformers' `clean_up_tokenization` on the whole text (BLIP's configs leave it unset:
//! false in transformers 5). A normalized added token decodes as its normalized content (as
//! tokenizers 0.23 does). Unlike transformers, which drops unknown ids silently, an id outside
//! the tokenizer is an error: BLIP's `generate()` output starts with the BOS id (`[DEC]`), which
//! a folder whose tokenizer files lack `[DEC]` cannot decode; drop it before decoding.
//!
//! The Python tokenizer (`BertTokenizerLegacy`, not what BLIP loads) differs on a few inputs:
//! it NFC-composes the text first, lowercases with Python's `str.lower` (final sigma `ς`),
//! matches added tokens on the raw text only and always matches special tokens.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

use crate::error::CaptionError;

mod files;

use files::error;

/// The longest word (in characters) WordPiece splits; longer words are the unknown token
/// (`max_input_chars_per_word` of the WordPiece model transformers' `BertTokenizer` builds).
pub const MAX_INPUT_CHARS_PER_WORD: usize = 100;

/// The prefix of WordPiece continuation tokens.
pub const CONTINUATION_PREFIX: &str = "##";

/// A token added on top of the WordPiece vocabulary (transformers' / tokenizers' `AddedToken`):
/// matched in the text before normalization (or after it, when `normalized`), never split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// The token's text.
    pub content: String,
    /// A special token: skipped by `decode(.., skip_special_tokens = true)`.
    pub special: bool,
    /// Matched on the normalized text (against its normalized content) instead of the raw text.
    pub normalized: bool,
    /// The whitespace before a match belongs to it.
    pub lstrip: bool,
    /// The whitespace after a match belongs to it.
    pub rstrip: bool,
    /// Matched only when not preceded or followed by a word character.
    pub single_word: bool,
}

impl AddedToken {
    /// A special token matched on the raw text (how transformers adds a named special token).
    fn special(content: &str) -> Self {
        AddedToken {
            content: content.to_string(),
            special: true,
            normalized: false,
            lstrip: false,
            rstrip: false,
            single_word: false,
        }
    }
}

/// The text normalization of tokenizers' `BertNormalizer` (clean_text is always on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Normalizer {
    lowercase: bool,
    strip_accents: bool,
    chinese_chars: bool,
}

/// BERT's WordPiece tokenizer as BLIP's processor loads it (see the module docs).
#[derive(Debug, Clone)]
pub struct BertTokenizer {
    /// The WordPiece vocabulary: id -> token.
    vocab: Vec<String>,
    vocab_ids: HashMap<String, i64>,
    /// Added tokens, in the order they were added.
    added: Vec<Added>,
    added_ids: HashMap<String, i64>,
    added_by_id: HashMap<i64, usize>,
    /// Contents of the special added tokens (skipped when decoding with skip_special_tokens).
    special: HashSet<String>,
    /// The added tokens matched on the raw / the normalized text (see `patterns`).
    raw_patterns: Vec<usize>,
    normalized_patterns: Vec<usize>,
    /// Named special tokens (bos, eos, unk, sep, pad, cls, mask, model-specific): name -> token.
    named: Vec<(String, String)>,
    extra: Vec<String>,
    normalizer: Normalizer,
    clean_up_tokenization_spaces: bool,
    split_special_tokens: bool,
    model_max_length: Option<u64>,
    cls_id: i64,
    sep_id: i64,
    unk_token: Option<String>,
    vocab_path: PathBuf,
}

/// An added token with its id and its text: the content, or for a normalized token its
/// normalized content (what it matches in the normalized text, and what `decode` writes).
#[derive(Debug, Clone)]
struct Added {
    token: AddedToken,
    id: i64,
    text: String,
}

/// One piece of text split around added tokens.
enum Piece<'a> {
    Text(&'a str),
    Token(i64),
}

impl BertTokenizer {
    /// Loads the tokenizer of a BLIP (or BERT) folder: `vocab.txt` and the configs listed in
    /// the module docs. Missing `vocab.txt`, unreadable or invalid files and settings of the
    /// wrong type are [`CaptionError::Tokenizer`] errors naming the file (and key).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, CaptionError> {
        let settings = files::load(dir.as_ref())?;
        let mut tok = BertTokenizer {
            vocab: settings.vocab,
            vocab_ids: settings.vocab_ids,
            added: Vec::new(),
            added_ids: HashMap::new(),
            added_by_id: HashMap::new(),
            special: HashSet::new(),
            raw_patterns: Vec::new(),
            normalized_patterns: Vec::new(),
            named: settings.named,
            extra: settings.extra,
            normalizer: settings.normalizer,
            clean_up_tokenization_spaces: settings.clean_up_tokenization_spaces,
            split_special_tokens: settings.split_special_tokens,
            model_max_length: settings.model_max_length,
            cls_id: 2,
            sep_id: 3,
            unk_token: None,
            vocab_path: settings.vocab_path,
        };
        tok.add_tokens(&settings.to_add);
        tok.cls_id = tok.named_id("cls_token").unwrap_or(2);
        tok.sep_id = tok.named_id("sep_token").unwrap_or(3);
        tok.unk_token = tok.named_token("unk_token").map(str::to_string);
        tok.raw_patterns = tok.patterns(false);
        tok.normalized_patterns = tok.patterns(true);
        Ok(tok)
    }

    /// Adds `tokens` to the empty added vocabulary as tokenizers' (0.23)
    /// `AddedVocabulary::add_tokens` does: a token in the vocabulary keeps its id, a new one
    /// gets the next id after the vocabulary; a normalized token is matched, and decoded, as its
    /// normalized content; special tokens join the set `decode` skips.
    fn add_tokens(&mut self, tokens: &[AddedToken]) {
        let mut next_id = self.vocab.len() as i64;
        for token in tokens {
            if token.content.is_empty() || self.added_ids.contains_key(&token.content) {
                continue;
            }
            let id = match self.vocab_ids.get(&token.content) {
                Some(id) => *id,
                None => {
                    next_id += 1;
                    next_id - 1
                }
            };
            let text = if token.normalized {
                self.normalizer.normalize(&token.content)
            } else {
                token.content.clone()
            };
            if token.special {
                self.special.insert(token.content.clone());
            }
            self.added_ids.insert(token.content.clone(), id);
            self.added_by_id.insert(id, self.added.len());
            self.added.push(Added {
                token: token.clone(),
                id,
                text,
            });
        }
    }

    fn named_token(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, c)| c.as_str())
    }

    fn named_id(&self, name: &str) -> Option<i64> {
        self.named_token(name).and_then(|t| self.token_to_id(t))
    }

    /// The id of a token (added tokens first, then the vocabulary), if it has one.
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.added_ids
            .get(token)
            .or_else(|| self.vocab_ids.get(token))
            .copied()
    }

    /// The token of an id (added tokens first, then the vocabulary), if it has one.
    pub fn id_to_token(&self, id: i64) -> Option<&str> {
        if let Some(&i) = self.added_by_id.get(&id) {
            return Some(self.added[i].text.as_str());
        }
        usize::try_from(id)
            .ok()
            .and_then(|i| self.vocab.get(i))
            .map(String::as_str)
    }

    /// The number of tokens: the vocabulary plus the added tokens not in it (`len(tokenizer)`;
    /// ids are `0..vocab_size()`).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
            + self
                .added
                .iter()
                .filter(|a| !self.vocab_ids.contains_key(&a.token.content))
                .count()
    }

    /// The id of a named special token (`"cls"`, `"sep"`, `"pad"`, `"unk"`, `"mask"`, `"bos"`,
    /// `"eos"`, or a model-specific name such as `"image"` for `image_token`), as
    /// `tokenizer.<name>_token_id`: `None` when the tokenizer has no such token.
    pub fn special_token_id(&self, name: &str) -> Option<i64> {
        self.named_id(&format!("{name}_token"))
    }

    /// `[CLS]`'s id: the first id of every encoding.
    pub fn cls_token_id(&self) -> i64 {
        self.cls_id
    }

    /// `[SEP]`'s id: the last id of every encoding, and the token BLIP's captions end with.
    pub fn sep_token_id(&self) -> i64 {
        self.sep_id
    }

    /// The padding token's id, if any.
    pub fn pad_token_id(&self) -> Option<i64> {
        self.special_token_id("pad")
    }

    /// The BOS token's id, if any (BLIP: `[DEC]`, which starts every caption).
    pub fn bos_token_id(&self) -> Option<i64> {
        self.special_token_id("bos")
    }

    /// The ids of the named and extra special tokens, sorted (transformers' `all_special_ids`).
    pub fn all_special_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .named
            .iter()
            .map(|(_, c)| c)
            .chain(self.extra.iter())
            .filter_map(|c| self.token_to_id(c))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether `id` is a special token (what `decode(.., true)` skips).
    pub fn is_special_id(&self, id: i64) -> bool {
        self.id_to_token(id)
            .is_some_and(|t| self.special.contains(t))
    }

    /// The added tokens with their ids, in the order they were added.
    pub fn added_tokens(&self) -> impl Iterator<Item = (&AddedToken, i64)> {
        self.added.iter().map(|a| (&a.token, a.id))
    }

    /// `model_max_length` of the config (`None`: absent or not an integer). Informational:
    /// like `tokenizer(text)`, [`encode`](Self::encode) does not truncate.
    pub fn model_max_length(&self) -> Option<u64> {
        self.model_max_length
    }

    /// The ids of `text`: `[CLS]`, its tokens, `[SEP]` (`processor(text=text).input_ids`).
    /// Fails only when a word needs the unknown token and the vocabulary has none.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, CaptionError> {
        let mut ids = vec![self.cls_id];
        let raw = self.split_added(text, false);
        for piece in raw {
            match piece {
                Piece::Token(id) => ids.push(id),
                Piece::Text(t) => {
                    let normalized = self.normalizer.normalize(t);
                    for sub in self.split_added(&normalized, true) {
                        match sub {
                            Piece::Token(id) => ids.push(id),
                            Piece::Text(s) => {
                                for word in pre_tokenize(s) {
                                    self.word_piece(word, &mut ids)?;
                                }
                            }
                        }
                    }
                }
            }
        }
        ids.push(self.sep_id);
        Ok(ids)
    }

    /// Splits `text` around the added tokens (raw or normalized ones), as tokenizers'
    /// `AddedVocabulary::find_matches`: leftmost-longest non-overlapping matches, then
    /// single_word / split_special_tokens filters and lstrip / rstrip extensions.
    fn split_added<'a>(&self, text: &'a str, normalized: bool) -> Vec<Piece<'a>> {
        let patterns = if normalized {
            &self.normalized_patterns
        } else {
            &self.raw_patterns
        };
        if patterns.is_empty() {
            return vec![Piece::Text(text)];
        }
        let mut matches = Vec::new();
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            let found = patterns
                .iter()
                .find(|&&i| rest.starts_with(self.added[i].text.as_str()));
            if let Some(&i) = found {
                let len = self.added[i].text.len();
                matches.push((pos, pos + len, i));
                pos += len;
            } else {
                pos += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
        let mut pieces = Vec::new();
        let mut offset = 0;
        for (mut start, mut stop, i) in matches {
            let Added { token, id, .. } = &self.added[i];
            if self.split_special_tokens && self.special.contains(&token.content) {
                continue;
            }
            if token.single_word {
                let before = text[..start].chars().next_back().is_some_and(is_word_char);
                let after = text[stop..].chars().next().is_some_and(is_word_char);
                if before || after {
                    continue;
                }
            }
            if token.lstrip {
                let head = &text[..start];
                start = head.trim_end_matches(char::is_whitespace).len().max(offset);
            }
            if token.rstrip {
                let tail = &text[stop..];
                stop += tail.len() - tail.trim_start_matches(char::is_whitespace).len();
            }
            if offset < start {
                pieces.push(Piece::Text(&text[offset..start]));
            }
            pieces.push(Piece::Token(*id));
            offset = stop;
        }
        if offset < text.len() {
            pieces.push(Piece::Text(&text[offset..]));
        }
        pieces
    }

    /// The added tokens matched on the raw or on the normalized text (indices into `added`),
    /// longest pattern first, then in added order. (Equal patterns, possible only between
    /// normalized tokens, are tied in tokenizers' trie; the first added wins here.)
    fn patterns(&self, normalized: bool) -> Vec<usize> {
        let mut patterns: Vec<usize> = (0..self.added.len())
            .filter(|&i| {
                self.added[i].token.normalized == normalized && !self.added[i].text.is_empty()
            })
            .collect();
        patterns.sort_by_key(|&i| std::cmp::Reverse(self.added[i].text.len()));
        patterns
    }

    /// WordPiece: greedy longest-match-first over the vocabulary, `##` continuations.
    fn word_piece(&self, word: &str, ids: &mut Vec<i64>) -> Result<(), CaptionError> {
        let start_len = ids.len();
        if word.chars().count() <= MAX_INPUT_CHARS_PER_WORD {
            let mut start = 0;
            let mut piece = String::new();
            while start < word.len() {
                let mut end = word.len();
                let mut found = None;
                while start < end {
                    piece.clear();
                    if start > 0 {
                        piece.push_str(CONTINUATION_PREFIX);
                    }
                    piece.push_str(&word[start..end]);
                    if let Some(&id) = self.vocab_ids.get(&piece) {
                        found = Some(id);
                        break;
                    }
                    end -= word[start..end]
                        .chars()
                        .next_back()
                        .map_or(1, char::len_utf8);
                }
                match found {
                    Some(id) => ids.push(id),
                    None => break,
                }
                start = end;
            }
            if start >= word.len() {
                return Ok(());
            }
            ids.truncate(start_len);
        }
        let unk = self.unk_token.as_deref().unwrap_or("[UNK]");
        match self.vocab_ids.get(unk) {
            Some(&id) => {
                ids.push(id);
                Ok(())
            }
            None => Err(error(
                &self.vocab_path,
                format!(
                    "the word {word:?} needs the unknown token {unk:?}, which is not in the vocabulary"
                ),
            )),
        }
    }

    /// The text of `ids` as `processor.decode(ids, skip_special_tokens=...)` (see the module
    /// docs). An id outside `0..vocab_size()` is [`CaptionError::TokenOutOfRange`] (transformers
    /// drops it silently).
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String, CaptionError> {
        let mut text = String::new();
        let mut first = true;
        for &id in ids {
            let token = self.id_to_token(id).ok_or(CaptionError::TokenOutOfRange {
                id,
                vocab: self.vocab_size(),
            })?;
            if skip_special_tokens && self.special.contains(token) {
                continue;
            }
            // tokenizers' WordPiece decoder: glue `##` pieces, space the others, clean each.
            let piece = if first {
                token.to_string()
            } else if let Some(rest) = token.strip_prefix(CONTINUATION_PREFIX) {
                rest.to_string()
            } else {
                format!(" {token}")
            };
            first = false;
            text.push_str(&wordpiece_cleanup(&piece));
        }
        if self.clean_up_tokenization_spaces {
            text = clean_up_tokenization(&text);
        }
        Ok(text)
    }
}

impl Normalizer {
    /// tokenizers' `BertNormalizer::normalize` (with clean_text).
    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            let c = if is_bert_whitespace(c) { ' ' } else { c };
            if self.chinese_chars && is_chinese_char(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
        }
        if self.lowercase {
            // Per character (no final-sigma rule), as tokenizers' NormalizedString::lowercase.
            out = out.chars().flat_map(char::to_lowercase).collect();
        }
        out
    }
}

/// Whitespace for the normalizer: `\t`, `\n`, `\r` and Unicode White_Space.
fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// Control characters the normalizer drops: categories Cc, Cf, Co except `\t`, `\n`, `\r`.
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// The CJK ideograph blocks BERT puts spaces around.
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// BERT's punctuation: ASCII punctuation (33-47, 58-64, 91-96, 123-126) or Unicode P*.
fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// A regex `\w` character (the single_word boundary test).
fn is_word_char(c: char) -> bool {
    c.is_alphabetic()
        || c.is_mark()
        || c.is_number_decimal_digit()
        || c.is_punctuation_connector()
        || matches!(c, '\u{200C}' | '\u{200D}')
}

/// tokenizers' `BertPreTokenizer`: split on whitespace (dropped), isolate punctuation.
fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    text.split(char::is_whitespace)
        .filter(|w| !w.is_empty())
        .flat_map(|word| {
            let mut parts = Vec::new();
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if is_bert_punctuation(c) {
                    if start < i {
                        parts.push(&word[start..i]);
                    }
                    parts.push(&word[i..i + c.len_utf8()]);
                    start = i + c.len_utf8();
                }
            }
            if start < word.len() {
                parts.push(&word[start..]);
            }
            parts
        })
}

/// The per-token clean-up of tokenizers' WordPiece decoder.
fn wordpiece_cleanup(token: &str) -> String {
    token
        .replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" do not", " don't")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// transformers' `clean_up_tokenization` (applied when `clean_up_tokenization_spaces`).
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}
