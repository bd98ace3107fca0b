//! The job table and the worker: one thread owns the loaded pipeline and runs one job at a
//! time from a bounded queue; every job's state is published on a watch channel (progress
//! events) and kept in the table; results are written atomically under the server's folder.

use crate::error::ServeError;
use crate::params::{EditParams, GenerateParams};
use serde::Serialize;
use sonic_pipeline::AudioToImage;
use sonic_pipeline::edit::{EditRequest, PnpOptions};
use sonic_pipeline::image_input::{ImageOptions, load_image};
use sonic_pipeline::sampling::CancelToken;
use sonic_pipeline::sonic::{AudioSource, SonicPipeline};
use sonic_unet::AdapterStrength;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{oneshot, watch};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting in the queue.
    Queued,
    /// Being computed.
    Running,
    /// Finished; the picture is at `/api/jobs/{id}/image`.
    Done,
    /// Failed; `error` says why.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl Status {
    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// What clients see of a job (`GET /api/jobs/{id}` and each progress event).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The job's id.
    pub id: String,
    /// `generate` or `edit`.
    pub kind: &'static str,
    /// Where it is.
    pub status: Status,
    /// Fraction done, 0 to 1.
    pub progress: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// The parameters it runs with (seed included).
    pub params: serde_json::Value,
}

/// A queued job's inputs (files under the server's folder).
#[derive(Debug, Clone)]
pub enum JobInput {
    /// Audio (one sound, or several mixed) to picture.
    Generate {
        /// The sounds.
        audio: Vec<PathBuf>,
        /// The settings.
        params: GenerateParams,
    },
    /// A photo edited with a sound.
    Edit {
        /// The sounds.
        audio: Vec<PathBuf>,
        /// The photo.
        image: PathBuf,
        /// Generation settings.
        params: GenerateParams,
        /// Editing settings.
        edit: EditParams,
    },
}

/// One live-mode picture: the last seconds of a stream.
pub struct LiveWork {
    /// Mono samples.
    pub samples: Vec<f32>,
    /// Their rate.
    pub sample_rate: u32,
    /// Settings (fixed seed).
    pub params: GenerateParams,
    /// Where the PNG (or the error) goes.
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

/// What the worker runs.
pub enum Work {
    /// A job of the table.
    Job(String),
    /// A live-mode picture.
    Live(LiveWork),
}

struct Job {
    snapshot: Snapshot,
    input: Option<JobInput>,
    cancel: CancelToken,
    events: watch::Sender<Snapshot>,
    result: Option<PathBuf>,
    folder: PathBuf,
}

/// The shared state: the job table, the queue's sending end, the server's folder.
pub struct Jobs {
    table: Mutex<HashMap<String, Job>>,
    order: Mutex<Vec<String>>,
    queue: SyncSender<Work>,
    queue_len: usize,
    dir: PathBuf,
}

/// Finished jobs kept (older ones, and their files, are dropped).
const KEEP_FINISHED: usize = 500;

/// A new unguessable job id: 128 random bits from the operating system's generator (through
/// `rand`'s reseeded ChaCha), as 32 hex digits.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Jobs {
    /// A table whose queue holds `queue_len` waiting jobs; results go under `dir`.
    pub fn new(queue_len: usize, dir: PathBuf) -> (Arc<Self>, Receiver<Work>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue_len);
        (
            Arc::new(Self {
                table: Mutex::new(HashMap::new()),
                order: Mutex::new(Vec::new()),
                queue: tx,
                queue_len,
                dir,
            }),
            rx,
        )
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Job>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh folder for a job's uploads, and its id.
    pub fn new_folder(&self) -> Result<(String, PathBuf), ServeError> {
        let id = new_id();
        let folder = self.dir.join(&id);
        std::fs::create_dir_all(&folder)
            .map_err(|e| ServeError::Internal(format!("cannot create the job folder: {e}")))?;
        Ok((id, folder))
    }

    /// Queues a job (its uploads already in `folder`); a full queue is 503 and removes them.
    pub fn submit(
        &self,
        id: String,
        folder: PathBuf,
        input: JobInput,
        params: serde_json::Value,
    ) -> Result<String, ServeError> {
        let kind = match input {
            JobInput::Generate { .. } => "generate",
            JobInput::Edit { .. } => "edit",
        };
        let snapshot = Snapshot {
            id: id.clone(),
            kind,
            status: Status::Queued,
            progress: 0.0,
            error: None,
            params,
        };
        let (events, _) = watch::channel(snapshot.clone());
        self.table().insert(
            id.clone(),
            Job {
                snapshot,
                input: Some(input),
                cancel: CancelToken::new(),
                events,
                result: None,
                folder: folder.clone(),
            },
        );
        match self.queue.try_send(Work::Job(id.clone())) {
            Ok(()) => {
                self.order
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(id.clone());
                self.prune();
                Ok(id)
            }
            Err(e) => {
                self.table().remove(&id);
                let _ = std::fs::remove_dir_all(&folder);
                match e {
                    TrySendError::Full(_) => Err(ServeError::Busy(self.queue_len)),
                    TrySendError::Disconnected(_) => {
                        Err(ServeError::Internal("the worker has stopped".into()))
                    }
                }
            }
        }
    }

    /// Queues a live-mode picture; `false` when the queue is full (the caller tries later).
    pub fn submit_live(&self, work: LiveWork) -> bool {
        self.queue.try_send(Work::Live(work)).is_ok()
    }

    /// Drops the oldest finished jobs beyond [`KEEP_FINISHED`] with their files.
    fn prune(&self) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let mut table = self.table();
        let finished: Vec<String> = order
            .iter()
            .filter(|id| table.get(*id).is_some_and(|j| j.snapshot.status.is_final()))
            .cloned()
            .collect();
        let excess = finished.len().saturating_sub(KEEP_FINISHED);
        for id in finished.into_iter().take(excess) {
            if let Some(job) = table.remove(&id) {
                let _ = std::fs::remove_dir_all(&job.folder);
            }
            order.retain(|x| *x != id);
        }
    }

    /// The job's state.
    pub fn snapshot(&self, id: &str) -> Result<Snapshot, ServeError> {
        self.table()
            .get(id)
            .map(|j| j.snapshot.clone())
            .ok_or_else(|| ServeError::NotFound(id.to_string()))
    }

    /// The job's progress events.
    pub fn subscribe(&self, id: &str) -> Result<watch::Receiver<Snapshot>, ServeError> {
        self.table()
            .get(id)
            .map(|j| j.events.subscribe())
            .ok_or_else(|| ServeError::NotFound(id.to_string()))
    }

    /// The finished picture's path.
    pub fn result(&self, id: &str) -> Result<PathBuf, ServeError> {
        let table = self.table();
        let job = table
            .get(id)
            .ok_or_else(|| ServeError::NotFound(id.to_string()))?;
        job.result.clone().ok_or_else(|| {
            ServeError::Conflict(format!(
                "job `{id}` is {:?}: no picture",
                job.snapshot.status
            ))
        })
    }

    /// Cancels a job: a queued job never starts, a running one stops at its next step.
    pub fn cancel(&self, id: &str) -> Result<Snapshot, ServeError> {
        let mut table = self.table();
        let job = table
            .get_mut(id)
            .ok_or_else(|| ServeError::NotFound(id.to_string()))?;
        job.cancel.cancel();
        if job.snapshot.status == Status::Queued {
            job.snapshot.status = Status::Cancelled;
            job.input = None;
            job.events.send_replace(job.snapshot.clone());
        }
        Ok(job.snapshot.clone())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Snapshot)) {
        if let Some(job) = self.table().get_mut(id) {
            f(&mut job.snapshot);
            job.events.send_replace(job.snapshot.clone());
        }
    }

    /// Takes a queued job's input to run it (`None` when it was cancelled meanwhile).
    fn start(&self, id: &str) -> Option<(JobInput, CancelToken, PathBuf)> {
        let mut table = self.table();
        let job = table.get_mut(id)?;
        if job.snapshot.status != Status::Queued {
            return None;
        }
        let input = job.input.take()?;
        job.snapshot.status = Status::Running;
        job.events.send_replace(job.snapshot.clone());
        Some((input, job.cancel.clone(), job.folder.clone()))
    }

    fn finish(&self, id: &str, outcome: Result<PathBuf, sonic_pipeline::PipelineError>) {
        if let Some(job) = self.table().get_mut(id) {
            match outcome {
                Ok(path) => {
                    job.snapshot.status = Status::Done;
                    job.snapshot.progress = 1.0;
                    job.result = Some(path);
                }
                Err(sonic_pipeline::PipelineError::Cancelled) => {
                    job.snapshot.status = Status::Cancelled;
                }
                Err(e) => {
                    job.snapshot.status = Status::Failed;
                    job.snapshot.error = Some(e.to_string());
                }
            }
            job.events.send_replace(job.snapshot.clone());
        }
    }
}

/// The AudioToImage request of a job.
fn request(pipe: &SonicPipeline, p: &GenerateParams, cancel: Option<CancelToken>) -> AudioToImage {
    let side = pipe.sd.default_image_size();
    AudioToImage {
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone(),
        guidance_scale: p.guidance,
        audio_guidance_scale: p.audio_guidance,
        audio_strength: AdapterStrength::Global(p.audio_strength),
        steps: p.steps,
        seed: p.seed,
        width: p.width.unwrap_or(side),
        height: p.height.unwrap_or(side),
        cancel,
        ..AudioToImage::default()
    }
}

/// The CLAP embedding of one sound, or the weighted mix of several.
fn embedding(
    pipe: &SonicPipeline,
    sources: Vec<AudioSource>,
    mix: &[f32],
) -> Result<burn::tensor::Tensor<2>, sonic_pipeline::PipelineError> {
    if sources.len() == 1 {
        return pipe.embed(&sources);
    }
    let weights: Vec<f32> = if mix.is_empty() {
        vec![1.0; sources.len()]
    } else {
        mix.to_vec()
    };
    pipe.mix(&sources.into_iter().zip(weights).collect::<Vec<_>>())
}

fn png(
    images: &burn::tensor::Tensor<4>,
    params: &serde_json::Value,
) -> Result<Vec<u8>, sonic_pipeline::PipelineError> {
    let img = sonic_pipeline::output::to_images(images)?
        .into_iter()
        .next()
        .ok_or_else(|| sonic_pipeline::PipelineError::InvalidParameter {
            name: "images",
            value: "0".into(),
            reason: "the pipeline returned no picture".into(),
        })?;
    let meta = vec![
        ("sonic:params".to_string(), params.to_string()),
        (
            "Software".to_string(),
            format!("sonic serve {}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    sonic_pipeline::output::encode_png(
        img.width() as usize,
        img.height() as usize,
        img.as_raw(),
        &meta,
    )
    .map_err(|message| sonic_pipeline::PipelineError::Output {
        path: PathBuf::from("result.png"),
        message,
    })
}

fn run_job(
    pipe: &SonicPipeline,
    input: JobInput,
    cancel: CancelToken,
    folder: &Path,
    params: &serde_json::Value,
    progress: &mut dyn FnMut(f64),
) -> Result<PathBuf, sonic_pipeline::PipelineError> {
    let images = match input {
        JobInput::Generate { audio, params: p } => {
            let sources = audio.into_iter().map(AudioSource::File).collect();
            let emb = embedding(pipe, sources, &p.mix)?;
            let req = request(pipe, &p, Some(cancel));
            pipe.generate(emb, &req, &mut |s| {
                progress(s.step as f64 / s.total.max(1) as f64)
            })?
            .images
        }
        JobInput::Edit {
            audio,
            image,
            params: p,
            edit,
        } => {
            let sources = audio.into_iter().map(AudioSource::File).collect();
            let emb = embedding(pipe, sources, &p.mix)?;
            let opts = ImageOptions {
                size: p.width.zip(p.height),
                factor: pipe.sd.vae_scale_factor(),
                ..ImageOptions::default()
            };
            let pixels = load_image(&image, &opts, &pipe.sd.device)?;
            let mut generation = request(pipe, &p, Some(cancel));
            generation.scheduler = "ddim".into();
            let req = EditRequest {
                mode: edit.mode(),
                generation,
                inversion_prompt: String::new(),
                pnp: PnpOptions {
                    pnp_f_t: edit.pnp_f_t,
                    pnp_attn_t: edit.pnp_attn_t,
                    ..PnpOptions::default()
                },
                strength: edit.strength,
            };
            pipe.edit(pixels, emb, &req, &mut |s| {
                progress(s.step as f64 / s.total.max(1) as f64)
            })?
            .images
        }
    };
    let bytes = png(&images, params)?;
    let path = folder.join("result.png");
    sonic_pipeline::output::write_atomic(&path, &bytes)?;
    Ok(path)
}

fn run_live(
    pipe: &SonicPipeline,
    work: &LiveWork,
) -> Result<Vec<u8>, sonic_pipeline::PipelineError> {
    let emb = pipe.embed(&[AudioSource::Samples {
        samples: work.samples.clone(),
        sample_rate: work.sample_rate,
    }])?;
    let req = request(pipe, &work.params, None);
    let out = pipe.generate(emb, &req, &mut |_| {})?;
    png(
        &out.images,
        &serde_json::to_value(&work.params).unwrap_or_default(),
    )
}

/// The worker loop: runs until the queue's sending end is dropped.
pub fn worker(pipe: SonicPipeline, jobs: Arc<Jobs>, queue: Receiver<Work>) {
    while let Ok(work) = queue.recv() {
        match work {
            Work::Live(live) => {
                let out = run_live(&pipe, &live).map_err(|e| e.to_string());
                let _ = live.reply.send(out);
            }
            Work::Job(id) => {
                let Some((input, cancel, folder)) = jobs.start(&id) else {
                    continue;
                };
                let params = jobs.snapshot(&id).map(|s| s.params).unwrap_or_default();
                let mut last = 0.0;
                let outcome = run_job(&pipe, input, cancel, &folder, &params, &mut |p| {
                    if p > last {
                        last = p;
                        // The last step is followed by the VAE decode: report at most 0.99.
                        jobs.update(&id, |s| s.progress = p.min(0.99));
                    }
                });
                jobs.finish(&id, outcome);
            }
        }
    }
}
