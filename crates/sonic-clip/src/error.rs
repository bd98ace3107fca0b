//! The error type of `sonic-clip`.

/// Errors of the CLIP tokenizer and text encoder.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// Files, configs and weights (names the file / key).
    #[error(transparent)]
    Core(#[from] sonic_core::CoreError),
    /// The tokenizer failed (names the file or setting).
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::ClipTokenizerError),
    /// A token sequence is empty or longer than the position table.
    #[error("token sequence of length {found} does not fit the text encoder (1..={max})")]
    SequenceLength {
        /// The length given.
        found: usize,
        /// The number of positions of the model.
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
}
