//! The error type of `sonic-caption`.

/// Errors of the captioner: files, configs and weights, image preprocessing, and inputs the
/// model cannot take.
#[derive(Debug, thiserror::Error)]
pub enum CaptionError {
    /// Files, configs and weights (names the file, key and value), inputs of the wrong shape.
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// The image preprocessing (shared with CLIP: names the image or the config key).
    #[error(transparent)]
    Clip(#[from] sonic_clip::ClipError),
    /// A token sequence that is empty or longer than the decoder's position table.
    #[error("token sequence of length {found} does not fit the text decoder (1..={max})")]
    SequenceLength {
        /// The length given.
        found: usize,
        /// The decoder's `max_position_embeddings`.
        max: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The id.
        id: i64,
        /// The vocabulary size.
        vocab: usize,
    },
    /// Inputs that do not fit together or the model (names the argument and why): batch sizes
    /// of ids, mask and image embeddings, image sizes, row indices.
    #[error("invalid input {what}: {message}")]
    Input {
        /// The argument.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// Decoding settings out of range, or logits the decoding cannot use.
    #[error(transparent)]
    Generation(crate::generation::GenerationError),
    /// A tokenizer file (vocab.txt, tokenizer_config.json, ...) that is missing, unreadable or
    /// invalid, or a vocabulary that cannot tokenize (names the file and what is wrong).
    #[error("tokenizer file {}: {message}", path.display())]
    Tokenizer {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (the key and value where one is at fault).
        message: String,
    },
}

impl From<crate::generation::GenerationError> for CaptionError {
    fn from(e: crate::generation::GenerationError) -> Self {
        CaptionError::Generation(e)
    }
}

impl CaptionError {
    /// A [`CaptionError::Input`].
    pub fn input(what: impl Into<String>, message: impl Into<String>) -> Self {
        CaptionError::Input {
            what: what.into(),
            message: message.into(),
        }
    }
}
