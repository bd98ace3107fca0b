//! The HTTP routes: the page, the OpenAPI description, jobs (submit, state, progress events,
//! picture, cancel) and live mode.

use crate::error::ServeError;
use crate::jobs::{JobInput, Jobs, Snapshot};
use crate::params::{Fields, Limits};
use axum::Json;
use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The job table and queue.
    pub jobs: Arc<Jobs>,
    /// Request limits.
    pub limits: Arc<Limits>,
}

/// The page, embedded in the binary.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The API's OpenAPI 3 description.
pub const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

/// The router of the whole app.
pub fn router(state: AppState) -> Router {
    let limit = state.limits.max_upload;
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route("/api/generate", post(generate))
        .route("/api/edit", post(edit))
        .route("/api/jobs/{id}", get(job).delete(cancel))
        .route("/api/jobs/{id}/events", get(events))
        .route("/api/jobs/{id}/image", get(image))
        .route("/api/live", get(crate::live::live))
        .fallback(|| async { ServeError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ServeError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An upload's extension from the client's file name, kept only when it is a known audio or
/// image format; the file itself is always stored under a name the server chooses.
fn safe_extension(name: Option<&str>, allowed: &[&str]) -> Option<String> {
    let ext = std::path::Path::new(name?)
        .extension()?
        .to_str()?
        .to_ascii_lowercase();
    allowed.contains(&ext.as_str()).then_some(ext)
}

/// Reads a multipart request: text fields and the uploaded `audio` / `audio2` / `image` files,
/// written into the job's folder.
async fn read_form(
    state: &AppState,
    mut form: Multipart,
    folder: &std::path::Path,
) -> Result<(Fields, Vec<PathBuf>, Option<PathBuf>), ServeError> {
    let limit = state.limits.max_upload;
    let too_large = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::TooLarge { limit }
        } else {
            ServeError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut fields = HashMap::new();
    let mut audio = Vec::new();
    let mut image = None;
    while let Some(field) = form.next_field().await.map_err(too_large)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "audio" | "audio2" => {
                let ext = safe_extension(field.file_name(), &["wav", "flac", "mp3", "ogg"]);
                let bytes = field.bytes().await.map_err(too_large)?;
                if bytes.is_empty() {
                    continue;
                }
                if audio.len() >= state.limits.max_sounds {
                    return Err(ServeError::BadRequest(format!(
                        "at most {} sounds per request",
                        state.limits.max_sounds
                    )));
                }
                let path = folder.join(format!(
                    "audio-{}.{}",
                    audio.len(),
                    ext.as_deref().unwrap_or("bin")
                ));
                write(&path, &bytes)?;
                audio.push(path);
            }
            "image" => {
                let ext = safe_extension(field.file_name(), &["png", "jpg", "jpeg", "webp"]);
                let bytes = field.bytes().await.map_err(too_large)?;
                if bytes.is_empty() {
                    continue;
                }
                let path = folder.join(format!("image.{}", ext.as_deref().unwrap_or("bin")));
                write(&path, &bytes)?;
                image = Some(path);
            }
            _ => {
                let text = field.text().await.map_err(too_large)?;
                fields.insert(name, text);
            }
        }
    }
    Ok((Fields(fields), audio, image))
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<(), ServeError> {
    std::fs::write(path, bytes)
        .map_err(|e| ServeError::Internal(format!("cannot store an upload: {e}")))
}

/// Checks that every sound decodes before the job is queued (a bad file is a 400 now, not a
/// failed job later).
fn check_audio(audio: &[PathBuf]) -> Result<(), ServeError> {
    if audio.is_empty() {
        return Err(ServeError::BadRequest("needs an `audio` file".into()));
    }
    for (i, p) in audio.iter().enumerate() {
        let decoded = sonic_audio::decode_file(p).map_err(|e| {
            ServeError::BadRequest(format!(
                "sound {i}: {}",
                e.to_string()
                    .replace(&p.display().to_string(), "the upload")
            ))
        })?;
        if decoded.frames() == 0 {
            return Err(ServeError::BadRequest(format!("sound {i} is empty")));
        }
    }
    Ok(())
}

async fn submit(
    state: AppState,
    form: Multipart,
    edit: bool,
) -> Result<(StatusCode, Json<serde_json::Value>), ServeError> {
    let (id, folder) = state.jobs.new_folder()?;
    let result = async {
        let (fields, audio, image) = read_form(&state, form, &folder).await?;
        let params = fields.generate(&state.limits, audio.len())?;
        let audio_for_check = audio.clone();
        tokio::task::spawn_blocking(move || check_audio(&audio_for_check))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))??;
        let input = if edit {
            let image =
                image.ok_or_else(|| ServeError::BadRequest("needs an `image` file".into()))?;
            JobInput::Edit {
                audio,
                image,
                params: params.clone(),
                edit: fields.edit()?,
            }
        } else {
            JobInput::Generate {
                audio,
                params: params.clone(),
            }
        };
        let mut shown = serde_json::to_value(&params).unwrap_or_default();
        if let (JobInput::Edit { edit, .. }, Some(obj)) = (&input, shown.as_object_mut()) {
            obj.insert(
                "edit".into(),
                serde_json::to_value(edit).unwrap_or_default(),
            );
        }
        state.jobs.submit(id.clone(), folder.clone(), input, shown)
    }
    .await;
    match result {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id })))),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&folder);
            Err(e)
        }
    }
}

/// The multipart body, or a 400 / 415 in the API's JSON form.
fn form(form: Result<Multipart, MultipartRejection>) -> Result<Multipart, ServeError> {
    form.map_err(|e| {
        ServeError::BadRequest(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })
}

async fn generate(
    State(state): State<AppState>,
    body: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ServeError> {
    submit(state, form(body)?, false).await
}

async fn edit(
    State(state): State<AppState>,
    body: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ServeError> {
    submit(state, form(body)?, true).await
}

async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Snapshot>, ServeError> {
    state.jobs.snapshot(&id).map(Json)
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Snapshot>, ServeError> {
    state.jobs.cancel(&id).map(Json)
}

async fn image(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ServeError> {
    let path = state.jobs.result(&id)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ServeError::Internal(format!("cannot read the picture: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"sonic-{}.png\"", &id[..id.len().min(8)]),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Server-sent events: the job's state each time it changes, until it is final.
async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ServeError> {
    let rx = state.jobs.subscribe(&id)?;
    let stream = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let snap = rx.borrow_and_update().clone();
        let event = Event::default()
            .event("progress")
            .json_data(&snap)
            .unwrap_or_else(|_| Event::default().data("{}"));
        if snap.status.is_final() {
            return Some((Ok(event), (rx, true)));
        }
        // A sender dropped (server shutting down) ends the stream after this event.
        let ended = rx.changed().await.is_err();
        Some((Ok(event), (rx, ended)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_file_names_only_give_known_extensions() {
        let audio = ["wav", "flac"];
        assert_eq!(
            safe_extension(Some("a.WAV"), &audio).as_deref(),
            Some("wav")
        );
        assert_eq!(safe_extension(Some("../../etc/passwd"), &audio), None);
        assert_eq!(safe_extension(Some("x.sh"), &audio), None);
        assert_eq!(safe_extension(None, &audio), None);
    }
}
