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
    /// A token sequence without the end-of-text token the projection pools.
    #[error("token sequence has no end-of-text token (id {eos})")]
    NoEndOfText {
        /// The end-of-text id looked for.
        eos: i64,
    },
    /// Pixel values whose shape the image tower cannot take.
    #[error(
        "pixel values of shape {found:?} do not fit the image tower (expected [B, {channels}, {size}, {size}])"
    )]
    ImageShape {
        /// The shape given.
        found: Vec<usize>,
        /// The number of channels of the model.
        channels: usize,
        /// The image size of the model.
        size: usize,
    },
    /// An image the processor cannot prepare (names the image and why).
    #[error("cannot preprocess {image}: {message}")]
    Image {
        /// The image (its file, or `<memory>`).
        image: String,
        /// What is wrong.
        message: String,
    },
}
