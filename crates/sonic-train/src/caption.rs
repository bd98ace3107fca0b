//! Captions for training data: a manifest's missing captions filled by an image captioner
//! (BLIP, `sonic_caption`), so (sound, picture) pairs are enough to train.
//!
//! Each caption is cached under the picture's content hash and the captioner's identity
//! (weights, decoding settings, prefix: [`EmbeddingCache::model_id`]), as `caption/<model-id>/
//! <ab>/<sha256>.txt`, the moment it is made: an interrupted run resumes where it stopped, a
//! second run calls no model, and the same picture in two manifests is captioned once. A
//! caption already in the manifest is kept unless `overwrite` is set. The stage-1 / stage-2
//! text caches are keyed by the caption text, so they pick the new captions up by themselves.

use crate::cache::{EmbeddingCache, ModelId, sha256_file};
use crate::dataset::Dataset;
use crate::error::{Result, TrainError};
use burn::tensor::Device;
use sonic_caption::{BertTokenizer, BlipForConditionalGeneration, GenerationConfig};
use sonic_clip::ClipImageProcessor;
use sonic_pipeline::image_input::{ImageOptions, decode_image};
use std::path::{Path, PathBuf};

/// The cache kind of captions.
pub const CAPTION_KIND: &str = "caption";

/// Something that captions pictures.
pub trait ImageCaptioner {
    /// One caption per picture file.
    fn caption(&mut self, images: &[&Path]) -> Result<Vec<String>>;

    /// The files and settings that decide the captions (for the cache key).
    fn identity(&self) -> (Vec<PathBuf>, String);
}

/// transformers' `BlipForConditionalGeneration` with its processor and tokenizer, from one
/// folder (e.g. `Salesforce/blip-image-captioning-base`).
#[derive(Debug)]
pub struct BlipCaptioner {
    /// The model.
    pub model: BlipForConditionalGeneration,
    /// The image preprocessing.
    pub processor: ClipImageProcessor,
    /// The tokenizer (prefix in, captions out).
    pub tokenizer: BertTokenizer,
    /// The decoding settings.
    pub generation: GenerationConfig,
    /// A text the captions start from (e.g. `a picture of`; empty: none).
    pub prefix: String,
    prompt_len: usize,
    files: Vec<PathBuf>,
    device: Device,
}

impl BlipCaptioner {
    /// Loads the captioner of `dir` with the decoding settings of its `generation_config.json`
    /// (else transformers' defaults for BLIP: greedy, 20 new tokens), `overrides` applied to
    /// them.
    pub fn from_dir(
        dir: &Path,
        prefix: &str,
        overrides: &dyn Fn(&mut GenerationConfig),
        device: &Device,
    ) -> Result<Self> {
        let caption_err = |e: sonic_caption::CaptionError| TrainError::Caption(e);
        let model = BlipForConditionalGeneration::from_dir(dir, device).map_err(caption_err)?;
        let processor =
            sonic_caption::processor::image_processor_from_dir(dir).map_err(caption_err)?;
        let tokenizer = BertTokenizer::from_dir(dir).map_err(caption_err)?;
        let prompt_len = if prefix.is_empty() {
            1
        } else {
            // `[CLS] ... [SEP]` becomes `[DEC] ...`: one shorter.
            tokenizer.encode(prefix).map_err(caption_err)?.len() - 1
        };
        let mut generation = sonic_caption::generation::from_dir(dir, prompt_len)
            .map_err(|e| caption_err(e.into()))?;
        overrides(&mut generation);
        let files = [
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "preprocessor_config.json",
            "vocab.txt",
            "tokenizer_config.json",
        ]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.is_file())
        .collect();
        Ok(Self {
            model,
            processor,
            tokenizer,
            generation,
            prefix: prefix.to_string(),
            prompt_len,
            files,
            device: device.clone(),
        })
    }
}

impl BlipCaptioner {
    /// The length of the prompt the decoder starts from (`[DEC]` and the prefix's tokens).
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }
}

impl ImageCaptioner for BlipCaptioner {
    fn caption(&mut self, images: &[&Path]) -> Result<Vec<String>> {
        let caption_err = |e: sonic_caption::CaptionError| TrainError::Caption(e);
        let decoded = images
            .iter()
            .map(|p| {
                Ok((
                    decode_image(p, &ImageOptions::default())?.to_rgb8(),
                    p.display().to_string(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = decoded
            .iter()
            .map(|(img, name)| {
                (
                    sonic_clip::RgbImage {
                        width: img.width() as usize,
                        height: img.height() as usize,
                        pixels: img.as_raw(),
                    },
                    name.clone(),
                )
            })
            .collect();
        let pixels = self
            .processor
            .pixel_values(&views, &self.device)
            .map_err(|e| caption_err(e.into()))?;
        let prefix_ids = if self.prefix.is_empty() {
            Vec::new()
        } else {
            self.tokenizer.encode(&self.prefix).map_err(caption_err)?
        };
        let sequences = self
            .model
            .generate(pixels, &prefix_ids, &self.generation)
            .map_err(caption_err)?;
        // The BOS id `[DEC]` lives in the model's config, not always in the tokenizer's files,
        // and transformers' decode drops ids it does not know: both are left out here too.
        let known = self.tokenizer.vocab_size() as i64;
        sequences
            .iter()
            .map(|ids| {
                let ids: Vec<i64> = ids
                    .iter()
                    .skip(1)
                    .copied()
                    .filter(|&id| (0..known).contains(&id))
                    .collect();
                self.tokenizer.decode(&ids, true).map_err(caption_err)
            })
            .collect()
    }

    fn identity(&self) -> (Vec<PathBuf>, String) {
        (
            self.files.clone(),
            format!("blip prefix={:?} {:?}", self.prefix, self.generation),
        )
    }
}

/// How [`caption_dataset`] went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptionReport {
    /// Records whose caption was written by the captioner.
    pub filled: usize,
    /// Records whose own caption was kept.
    pub kept: usize,
    /// Captions found in the cache.
    pub cached: usize,
    /// Captions computed (model calls).
    pub computed: usize,
}

/// Fills the empty captions of `dataset` (all of them with `overwrite`), `batch` pictures per
/// model call, reporting `(done, total)` after each batch.
pub fn caption_dataset(
    dataset: &Dataset,
    captioner: &mut dyn ImageCaptioner,
    cache: &mut EmbeddingCache,
    overwrite: bool,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Dataset, CaptionReport)> {
    let (files, params) = captioner.identity();
    let file_refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let model: ModelId = cache.model_id(&file_refs, &params)?;
    let mut out = dataset.clone();
    let mut report = CaptionReport::default();
    let todo: Vec<usize> = (0..out.records.len())
        .filter(|&i| overwrite || out.records[i].caption.trim().is_empty())
        .collect();
    report.kept = out.records.len() - todo.len();
    // Cached captions first; the rest goes to the model in batches.
    let mut missing = Vec::new();
    for &i in &todo {
        let key = sha256_file(&out.records[i].image)?;
        match cache.get_text(CAPTION_KIND, &model, &key)? {
            Some(c) => {
                out.records[i].caption = c;
                report.cached += 1;
            }
            None => missing.push((i, key)),
        }
    }
    let total = missing.len();
    progress(0, total);
    for (done, chunk) in missing.chunks(batch.max(1)).enumerate() {
        let images: Vec<&Path> = chunk
            .iter()
            .map(|(i, _)| out.records[*i].image.as_path())
            .collect();
        let captions = captioner.caption(&images)?;
        if captions.len() != chunk.len() {
            return Err(TrainError::bad_input(
                "captioner output",
                format!("{} captions", chunk.len()),
                captions.len(),
            ));
        }
        for ((i, key), caption) in chunk.iter().zip(captions) {
            cache.put_text(CAPTION_KIND, &model, key, &caption)?;
            out.records[*i].caption = caption;
            report.computed += 1;
        }
        progress((done * batch.max(1) + chunk.len()).min(total), total);
    }
    report.filled = report.cached + report.computed;
    Ok((out, report))
}
