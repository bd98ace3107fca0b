//! Scoring a set of pictures made from sounds: every metric of [`crate::metrics`] per item,
//! their means, and FID over the whole set, with progress reported through a callback.
//!
//! The pictures may come from this crate's pipeline (`sonic eval`) or from anywhere else
//! (`sonic eval --images DIR`, e.g. the official PyTorch code), so two implementations are
//! compared with the same metric code.

use crate::error::EvalError;
use crate::fid::{StatsAccumulator, frechet_distance};
use crate::images::{Picture, load_picture};
use crate::inception::FidInceptionV3;
use crate::lpips::Lpips;
use crate::metrics::{clip_score, cosine_rows, zero_shot_classes};
use crate::wav2clip::Wav2Clip;
use burn::tensor::{Device, Tensor};
use sonic_clip::tokenizer::ClipTokenizer;
use sonic_clip::{ClipImageProcessor, ClipTextModelWithProjection, ClipVisionModelWithProjection};
use sonic_core::fixtures::to_host;
use std::path::{Path, PathBuf};

/// CLIP's two towers, image processor and tokenizer, as one transformers CLIP folder holds
/// them (`openai/clip-vit-base-patch32`: `sonic download --eval`).
#[derive(Debug)]
pub struct ClipMetricModel {
    /// The image tower with projection.
    pub vision: ClipVisionModelWithProjection,
    /// The image preprocessing.
    pub processor: ClipImageProcessor,
    /// The text tower with projection.
    pub text: ClipTextModelWithProjection,
    /// The tokenizer.
    pub tokenizer: ClipTokenizer,
}

impl ClipMetricModel {
    /// Loads every part from a transformers CLIP folder (one `config.json` and weights file
    /// for both towers, the processor's and tokenizer's files beside them), or from a folder
    /// split as diffusers splits models: `image_encoder/` (with `preprocessor_config.json`),
    /// `text_encoder/` and `tokenizer/`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self, EvalError> {
        let split = dir.join("image_encoder").is_dir();
        let (image, text, tokenizer) = if split {
            (
                dir.join("image_encoder"),
                dir.join("text_encoder"),
                dir.join("tokenizer"),
            )
        } else {
            (dir.to_path_buf(), dir.to_path_buf(), dir.to_path_buf())
        };
        Ok(Self {
            vision: ClipVisionModelWithProjection::from_dir(&image, device)?,
            processor: ClipImageProcessor::from_file(&image.join("preprocessor_config.json"))?,
            text: ClipTextModelWithProjection::from_dir(&text, device)?,
            tokenizer: ClipTokenizer::from_dir(&tokenizer).map_err(sonic_clip::ClipError::from)?,
        })
    }

    /// Image embeddings `[n, d]` (host, row-major) of pictures.
    pub fn image_embeds(
        &self,
        pictures: &[(&Picture, String)],
        device: &Device,
    ) -> Result<Vec<f32>, EvalError> {
        let views: Vec<_> = pictures
            .iter()
            .map(|(p, n)| (p.view(), n.clone()))
            .collect();
        let pixels = self.processor.pixel_values(&views, device)?;
        Ok(to_host(&self.vision.forward(pixels)?.image_embeds)?)
    }

    /// Text embeddings `[n, d]` (host, row-major).
    pub fn text_embeds(&self, texts: &[String], device: &Device) -> Result<Vec<f32>, EvalError> {
        let ids = self
            .tokenizer
            .encode_batch_tensor(texts, device)
            .map_err(sonic_clip::ClipError::from)?;
        Ok(to_host(&self.text.forward(ids)?)?)
    }

    /// The width of both towers' embeddings.
    pub fn dim(&self) -> usize {
        self.vision.visual_projection.weight.dims()[1]
    }
}

/// The models the metrics need; the optional ones switch their metric on.
#[derive(Debug)]
pub struct Scorers {
    /// CLIP: CLIP score, IIS, AIC (and the image side of AIS).
    pub clip: ClipMetricModel,
    /// Wav2CLIP: AIS.
    pub wav2clip: Option<Wav2Clip>,
    /// pytorch-fid's InceptionV3: FID.
    pub inception: Option<FidInceptionV3>,
    /// LPIPS: structure preservation of edits.
    pub lpips: Option<Lpips>,
}

/// One clip of the evaluation set and the picture made from it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    /// A stable name (the picture's file stem).
    pub key: String,
    /// The sound.
    pub audio: PathBuf,
    /// The picture to score.
    pub generated: PathBuf,
    /// The ground-truth picture (the video frame of the clip), or the photo that was edited.
    pub reference: Option<PathBuf>,
    /// The clip's class.
    pub label: Option<String>,
    /// The prompt the picture was made with (for the CLIP score; empty: none).
    pub caption: String,
}

/// How the set is scored.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// The class names of zero-shot classification (AIC); empty: the items' distinct labels.
    pub class_names: Vec<String>,
    /// The text each class name is put in, `{}` standing for the name (AudioToken:
    /// `a photo of {}`).
    pub class_template: String,
    /// Pictures per CLIP / Wav2CLIP batch.
    pub batch: usize,
    /// Whether the pictures are edits of their reference (then LPIPS measures how much of the
    /// photo's structure they keep, and FID is not computed).
    pub edits: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            class_names: Vec::new(),
            class_template: "a photo of {}".into(),
            batch: 8,
            edits: false,
        }
    }
}

/// The scores of one item (`None`: the metric was off or lacked an input).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemScores {
    /// The item's key.
    pub key: String,
    /// CLIP score of the picture and its caption.
    pub clip_score: Option<f64>,
    /// Cosine of the CLIP embeddings of the picture and the reference.
    pub iis: Option<f64>,
    /// Cosine of the sound's Wav2CLIP embedding and the picture's CLIP embedding.
    pub ais: Option<f64>,
    /// The class zero-shot CLIP gives the picture.
    pub predicted: Option<String>,
    /// Whether `predicted` is the item's label.
    pub aic: Option<bool>,
    /// LPIPS distance of the picture to its reference (edits).
    pub lpips: Option<f64>,
}

/// The set's summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalSummary {
    /// Items scored.
    pub items: usize,
    /// Mean CLIP score.
    pub clip_score: Option<f64>,
    /// Mean IIS.
    pub iis: Option<f64>,
    /// Mean AIS.
    pub ais: Option<f64>,
    /// AIC: the fraction of pictures classified as their clip's label.
    pub aic: Option<f64>,
    /// Mean LPIPS (edits).
    pub lpips: Option<f64>,
    /// FID between the pictures and the references (at least two of each).
    pub fid: Option<f64>,
}

/// Everything [`evaluate`] computes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalReport {
    /// Per item, in input order.
    pub items: Vec<ItemScores>,
    /// The summary.
    pub summary: EvalSummary,
    /// The class names AIC chose among.
    pub class_names: Vec<String>,
}

/// Where [`evaluate`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalProgress {
    /// `"scoring"` (CLIP, Wav2CLIP, LPIPS per batch) or `"fid"` (Inception per picture).
    pub stage: &'static str,
    /// Units done.
    pub done: usize,
    /// Units in the stage.
    pub total: usize,
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn name_of(path: &Path) -> String {
    path.display().to_string()
}

/// Scores `items` with `scorers`.
pub fn evaluate(
    items: &[EvalItem],
    scorers: &Scorers,
    options: &EvalOptions,
    device: &Device,
    progress: &mut dyn FnMut(EvalProgress),
) -> Result<EvalReport, EvalError> {
    if items.is_empty() {
        return Err(EvalError::input("evaluate", "no items"));
    }
    let batch = options.batch.max(1);
    let class_names = if options.class_names.is_empty() {
        let mut names: Vec<String> = items.iter().filter_map(|i| i.label.clone()).collect();
        names.sort();
        names.dedup();
        names
    } else {
        options.class_names.clone()
    };
    let clip = &scorers.clip;
    let dim = clip.dim();
    let class_embeds = if class_names.len() >= 2 {
        let texts: Vec<String> = class_names
            .iter()
            .map(|c| options.class_template.replace("{}", c))
            .collect();
        Some(clip.text_embeds(&texts, device)?)
    } else {
        None
    };
    if let Some(w) = &scorers.wav2clip
        && w.embedding_dim() != dim
    {
        return Err(EvalError::input(
            "AIS",
            format!(
                "Wav2CLIP embeddings have {} values but the CLIP model's have {dim}: AIS needs \
                 the CLIP whose image space Wav2CLIP was trained on (ViT-B/32, 512)",
                w.embedding_dim()
            ),
        ));
    }
    let mut scores = Vec::with_capacity(items.len());
    let total = items.len().div_ceil(batch);
    for (b, chunk) in items.chunks(batch).enumerate() {
        progress(EvalProgress {
            stage: "scoring",
            done: b,
            total,
        });
        let generated: Vec<Picture> = chunk
            .iter()
            .map(|i| load_picture(&i.generated))
            .collect::<Result<_, _>>()?;
        let named: Vec<(&Picture, String)> = generated
            .iter()
            .zip(chunk)
            .map(|(p, i)| (p, name_of(&i.generated)))
            .collect();
        let image_embeds = clip.image_embeds(&named, device)?;
        let rows: Vec<&[f32]> = image_embeds.chunks(dim).collect();
        let ais = match &scorers.wav2clip {
            Some(w) => {
                let audio =
                    to_host(&w.embed_files(&chunk.iter().map(|i| &i.audio).collect::<Vec<_>>())?)?;
                Some(cosine_rows(&image_embeds, &audio, dim)?)
            }
            None => None,
        };
        let predicted = match &class_embeds {
            Some(c) => Some(zero_shot_classes(&image_embeds, c, dim)?),
            None => None,
        };
        // The chunk's ground truths and captions, each embedded in one batch.
        let references: Vec<Option<(Picture, String)>> = chunk
            .iter()
            .map(|i| {
                i.reference
                    .as_ref()
                    .map(|p| load_picture(p).map(|r| (r, name_of(p))))
                    .transpose()
            })
            .collect::<Result<_, _>>()?;
        let present: Vec<(&Picture, String)> = references
            .iter()
            .flatten()
            .map(|(r, n)| (r, n.clone()))
            .collect();
        let reference_embeds = if present.is_empty() {
            Vec::new()
        } else {
            clip.image_embeds(&present, device)?
        };
        let captions: Vec<String> = chunk
            .iter()
            .filter(|i| !i.caption.trim().is_empty())
            .map(|i| i.caption.clone())
            .collect();
        let caption_embeds = if captions.is_empty() {
            Vec::new()
        } else {
            clip.text_embeds(&captions, device)?
        };
        let (mut next_reference, mut next_caption) = (0, 0);
        for (j, item) in chunk.iter().enumerate() {
            let reference = &references[j];
            let iis = match reference {
                Some(_) => {
                    let e = &reference_embeds[next_reference * dim..(next_reference + 1) * dim];
                    next_reference += 1;
                    Some(cosine_rows(rows[j], e, dim)?[0])
                }
                None => None,
            };
            let clip_score = if item.caption.trim().is_empty() {
                None
            } else {
                let t = &caption_embeds[next_caption * dim..(next_caption + 1) * dim];
                next_caption += 1;
                Some(clip_score(rows[j], t, dim)?[0])
            };
            let lpips = match (&scorers.lpips, reference, options.edits) {
                (Some(l), Some((r, _)), true) => Some(lpips_of(l, &generated[j], r, device)?),
                _ => None,
            };
            let predicted_name = predicted
                .as_ref()
                .and_then(|p| class_names.get(p[j]).cloned());
            scores.push(ItemScores {
                key: item.key.clone(),
                clip_score,
                iis,
                ais: ais.as_ref().map(|a| a[j]),
                aic: match (&predicted_name, &item.label) {
                    (Some(p), Some(l)) => Some(p == l),
                    _ => None,
                },
                predicted: predicted_name,
                lpips,
            });
        }
    }
    progress(EvalProgress {
        stage: "scoring",
        done: total,
        total,
    });
    let fid = match &scorers.inception {
        Some(model) if !options.edits => fid_of(model, items, device, progress)?,
        _ => None,
    };
    let aic = {
        let v: Vec<bool> = scores.iter().filter_map(|s| s.aic).collect();
        (!v.is_empty()).then(|| v.iter().filter(|&&c| c).count() as f64 / v.len() as f64)
    };
    let summary = EvalSummary {
        items: items.len(),
        clip_score: mean(scores.iter().map(|s| s.clip_score)),
        iis: mean(scores.iter().map(|s| s.iis)),
        ais: mean(scores.iter().map(|s| s.ais)),
        aic,
        lpips: mean(scores.iter().map(|s| s.lpips)),
        fid,
    };
    Ok(EvalReport {
        items: scores,
        summary,
        class_names,
    })
}

fn picture_tensor(p: &Picture, device: &Device) -> Result<Tensor<4>, EvalError> {
    crate::images::pictures_to_tensor(std::slice::from_ref(p), device)
}

fn lpips_of(model: &Lpips, a: &Picture, b: &Picture, device: &Device) -> Result<f64, EvalError> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(EvalError::input(
            "LPIPS",
            format!(
                "the edit is {}x{} but its photo {}x{}",
                a.width, a.height, b.width, b.height
            ),
        ));
    }
    let d = model.distance_unit(picture_tensor(a, device)?, picture_tensor(b, device)?)?;
    Ok(f64::from(to_host(&d)?.first().copied().unwrap_or(f32::NAN)))
}

/// FID of the generated pictures against the references (`None` with fewer than two of
/// either).
fn fid_of(
    model: &FidInceptionV3,
    items: &[EvalItem],
    device: &Device,
    progress: &mut dyn FnMut(EvalProgress),
) -> Result<Option<f64>, EvalError> {
    let references: Vec<&PathBuf> = items.iter().filter_map(|i| i.reference.as_ref()).collect();
    if items.len() < 2 || references.len() < 2 {
        return Ok(None);
    }
    let total = items.len() + references.len();
    let mut done = 0;
    let mut stats = |paths: &mut dyn Iterator<Item = &PathBuf>| -> Result<_, EvalError> {
        let mut acc = StatsAccumulator::new(2048)?;
        for path in paths {
            progress(EvalProgress {
                stage: "fid",
                done,
                total,
            });
            let picture = load_picture(path)?;
            acc.push_tensor(&model.forward(picture_tensor(&picture, device)?)?)?;
            done += 1;
        }
        acc.finish()
    };
    let generated = stats(&mut items.iter().map(|i| &i.generated))?;
    let reference = stats(&mut references.into_iter())?;
    progress(EvalProgress {
        stage: "fid",
        done: total,
        total,
    });
    Ok(Some(frechet_distance(&generated, &reference)?))
}
