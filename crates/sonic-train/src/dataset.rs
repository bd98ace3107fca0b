//! Training data: a manifest of (audio, image, caption, optional class label) records,
//! validated up front, a seeded train / validation split, and the import of the official
//! layout (a folder with `labels.csv`).
//!
//! ## Manifest formats
//!
//! Paths are relative to the manifest's folder (absolute paths are kept as they are).
//!
//! - **CSV** (`.csv`): a header line naming the columns `audio`, `image`, `caption` and,
//!   optionally, `label` (any order; other columns are an error). Fields may be quoted with
//!   `"` (a `""` inside a quoted field is a quote), so captions can hold commas. CRLF line ends
//!   are accepted. Empty lines are skipped.
//! - **JSON lines** (`.jsonl`): one object per line with the string keys `audio`, `image`,
//!   `caption` and optionally `label` (a string or an integer); other keys are an error.
//!
//! Every record is checked when the manifest is opened: the fields are present, the audio and
//! image files exist. Errors name the manifest, the 1-based line and the field
//! ([`TrainError::Manifest`]).
//!
//! ## The official layout
//!
//! [`Dataset::import_labels_csv`] reads a folder holding the audio clips, the images and a
//! `labels.csv` with the columns `path,label` (a header line `path,label` is optional; CRLF is
//! accepted; an optional third column `caption` is read when the header names it). `path` is
//! the audio file, relative to the folder; its image is the file with the same path and stem
//! and the first existing extension of `.jpg`, `.jpeg`, `.png`, `.webp`.

use crate::error::{Result, TrainError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The audio file (resolved against the manifest's folder).
    pub audio: PathBuf,
    /// The image file (resolved).
    pub image: PathBuf,
    /// The caption of the image (may be empty).
    pub caption: String,
    /// The class label, if the manifest has one.
    pub label: Option<String>,
    /// The 1-based line of the manifest the record came from.
    pub line: usize,
}

/// A validated list of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The manifest (or `labels.csv`) the records came from.
    pub source: PathBuf,
    /// The records, in file order.
    pub records: Vec<Record>,
}

fn manifest_err(path: &Path, line: usize, field: &str, message: impl Into<String>) -> TrainError {
    TrainError::Manifest {
        path: path.to_path_buf(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Splits one CSV line into fields (quotes with `""` escapes; a trailing `\r` is dropped).
fn split_csv_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                    match chars.peek() {
                        None | Some(',') => {}
                        Some(other) => {
                            return Err(format!("unexpected `{other}` after a closing quote"));
                        }
                    }
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            fields.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn check_file(path: &Path, line: usize, field: &str, file: &Path) -> Result<()> {
    if file.is_file() {
        Ok(())
    } else {
        Err(manifest_err(
            path,
            line,
            field,
            format!("file {} does not exist", file.display()),
        ))
    }
}

impl Dataset {
    /// Opens and validates a manifest (`.csv` or `.jsonl`, chosen by extension; anything else
    /// is read as CSV).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| manifest_err(path, 1, "<file>", format!("not UTF-8: {e}")))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let records = if path.extension().is_some_and(|e| e == "jsonl") {
            Self::parse_jsonl(path, &base, &text)?
        } else {
            Self::parse_csv(path, &base, &text)?
        };
        if records.is_empty() {
            return Err(manifest_err(path, 1, "<file>", "no records"));
        }
        Ok(Self {
            source: path.to_path_buf(),
            records,
        })
    }

    fn parse_csv(path: &Path, base: &Path, text: &str) -> Result<Vec<Record>> {
        let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let (hline, header) = lines
            .by_ref()
            .find(|(_, l)| !l.trim().is_empty())
            .ok_or_else(|| manifest_err(path, 1, "<header>", "empty manifest"))?;
        let header =
            split_csv_line(header).map_err(|m| manifest_err(path, hline, "<header>", m))?;
        let mut col = BTreeMap::new();
        for (i, name) in header.iter().enumerate() {
            let name = name.trim();
            if !matches!(name, "audio" | "image" | "caption" | "label") {
                return Err(manifest_err(
                    path,
                    hline,
                    name,
                    "unknown column (expected audio, image, caption, label)",
                ));
            }
            if col.insert(name.to_string(), i).is_some() {
                return Err(manifest_err(path, hline, name, "column named twice"));
            }
        }
        for required in ["audio", "image", "caption"] {
            if !col.contains_key(required) {
                return Err(manifest_err(path, hline, required, "missing column"));
            }
        }
        let mut out = Vec::new();
        for (n, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line).map_err(|m| manifest_err(path, n, "<line>", m))?;
            if fields.len() != header.len() {
                return Err(manifest_err(
                    path,
                    n,
                    "<line>",
                    format!("{} fields, the header has {}", fields.len(), header.len()),
                ));
            }
            let get = |k: &str| col.get(k).map(|&i| fields[i].clone());
            let audio = get("audio").unwrap_or_default();
            let image = get("image").unwrap_or_default();
            for (field, v) in [("audio", &audio), ("image", &image)] {
                if v.trim().is_empty() {
                    return Err(manifest_err(path, n, field, "empty"));
                }
            }
            let label = match get("label") {
                Some(l) if l.trim().is_empty() => {
                    return Err(manifest_err(path, n, "label", "empty"));
                }
                other => other.map(|l| l.trim().to_string()),
            };
            let rec = Record {
                audio: resolve(base, audio.trim()),
                image: resolve(base, image.trim()),
                caption: get("caption").unwrap_or_default(),
                label,
                line: n,
            };
            check_file(path, n, "audio", &rec.audio)?;
            check_file(path, n, "image", &rec.image)?;
            out.push(rec);
        }
        Ok(out)
    }

    fn parse_jsonl(path: &Path, base: &Path, text: &str) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| manifest_err(path, n, "<line>", format!("invalid JSON: {e}")))?;
            let obj = v
                .as_object()
                .ok_or_else(|| manifest_err(path, n, "<line>", "not a JSON object"))?;
            for k in obj.keys() {
                if !matches!(k.as_str(), "audio" | "image" | "caption" | "label") {
                    return Err(manifest_err(path, n, k, "unknown key"));
                }
            }
            let string = |k: &str| -> Result<String> {
                match obj.get(k) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(other) => Err(manifest_err(
                        path,
                        n,
                        k,
                        format!("expected a string, found {other}"),
                    )),
                    None => Err(manifest_err(path, n, k, "missing")),
                }
            };
            let audio = string("audio")?;
            let image = string("image")?;
            for (field, v) in [("audio", &audio), ("image", &image)] {
                if v.trim().is_empty() {
                    return Err(manifest_err(path, n, field, "empty"));
                }
            }
            let caption = string("caption")?;
            let label = match obj.get("label") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Some(s.trim().to_string())
                }
                Some(serde_json::Value::Number(x)) if x.is_i64() || x.is_u64() => {
                    Some(x.to_string())
                }
                Some(other) => {
                    return Err(manifest_err(
                        path,
                        n,
                        "label",
                        format!("expected a non-empty string or an integer, found {other}"),
                    ));
                }
            };
            let rec = Record {
                audio: resolve(base, audio.trim()),
                image: resolve(base, image.trim()),
                caption,
                label,
                line: n,
            };
            check_file(path, n, "audio", &rec.audio)?;
            check_file(path, n, "image", &rec.image)?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Imports the official layout: `folder/labels.csv` with `path,label` (see the module
    /// docs). Captions are empty unless the file has a `caption` column.
    pub fn import_labels_csv(folder: &Path) -> Result<Self> {
        let path = folder.join("labels.csv");
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| manifest_err(&path, 1, "<file>", format!("not UTF-8: {e}")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut records = Vec::new();
        let mut caption_col = None;
        let mut first = true;
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv_line(line).map_err(|m| manifest_err(&path, n, "<line>", m))?;
            let trimmed: Vec<&str> = fields.iter().map(|f| f.trim()).collect();
            if first {
                first = false;
                if trimmed.first() == Some(&"path") {
                    if trimmed.get(1) != Some(&"label") {
                        return Err(manifest_err(&path, n, "label", "header must be path,label"));
                    }
                    caption_col = trimmed.iter().position(|f| *f == "caption");
                    continue;
                }
            }
            let want = if caption_col.is_some() { 3 } else { 2 };
            if fields.len() != want {
                return Err(manifest_err(
                    &path,
                    n,
                    "<line>",
                    format!("{} fields, expected {want}", fields.len()),
                ));
            }
            let audio_rel = trimmed[0];
            if audio_rel.is_empty() {
                return Err(manifest_err(&path, n, "path", "empty"));
            }
            let label = trimmed[1];
            if label.is_empty() {
                return Err(manifest_err(&path, n, "label", "empty"));
            }
            let audio = resolve(folder, audio_rel);
            check_file(&path, n, "path", &audio)?;
            let image = ["jpg", "jpeg", "png", "webp"]
                .iter()
                .map(|e| audio.with_extension(e))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    manifest_err(
                        &path,
                        n,
                        "path",
                        format!(
                            "no image next to {} (same stem, .jpg/.jpeg/.png/.webp)",
                            audio.display()
                        ),
                    )
                })?;
            records.push(Record {
                audio,
                image,
                caption: caption_col.map(|c| fields[c].clone()).unwrap_or_default(),
                label: Some(label.to_string()),
                line: n,
            });
        }
        if records.is_empty() {
            return Err(manifest_err(&path, 1, "<file>", "no records"));
        }
        Ok(Self {
            source: path,
            records,
        })
    }

    /// Writes the records as a CSV manifest at `path` (atomically), with paths relative to
    /// `path`'s folder where possible.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| -> String {
            p.strip_prefix(base)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        let with_label = self.records.iter().any(|r| r.label.is_some());
        let mut out = String::from(if with_label {
            "audio,image,caption,label\n"
        } else {
            "audio,image,caption\n"
        });
        for r in &self.records {
            out.push_str(&csv_field(&rel(&r.audio)));
            out.push(',');
            out.push_str(&csv_field(&rel(&r.image)));
            out.push(',');
            out.push_str(&csv_field(&r.caption));
            if with_label {
                out.push(',');
                out.push_str(&csv_field(r.label.as_deref().unwrap_or("")));
            }
            out.push('\n');
        }
        Ok(sonic_core::config::write_atomic(path, out.as_bytes())?)
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A deterministic split: the records are shuffled with ChaCha8 seeded by `seed`, the first
    /// `round(len * val_fraction)` go to validation, the rest to training; both keep file order.
    /// A fraction in `(0, 1)` leaves at least one record on each side when `len >= 2`.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(TrainError::bad_input(
                "validation fraction",
                "a number in [0, 1)",
                val_fraction,
            ));
        }
        let n = self.records.len();
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut n_val = (n as f64 * val_fraction).round() as usize;
        if val_fraction > 0.0 && n >= 2 {
            n_val = n_val.clamp(1, n - 1);
        }
        let mut val: Vec<usize> = idx[..n_val].to_vec();
        let mut train: Vec<usize> = idx[n_val..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        let pick = |ix: &[usize]| Dataset {
            source: self.source.clone(),
            records: ix.iter().map(|&i| self.records[i].clone()).collect(),
        };
        Ok((pick(&train), pick(&val)))
    }

    /// The class of every record as a stable id of its label text (FNV-1a, 53 bits): the same
    /// label gets the same id in every dataset, so a training split and a validation split
    /// agree on classes. Errors naming the line of the first record without a label.
    pub fn class_ids(&self) -> Result<Vec<usize>> {
        self.records
            .iter()
            .map(|r| match &r.label {
                Some(l) => Ok(crate::params::path_id(l).val() as usize),
                None => Err(manifest_err(
                    &self.source,
                    r.line,
                    "label",
                    "missing (stage 1 needs class labels for InfoNCE)",
                )),
            })
            .collect()
    }

    /// The class label of every record as an index into the sorted list of distinct labels
    /// (returned too). Errors naming the line of the first record without a label.
    pub fn class_indices(&self) -> Result<(Vec<usize>, Vec<String>)> {
        let mut names: Vec<String> = Vec::new();
        for r in &self.records {
            match &r.label {
                Some(l) => names.push(l.clone()),
                None => {
                    return Err(manifest_err(
                        &self.source,
                        r.line,
                        "label",
                        "missing (stage 1 needs class labels for InfoNCE)",
                    ));
                }
            }
        }
        names.sort();
        names.dedup();
        let idx = self
            .records
            .iter()
            .map(|r| {
                let l = r.label.as_deref().unwrap_or_default();
                names.binary_search_by(|n| n.as_str().cmp(l)).unwrap_or(0)
            })
            .collect();
        Ok((idx, names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(
            split_csv_line("a,\"b, c\",\"say \"\"hi\"\"\"\r").unwrap(),
            vec!["a", "b, c", "say \"hi\""]
        );
        assert_eq!(split_csv_line("a,,").unwrap(), vec!["a", "", ""]);
        assert!(split_csv_line("a,\"b").is_err());
        assert!(split_csv_line("\"a\"b,c").is_err());
        assert_eq!(csv_field("x, y"), "\"x, y\"");
        assert_eq!(split_csv_line(&csv_field("q\"q,")).unwrap(), vec!["q\"q,"]);
    }
}
