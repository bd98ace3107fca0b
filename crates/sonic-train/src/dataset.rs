//! Training data: a manifest of (audio, image, caption, optional class label) records,
//! validated up front, a seeded train / validation split, and the import of the official
//! layout (a folder with `labels.csv`).
//!
//! ## Manifest formats
//!
//! Paths are relative to the manifest's folder (absolute paths are kept as they are).
//!
//! - **CSV** (`.csv`): a header line naming the columns `audio`, `image`, `caption` and,
//!   optionally, `label` (any order; other columns are an error), read and written with the
//!   `csv` crate: fields may be quoted with `"` (a `""` inside a quoted field is a quote), so
//!   captions can hold commas, quotes and line breaks. CRLF line ends and a UTF-8 BOM are
//!   accepted. Empty lines are skipped.
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
//! accepted; a header `path,label,caption` adds a caption column; any other header is an error). `path` is
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

/// The records of a CSV text (through the `csv` crate: RFC 4180 quoting, so a quoted field
/// may hold commas, `""` quotes and line breaks; CRLF accepted; a UTF-8 BOM is dropped), each
/// with the 1-based line it starts on. Rows whose fields are all blank are skipped.
fn csv_rows(path: &Path, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // The 1-based line of the first character at or after `pos` that is not a line break (a
    // record's position may point at the terminator before it or at skipped blank lines).
    let line_at = |pos: Option<&csv::Position>| {
        let bytes = text.as_bytes();
        let mut at = pos.map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
        at = at.min(bytes.len());
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        1 + bytes[..at].iter().filter(|&&b| b == b'\n').count()
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record
            .map_err(|e| manifest_err(path, line_at(e.position()), "<line>", e.to_string()))?;
        let line = line_at(record.position());
        let fields: Vec<String> = record.iter().map(str::to_string).collect();
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push((line, fields));
    }
    Ok(rows)
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
        let mut rows = csv_rows(path, text)?.into_iter();
        let (hline, header) = rows
            .next()
            .ok_or_else(|| manifest_err(path, 1, "<header>", "empty manifest"))?;
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
        for (n, fields) in rows {
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
        let mut records = Vec::new();
        let mut caption_col = None;
        let mut first = true;
        for (n, fields) in csv_rows(&path, &text)? {
            let trimmed: Vec<&str> = fields.iter().map(|f| f.trim()).collect();
            if first {
                first = false;
                if trimmed.first() == Some(&"path") {
                    caption_col = match trimmed.as_slice() {
                        ["path", "label"] => None,
                        ["path", "label", "caption"] => Some(2),
                        _ => {
                            return Err(manifest_err(
                                &path,
                                n,
                                "<header>",
                                format!(
                                    "header must be path,label or path,label,caption, not {}",
                                    trimmed.join(",")
                                ),
                            ));
                        }
                    };
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
        let csv_err = |e: csv::Error| manifest_err(path, 1, "<file>", e.to_string());
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let header: &[&str] = if with_label {
            &["audio", "image", "caption", "label"]
        } else {
            &["audio", "image", "caption"]
        };
        writer.write_record(header).map_err(csv_err)?;
        for r in &self.records {
            let mut row = vec![rel(&r.audio), rel(&r.image), r.caption.clone()];
            if with_label {
                row.push(r.label.clone().unwrap_or_default());
            }
            writer.write_record(&row).map_err(csv_err)?;
        }
        let out = writer
            .into_inner()
            .map_err(|e| manifest_err(path, 1, "<file>", e.to_string()))?;
        Ok(sonic_core::config::write_atomic(path, &out)?)
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
    fn csv_manifest_round_trips_any_caption() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.wav", "a.png", "b c.wav", "b c.png"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let captions = [
            "a line\nbreak, \"quoted\", and commas",
            " leading space, CRLF\r\nend ",
        ];
        let records: Vec<Record> = [("a", captions[0]), ("b c", captions[1])]
            .iter()
            .enumerate()
            .map(|(i, (stem, caption))| Record {
                audio: dir.path().join(format!("{stem}.wav")),
                image: dir.path().join(format!("{stem}.png")),
                caption: caption.to_string(),
                label: Some(format!("class, {i}")),
                line: 0,
            })
            .collect();
        let manifest = dir.path().join("m.csv");
        Dataset {
            source: manifest.clone(),
            records: records.clone(),
        }
        .write_csv(&manifest)
        .unwrap();
        let back = Dataset::open(&manifest).unwrap();
        assert_eq!(back.records.len(), 2);
        for (got, want) in back.records.iter().zip(&records) {
            assert_eq!(got.caption, want.caption);
            assert_eq!(got.label, want.label);
            assert_eq!(got.audio, want.audio);
        }
        // The second record starts on line 4: the first caption spans lines 2-3.
        assert_eq!(back.records[1].line, 4);
        // A BOM (as spreadsheet programs write) is dropped by both readers.
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(&manifest, format!("\u{feff}{text}")).unwrap();
        assert_eq!(Dataset::open(&manifest).unwrap().records.len(), 2);
        std::fs::write(
            dir.path().join("labels.csv"),
            "\u{feff}path,label\r\na.wav,\"x, y\"\r\n",
        )
        .unwrap();
        let imported = Dataset::import_labels_csv(dir.path()).unwrap();
        assert_eq!(imported.records[0].label.as_deref(), Some("x, y"));
        // A row with too many fields is an error naming the manifest and the line.
        std::fs::write(
            &manifest,
            "audio,image,caption\na.wav,a.png,\"x\ny\",extra\n",
        )
        .unwrap();
        let e = Dataset::open(&manifest).unwrap_err();
        assert!(e.to_string().contains("m.csv:2"), "{e}");
    }
}
