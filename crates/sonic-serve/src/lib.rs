//! The SonicDiffusion web app and HTTP API (`sonic serve`, see `docs/SERVE.md`).
//!
//! One loaded [`SonicPipeline`] runs on a worker thread, one job at a time, from a bounded
//! queue (full: 503). Clients submit jobs (`POST /api/generate`, `POST /api/edit`, multipart),
//! follow them (`GET /api/jobs/{id}`, server-sent events at `/api/jobs/{id}/events`), fetch the
//! PNG and cancel (`DELETE`). The page at `/` is embedded in the binary; live mode streams the
//! microphone over a WebSocket (`/api/live`). The API is described at `/api/openapi.json`.
//!
//! ```no_run
//! use sonic_pipeline::sonic::SonicPipeline;
//! use sonic_serve::{ServerConfig, start};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig { port: 0, ..ServerConfig::default() };
//! let server = start(&config, || {
//!     SonicPipeline::builder()
//!         .model("stable-diffusion-v1-4")
//!         .clap("CLAP_weights_2022.pth")
//!         .projector("audio_projector_landscape.pth")
//!         .adapters("landscape.pt")
//!         .build()
//! })?;
//! println!("listening on http://{}", server.addr());
//! server.wait();
//! # Ok(()) }
//! ```

pub mod api;
pub mod error;
pub mod jobs;
pub mod live;
pub mod params;

pub use error::ServeError;
pub use params::Limits;

use sonic_pipeline::sonic::SonicPipeline;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to bind (127.0.0.1 unless told otherwise).
    pub host: String,
    /// The port (0: a free one).
    pub port: u16,
    /// Jobs that may wait behind the running one.
    pub queue_len: usize,
    /// Request limits.
    pub limits: Limits,
    /// Where uploads and results go (`None`: a temporary folder removed at exit).
    pub work_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 7860,
            queue_len: 8,
            limits: Limits::default(),
            work_dir: None,
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub fn wait(self) {
        let Server { runtime, task, .. } = self;
        let _ = runtime.block_on(task);
    }

    /// Stops accepting connections and ends the server.
    pub fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let Server { runtime, task, .. } = self;
        let _ = runtime.block_on(task);
    }
}

/// Whether `host` is a loopback address (anything else gets a warning: the API has no
/// authentication).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Loads the models (on the worker thread, through `build`), binds the address and serves.
/// Returns once the server accepts connections.
pub fn start<F>(config: &ServerConfig, build: F) -> Result<Server, ServeError>
where
    F: FnOnce() -> Result<SonicPipeline, sonic_pipeline::PipelineError> + Send + 'static,
{
    if config.queue_len == 0 {
        return Err(ServeError::Startup(
            "the queue length must be at least 1".into(),
        ));
    }
    let (temp, dir) = match &config.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| ServeError::Startup(format!("cannot create {}: {e}", d.display())))?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("sonic-serve-")
                .tempdir()
                .map_err(|e| ServeError::Startup(format!("cannot create a work folder: {e}")))?;
            let d = t.path().to_path_buf();
            (Some(t), d)
        }
    };
    let (jobs, queue) = jobs::Jobs::new(config.queue_len, dir);
    // The worker owns the pipeline; it reports whether loading worked before serving starts.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let worker_jobs = jobs.clone();
    std::thread::Builder::new()
        .name("sonic-worker".into())
        .spawn(move || match build() {
            Ok(pipe) => {
                let _ = ready_tx.send(Ok(()));
                jobs::worker(pipe, worker_jobs, queue);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
            }
        })
        .map_err(|e| ServeError::Startup(format!("cannot start the worker: {e}")))?;
    ready_rx
        .recv()
        .map_err(|_| ServeError::Startup("the worker stopped while loading".into()))?
        .map_err(|e| ServeError::Startup(format!("loading the models: {e}")))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServeError::Startup(format!("cannot start the runtime: {e}")))?;
    let bind = format!("{}:{}", config.host, config.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&bind))
        .map_err(|e| ServeError::Startup(format!("cannot listen on {bind}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Startup(e.to_string()))?;
    let app = api::router(api::AppState {
        jobs,
        limits: Arc::new(config.limits.clone()),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Server {
        addr,
        runtime,
        shutdown: Some(tx),
        task,
        _temp: temp,
    })
}
