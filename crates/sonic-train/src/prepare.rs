//! From a manifest to in-memory training data, through the caches: CLAP embeddings of the
//! clips, CLIP text embeddings of the captions (and of ""), VAE latents of the images.

use crate::cache::{EmbeddingCache, ModelId};
use crate::dataset::Dataset;
use crate::error::{Result, TrainError};
use crate::stage1::Stage1Data;
use crate::stage2::Stage2Data;
use burn::tensor::{Device, Tensor};
use sonic_audio::ClapAudioEncoder;
use sonic_clip::ClipTextModel;
use sonic_clip::tokenizer::ClipTokenizer;
use sonic_pipeline::StableDiffusion;
use sonic_pipeline::image_input::{ImageOptions, load_image};
use std::path::{Path, PathBuf};

/// Every regular file of `dir`, sorted (a model component's identity).
pub fn component_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| TrainError::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    Ok(v)
}

fn id_of(cache: &EmbeddingCache, files: &[PathBuf], params: &str) -> Result<ModelId> {
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    cache.model_id(&refs, params)
}

/// The cache identity of the CLAP encoder at `weights` (crop rule included).
pub fn clap_id(
    cache: &EmbeddingCache,
    weights: &Path,
    encoder: &ClapAudioEncoder,
) -> Result<ModelId> {
    id_of(
        cache,
        &[weights.to_path_buf()],
        &format!("clap|{:?}", encoder.config()),
    )
}

/// CLAP embeddings `[N, A]` of `audio` files (cached).
pub fn clap_embeddings(
    cache: &mut EmbeddingCache,
    encoder: &ClapAudioEncoder,
    id: &ModelId,
    audio: &[PathBuf],
    device: &Device,
) -> Result<Tensor<2>> {
    let keys = EmbeddingCache::file_keys(audio)?;
    cache.get_or_compute("clap", id, &keys, device, &mut |idx| {
        let files: Vec<&PathBuf> = idx.iter().map(|&i| &audio[i]).collect();
        Ok(encoder.encode_files(&files)?)
    })
}

/// SD's tokenizer and text encoder (all stage 1 needs of SD).
pub struct TextEncoder {
    /// The Stable Diffusion folder they come from.
    pub sd_dir: PathBuf,
    /// The tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The text encoder.
    pub model: ClipTextModel,
    /// Their device.
    pub device: Device,
}

impl TextEncoder {
    /// Loads `sd_dir/tokenizer` and `sd_dir/text_encoder`.
    pub fn load(sd_dir: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            sd_dir: sd_dir.to_path_buf(),
            tokenizer: ClipTokenizer::from_dir(sd_dir.join("tokenizer"))
                .map_err(sonic_clip::ClipError::from)?,
            model: ClipTextModel::from_dir(&sd_dir.join("text_encoder"), device)?,
            device: device.clone(),
        })
    }

    /// Embeddings `[N, 77, width]` of `prompts`.
    pub fn encode(&self, prompts: &[String]) -> Result<Tensor<3>> {
        let ids = self
            .tokenizer
            .encode_batch_tensor(prompts, &self.device)
            .map_err(sonic_clip::ClipError::from)?;
        Ok(self.model.forward(ids)?)
    }
}

/// The cache identity of SD's text encoder + tokenizer in `sd_dir`.
pub fn text_id(cache: &EmbeddingCache, sd_dir: &Path) -> Result<ModelId> {
    let mut files = component_files(&sd_dir.join("text_encoder"))?;
    files.extend(component_files(&sd_dir.join("tokenizer"))?);
    id_of(cache, &files, "clip-text|last_hidden_state")
}

/// CLIP text embeddings `[N, 77, width]` of `captions` (cached); `encode` runs the model.
pub fn text_embeddings(
    cache: &mut EmbeddingCache,
    encode: &dyn Fn(&[String]) -> Result<Tensor<3>>,
    id: &ModelId,
    captions: &[String],
    device: &Device,
) -> Result<Tensor<3>> {
    let keys = EmbeddingCache::text_keys(captions);
    cache.get_or_compute("text", id, &keys, device, &mut |idx| {
        let prompts: Vec<String> = idx.iter().map(|&i| captions[i].clone()).collect();
        let mut out = Vec::new();
        for chunk in prompts.chunks(16) {
            out.push(encode(chunk)?);
        }
        Ok(Tensor::cat(out, 0))
    })
}

/// The cache identity of SD's VAE at `resolution` (posterior mean x scaling factor), of the
/// images as they are or flipped horizontally.
pub fn vae_id(
    cache: &EmbeddingCache,
    sd: &StableDiffusion,
    resolution: usize,
    flip: bool,
) -> Result<ModelId> {
    let files = component_files(&sd.dir.join("vae"))?;
    id_of(
        cache,
        &files,
        &format!("vae|res={resolution}|centre-crop+catmull-rom|flip={flip}|posterior-mean*scaling"),
    )
}

/// VAE latents `[N, C, r/8, r/8]` of `images` (resize + centre crop to `resolution`, then a
/// horizontal flip when `flip`; posterior mean times the VAE's scaling factor; cached under
/// the id of [`vae_id`], whose params must include the flip).
pub fn latents(
    cache: &mut EmbeddingCache,
    sd: &StableDiffusion,
    id: &ModelId,
    images: &[PathBuf],
    resolution: usize,
    flip: bool,
) -> Result<Tensor<4>> {
    let keys = EmbeddingCache::file_keys(images)?;
    let device = sd.device.clone();
    let opts = ImageOptions {
        size: Some((resolution, resolution)),
        factor: sd.vae_scale_factor(),
        ..ImageOptions::default()
    };
    cache.get_or_compute("latents", id, &keys, &device, &mut |idx| {
        let mut out = Vec::with_capacity(idx.len());
        for &i in idx {
            let mut img = load_image(&images[i], &opts, &device)?;
            if flip {
                img = img.flip([3]);
            }
            let post = sd.vae.encode(img)?;
            out.push(post.mean.mul_scalar(sd.vae.scaling_factor()));
        }
        Ok(Tensor::cat(out, 0))
    })
}

/// Stage-1 data for `dataset`: CLAP embeddings, class ids ([`Dataset::class_ids`]), caption
/// embeddings.
pub fn stage1_data(
    dataset: &Dataset,
    cache: &mut EmbeddingCache,
    encoder: &ClapAudioEncoder,
    clap_weights: &Path,
    text: &TextEncoder,
) -> Result<Stage1Data> {
    // Label ids that do not depend on which records the split holds (train and validation
    // must agree on classes: validation draws its positives from the training data).
    let labels = dataset.class_ids()?;
    let audio: Vec<PathBuf> = dataset.records.iter().map(|r| r.audio.clone()).collect();
    let captions: Vec<String> = dataset.records.iter().map(|r| r.caption.clone()).collect();
    let cid = clap_id(cache, clap_weights, encoder)?;
    let clap = clap_embeddings(cache, encoder, &cid, &audio, &text.device)?;
    let tid = text_id(cache, &text.sd_dir)?;
    let text = text_embeddings(cache, &|p| text.encode(p), &tid, &captions, &text.device)?;
    Stage1Data::new(clap, labels, text)
}

/// Stage-2 data for `dataset`: latents, caption embeddings, CLAP embeddings and the empty
/// caption's embedding (no flipped latents; see [`stage2_data_with_flips`]).
pub fn stage2_data(
    dataset: &Dataset,
    cache: &mut EmbeddingCache,
    encoder: &ClapAudioEncoder,
    clap_weights: &Path,
    sd: &StableDiffusion,
    resolution: usize,
) -> Result<Stage2Data> {
    stage2_data_with_flips(dataset, cache, encoder, clap_weights, sd, resolution, false)
}

/// [`stage2_data`], plus the latents of the horizontally flipped images when `hflip`.
pub fn stage2_data_with_flips(
    dataset: &Dataset,
    cache: &mut EmbeddingCache,
    encoder: &ClapAudioEncoder,
    clap_weights: &Path,
    sd: &StableDiffusion,
    resolution: usize,
    hflip: bool,
) -> Result<Stage2Data> {
    let audio: Vec<PathBuf> = dataset.records.iter().map(|r| r.audio.clone()).collect();
    let images: Vec<PathBuf> = dataset.records.iter().map(|r| r.image.clone()).collect();
    let captions: Vec<String> = dataset.records.iter().map(|r| r.caption.clone()).collect();
    let cid = clap_id(cache, clap_weights, encoder)?;
    let clap = clap_embeddings(cache, encoder, &cid, &audio, &sd.device)?;
    let tid = text_id(cache, &sd.dir)?;
    let encode = |p: &[String]| -> Result<Tensor<3>> { Ok(sd.encode_prompts(p)?) };
    let text = text_embeddings(cache, &encode, &tid, &captions, &sd.device)?;
    let empty = text_embeddings(cache, &encode, &tid, &[String::new()], &sd.device)?;
    let vid = vae_id(cache, sd, resolution, false)?;
    let lat = latents(cache, sd, &vid, &images, resolution, false)?;
    let data = Stage2Data::new(lat, text, clap, empty)?;
    if !hflip {
        return Ok(data);
    }
    let fid = vae_id(cache, sd, resolution, true)?;
    let flipped = latents(cache, sd, &fid, &images, resolution, true)?;
    data.with_flipped(flipped)
}
