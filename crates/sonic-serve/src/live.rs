//! Live mode: the page streams the microphone over a WebSocket (binary messages of
//! little-endian `f32` mono samples at `?rate=`); the server keeps the last `window` seconds
//! and, whenever the previous picture is done and new sound has arrived, makes one from the
//! current window with a fixed seed, so that only the sound changes the picture. Pictures go
//! back as binary messages (PNG); problems as text messages `{"error": ...}`.

use crate::api::AppState;
use crate::jobs::LiveWork;
use crate::params::Fields;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use std::collections::{HashMap, VecDeque};
use tokio::sync::oneshot;

/// The rolling window of the last seconds of a stream.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<f32>,
    capacity: usize,
    fresh: usize,
}

impl Window {
    /// A window of `seconds` at `rate`.
    pub fn new(rate: u32, seconds: f64) -> Self {
        let capacity = ((rate as f64 * seconds) as usize).max(1);
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity,
            fresh: 0,
        }
    }

    /// Appends samples (non-finite ones become 0), dropping the oldest beyond the window.
    pub fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        for s in samples {
            if self.samples.len() == self.capacity {
                self.samples.pop_front();
            }
            self.samples.push_back(if s.is_finite() { s } else { 0.0 });
            self.fresh += 1;
        }
    }

    /// Samples received since the last [`Self::take`].
    pub fn fresh(&self) -> usize {
        self.fresh
    }

    /// The window's samples; resets the count of fresh ones.
    pub fn take(&mut self) -> Vec<f32> {
        self.fresh = 0;
        self.samples.iter().copied().collect()
    }
}

/// Decodes a binary message of little-endian `f32` samples (a trailing partial sample is
/// dropped).
pub fn decode_f32le(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `GET /api/live?rate=48000&seed=..&prompt=..&window=10&min_new=0.5` upgraded to a WebSocket.
pub async fn live(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, crate::error::ServeError> {
    let ws = ws.map_err(|e| {
        crate::error::ServeError::BadRequest(format!(
            "live mode needs a WebSocket: {}",
            e.body_text()
        ))
    })?;
    let fields = Fields(query);
    let mut params = fields.generate(&state.limits, 1)?;
    params.mix.clear();
    let num =
        |name: &str, default: f64, lo: f64, hi: f64| -> Result<f64, crate::error::ServeError> {
            let v = match fields.0.get(name) {
                Some(s) => s.trim().parse::<f64>().map_err(|_| {
                    crate::error::ServeError::BadRequest(format!(
                        "field `{name}` = `{s}`: cannot be parsed"
                    ))
                })?,
                None => default,
            };
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err(crate::error::ServeError::BadRequest(format!(
                    "field `{name}` = `{v}`: must be in [{lo}, {hi}]"
                )));
            }
            Ok(v)
        };
    let rate = num("rate", 48000.0, 8000.0, 192000.0)? as u32;
    let window = num("window", 10.0, 0.5, 30.0)?;
    let min_new = num("min_new", 0.5, 0.05, 30.0)?;
    Ok(ws
        .max_message_size(4 << 20)
        .on_upgrade(move |socket| session(socket, state, params, rate, window, min_new)))
}

async fn session(
    mut socket: WebSocket,
    state: AppState,
    params: crate::params::GenerateParams,
    rate: u32,
    window: f64,
    min_new: f64,
) {
    let mut buffer = Window::new(rate, window);
    let min_fresh = (rate as f64 * min_new) as usize;
    let mut pending: Option<oneshot::Receiver<Result<Vec<u8>, String>>> = None;
    loop {
        // Start a picture when none is running and enough new sound has come.
        if pending.is_none() && buffer.fresh() >= min_fresh {
            let (tx, rx) = oneshot::channel();
            let work = LiveWork {
                samples: buffer.take(),
                sample_rate: rate,
                params: params.clone(),
                reply: tx,
            };
            if state.jobs.submit_live(work) {
                pending = Some(rx);
            }
        }
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(bytes))) => buffer.push(decode_f32le(&bytes)),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = async {
                match pending.as_mut() {
                    Some(rx) => rx.await,
                    None => std::future::pending().await,
                }
            }, if pending.is_some() => {
                pending = None;
                let sent = match out {
                    Ok(Ok(png)) => socket.send(Message::Binary(png.into())).await,
                    Ok(Err(e)) => socket.send(Message::Text(serde_json::json!({ "error": e }).to_string().into())).await,
                    Err(_) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_last_seconds() {
        let mut w = Window::new(10, 1.0);
        w.push((0..25).map(|i| i as f32));
        assert_eq!(w.fresh(), 25);
        assert_eq!(w.take(), (15..25).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(w.fresh(), 0);
        w.push([f32::NAN]);
        assert_eq!(*w.take().last().unwrap(), 0.0);
    }

    #[test]
    fn samples_decode_from_little_endian_bytes() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .chain([7])
            .collect();
        assert_eq!(decode_f32le(&bytes).collect::<Vec<_>>(), vec![1.5, -2.0]);
    }
}
