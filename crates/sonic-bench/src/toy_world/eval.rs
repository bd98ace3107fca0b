//! Evaluation: sampling from the audio (or the captions) and classifying the pictures; the
//! grid of samples.

use super::*;

/// Samples one picture per row of `tokens` (`[n, T, D]` audio tokens) by DDIM with guidance
/// `eps = eps_null + guidance (eps_cond - eps_null)`, adapters at `strength`; the null branch
/// has the empty caption and the null audio tokens, the conditional branch row `i` the audio
/// tokens of row `i` and the caption embedding `cond_text[i]` (the empty caption when sampling
/// from the audio alone); the initial noise is `noise` (`[n, 3, S, S]`, e.g. from
/// [`seeded_normals`]). Returns `[n, 3, S, S]` on the host.
#[allow(clippy::too_many_arguments)]
pub(super) fn sample(
    o: &ToyWorldOptions,
    unet: &UNet2DConditionModel,
    tokens: &Tensor<3>,
    null_tokens: &Tensor<3>,
    empty_text: &[f32],
    cond_text: &[&[f32]],
    text_shape: (usize, usize),
    strength: f32,
    noise: &[f32],
) -> Result<Vec<f32>> {
    let device = &o.device;
    let s = o.image_size;
    let n = tokens.dims()[0];
    let (t, d) = text_shape;
    if noise.len() != n * 3 * s * s {
        return Err(ToyWorldError::BadOption {
            name: "noise",
            value: format!("{} values", noise.len()),
            reason: format!("needs {n} x 3 x {s} x {s}"),
        });
    }
    let mut out = Vec::with_capacity(n * 3 * s * s);
    let plane = 3 * s * s;
    let mut start = 0;
    while start < n {
        let m = o.eval_batch.min(n - start);
        let mut scheduler = tr!(DdimScheduler::from_json(&schedule_json()))?;
        tr!(scheduler.set_timesteps(o.sample_steps))?;
        let cond = tokens.clone().narrow(0, start, m);
        let null = null_tokens.clone().narrow(0, 0, 1).repeat_dim(0, m);
        let adapters = unet.prepare_adapters(
            Tensor::cat(vec![null, cond], 0),
            AdapterStrength::Global(strength),
        );
        let text = tensor3(
            (0..m)
                .flat_map(|_| empty_text.iter().copied())
                .chain(
                    cond_text[start..start + m]
                        .iter()
                        .flat_map(|row| row.iter().copied()),
                )
                .collect(),
            [2 * m, t, d],
            device,
        );
        let x = tensor4(
            noise[start * plane..(start + m) * plane].to_vec(),
            [m, 3, s, s],
            device,
        )
        .mul_scalar(scheduler.init_noise_sigma());
        let cond = Conditioning {
            text,
            adapter: Some(adapters),
        };
        let mut no_progress = |_: usize, _: usize, _: f64| {};
        let mut observer = ProgressOnly::new(&mut no_progress, o.sample_steps);
        let x = denoise(
            unet,
            &mut scheduler,
            x,
            &cond,
            Guidance::Single(f64::from(o.guidance)),
            0,
            &mut observer,
        )?;
        out.extend(host(&x)?);
        start += m;
    }
    Ok(out)
}

/// The mean training picture of each class.
pub(super) fn mean_pictures(pictures: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    pictures
        .iter()
        .map(|set| {
            let mut m = vec![0.0f32; set.first().map_or(0, Vec::len)];
            for p in set {
                m.iter_mut().zip(p).for_each(|(a, b)| *a += b);
            }
            m.iter_mut().for_each(|a| *a /= set.len().max(1) as f32);
            m
        })
        .collect()
}

/// What a sample is classified against (`nearest_prototype`): each class's mean training
/// picture with its background removed (`without_background`), computed once per run.
pub(super) fn class_prototypes(pictures: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    mean_pictures(pictures)
        .iter()
        .map(|m| without_background(m))
        .collect()
}

/// `n` standard normals from a ChaCha8 generator seeded with `seed`.
pub(super) fn seeded_normals(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| normal(&mut rng)).collect()
}

pub(super) fn classify(
    samples: &[f32],
    labels: &[usize],
    prototypes: &[Vec<f32>],
) -> (f64, [[usize; CLASSES]; CLASSES], Vec<usize>) {
    let plane = prototypes[0].len();
    let mut confusion = [[0usize; CLASSES]; CLASSES];
    let mut predicted = Vec::with_capacity(labels.len());
    for (i, &l) in labels.iter().enumerate() {
        let p = nearest_prototype(&samples[i * plane..(i + 1) * plane], prototypes);
        confusion[l][p] += 1;
        predicted.push(p);
    }
    let correct: usize = (0..CLASSES).map(|c| confusion[c][c]).sum();
    (
        correct as f64 / labels.len().max(1) as f64,
        confusion,
        predicted,
    )
}

/// Pixels of the sample grid per pixel of a sample (each cell also has a 1-pixel white frame).
const GRID_ZOOM: usize = 4;

/// Where the sample grid puts each sample (what `write_grid` writes and [`read_grid`] reads):
/// one row per class of `cols` cells of `4 x size + 2` pixels (a sample at 4x in a 1-pixel
/// frame), the samples with audio on the left, a gap of one cell, those at strength 0 on the
/// right.
#[derive(Debug, Clone, Copy)]
struct GridLayout {
    /// Sample size in pixels.
    size: usize,
    /// Samples per class row and half.
    cols: usize,
}

impl GridLayout {
    /// A cell's side in grid pixels.
    fn cell(self) -> usize {
        self.size * GRID_ZOOM + 2
    }

    /// The grid's width and height in pixels.
    fn dims(self) -> (usize, usize) {
        ((2 * self.cols + 1) * self.cell(), CLASSES * self.cell())
    }

    /// The grid pixel `(x, y)` of sample pixel `(0, 0)` of column `col` of class row `row`, in
    /// the half with audio (`strength0` false) or at strength 0.
    fn origin(self, strength0: bool, row: usize, col: usize) -> (usize, usize) {
        let cell = self.cell();
        let x0 = if strength0 { (self.cols + 1) * cell } else { 0 };
        (x0 + col * cell + 1, row * cell + 1)
    }

    /// The layout of a `width x height` grid picture, if that size is one.
    fn of_picture(width: usize, height: usize) -> Option<Self> {
        let cell = height / CLASSES;
        let fits = height.is_multiple_of(CLASSES)
            && cell > 2
            && (cell - 2).is_multiple_of(GRID_ZOOM)
            && width.is_multiple_of(cell)
            && (width / cell) % 2 == 1
            && width / cell >= 3;
        fits.then(|| GridLayout {
            size: (cell - 2) / GRID_ZOOM,
            cols: (width / cell - 1) / 2,
        })
    }
}

/// Writes the sample grid: one row per class (the held-out clips of that class, in order), each
/// sample drawn at 4x, with the audio samples on the left and the strength-0 samples on the
/// right, separated by a gap ([`GridLayout`]).
pub(super) fn write_grid(
    path: &Path,
    o: &ToyWorldOptions,
    labels: &[usize],
    samples: &[f32],
    samples_f0: &[f32],
    report_line: &str,
) -> Result<()> {
    let s = o.image_size;
    let layout = GridLayout {
        size: s,
        cols: o.test_per_class,
    };
    let cols = layout.cols;
    let (width, height) = layout.dims();
    let mut rgb = vec![255u8; width * height * 3];
    let plane = s * s;
    let mut put = |set: &[f32], idx: usize, row: usize, col: usize, strength0: bool| {
        let (x0, y0) = layout.origin(strength0, row, col);
        for y in 0..s * GRID_ZOOM {
            for x in 0..s * GRID_ZOOM {
                let (py, px) = (y / GRID_ZOOM, x / GRID_ZOOM);
                let (gy, gx) = (y0 + y, x0 + x);
                for c in 0..3 {
                    let v = set[idx * 3 * plane + c * plane + py * s + px];
                    let v = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                    rgb[(gy * width + gx) * 3 + c] = v;
                }
            }
        }
    };
    let mut seen = [0usize; CLASSES];
    for (i, &l) in labels.iter().enumerate() {
        let col = seen[l];
        seen[l] += 1;
        if col >= cols {
            continue;
        }
        put(samples, i, l, col, false);
        put(samples_f0, i, l, col, true);
    }
    let metadata = vec![
        ("Software".to_string(), "sonic-train toy_world".to_string()),
        (
            "Description".to_string(),
            format!(
                "rows: {}; left: samples from held-out clips with audio; right: the same noise with adapters at strength 0; {report_line}",
                SOUND_NAMES.join(", ")
            ),
        ),
    ];
    let bytes =
        sonic_pipeline::output::encode_png(width, height, &rgb, &metadata).map_err(|message| {
            ToyWorldError::Output {
                path: path.to_path_buf(),
                message,
            }
        })?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| ToyWorldError::Output {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    sonic_core::config::write_atomic(path, &bytes).map_err(|e| ToyWorldError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The samples of a grid written by a toy-world run (`toy_world_samples.png`), as the
/// classifier takes them: for each class row, the samples with audio and those at strength 0.
#[derive(Debug, Clone)]
pub struct GridSamples {
    /// Sample size in pixels.
    pub image_size: usize,
    /// `with_audio[class]`: that row's samples with audio, each `[3, S, S]` in `[-1, 1]`,
    /// concatenated.
    pub with_audio: Vec<Vec<f32>>,
    /// The same samples' noise with the adapters at strength 0.
    pub strength0: Vec<Vec<f32>>,
}

/// Reads a sample grid in the layout `write_grid` writes: one row per class of cells of
/// `4 x size + 2` pixels (a sample at 4x in a 1-pixel white frame), the samples with audio on the
/// left, a gap of one cell, those at strength 0 on the right. The sample size and the columns
/// are read from the picture's size.
pub fn read_grid(path: &Path) -> Result<GridSamples> {
    let bad = |message: String| ToyWorldError::Grid {
        path: path.to_path_buf(),
        message,
    };
    let img = image::open(path).map_err(|e| bad(e.to_string()))?.to_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    let Some(layout) = GridLayout::of_picture(width, height) else {
        return Err(bad(format!(
            "{width} x {height} pixels is not {CLASSES} rows of ({GRID_ZOOM} x S + 2)-pixel cells, two halves and a gap"
        )));
    };
    let s = layout.size;
    let sample = |strength0: bool, row: usize, col: usize| -> Vec<f32> {
        let (x0, y0) = layout.origin(strength0, row, col);
        let mut out = vec![0.0f32; 3 * s * s];
        for y in 0..s {
            for x in 0..s {
                let px = img.get_pixel((x0 + x * GRID_ZOOM) as u32, (y0 + y * GRID_ZOOM) as u32);
                for c in 0..3 {
                    out[c * s * s + y * s + x] = f32::from(px[c]) / 127.5 - 1.0;
                }
            }
        }
        out
    };
    let half = |strength0: bool| -> Vec<Vec<f32>> {
        (0..CLASSES)
            .map(|row| {
                (0..layout.cols)
                    .flat_map(|col| sample(strength0, row, col))
                    .collect()
            })
            .collect()
    };
    Ok(GridSamples {
        image_size: s,
        with_audio: half(false),
        strength0: half(true),
    })
}

/// A sample grid scored again ([`rescore_grid`]).
#[derive(Debug, Clone)]
pub struct GridScore {
    /// Accuracy of the samples with audio.
    pub accuracy: f64,
    /// Accuracy at strength 0.
    pub accuracy_f0: f64,
    /// `confusion[true][predicted]` with audio.
    pub confusion: [[usize; CLASSES]; CLASSES],
    /// The same at strength 0.
    pub confusion_f0: [[usize; CLASSES]; CLASSES],
    /// `predicted[class][column]`: the class of each sample with audio.
    pub predicted: Vec<Vec<usize>>,
}

/// Scores the samples of a grid written by an earlier run with the current classifier
/// ([`nearest_prototype`]), against the prototypes of the run's own training pictures (`seed`
/// and `train_per_class` of that run; [`draw_training_pictures`]): the accuracies the run would
/// print today, for 8-bit samples (the grid rounds them).
pub fn rescore_grid(path: &Path, seed: u64, train_per_class: usize) -> Result<GridScore> {
    if train_per_class == 0 {
        return Err(ToyWorldError::BadOption {
            name: "train_per_class",
            value: "0".into(),
            reason: "the prototypes need at least one training picture per class".into(),
        });
    }
    let grid = read_grid(path)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let prototypes = class_prototypes(&draw_training_pictures(
        &mut rng,
        train_per_class,
        grid.image_size,
    ));
    let per_sample = 3 * grid.image_size * grid.image_size;
    let score = |rows: &[Vec<f32>]| {
        let labels: Vec<usize> = rows
            .iter()
            .enumerate()
            .flat_map(|(c, r)| std::iter::repeat_n(c, r.len() / per_sample))
            .collect();
        let (accuracy, confusion, predicted) = classify(&rows.concat(), &labels, &prototypes);
        let mut per_row = vec![Vec::new(); CLASSES];
        for (&l, p) in labels.iter().zip(predicted) {
            per_row[l].push(p);
        }
        (accuracy, confusion, per_row)
    };
    let (accuracy, confusion, predicted) = score(&grid.with_audio);
    let (accuracy_f0, confusion_f0, _) = score(&grid.strength0);
    Ok(GridScore {
        accuracy,
        accuracy_f0,
        confusion,
        confusion_f0,
        predicted,
    })
}
