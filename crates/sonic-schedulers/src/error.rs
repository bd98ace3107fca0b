//! The error type of `sonic-schedulers`.

use sonic_core::CoreError;

/// Everything that can go wrong when building or running a scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The scheduler class name is not one this crate implements.
    #[error("unknown scheduler class `{name}` (known: {known})")]
    UnknownClass {
        /// The name that was asked for.
        name: String,
        /// The names this crate understands, comma separated.
        known: String,
    },
    /// The config is not a JSON object.
    #[error("{class}: the scheduler config must be a JSON object, found {found}")]
    ConfigNotObject {
        /// The scheduler class being built.
        class: String,
        /// A short description of what was found instead.
        found: String,
    },
    /// A config value has the wrong JSON type or is out of range.
    #[error("{class}: config key `{key}` = {value} is invalid: expected {expected}")]
    InvalidConfigValue {
        /// The scheduler class being built.
        class: String,
        /// The config key at fault.
        key: String,
        /// The offending value, as JSON text.
        value: String,
        /// What was expected instead.
        expected: String,
    },
    /// A config value that would change the math in a way this crate does not implement.
    #[error("{class}: config key `{key}` = {value} is not supported: {reason}")]
    UnsupportedConfig {
        /// The scheduler class being built.
        class: String,
        /// The config key at fault.
        key: String,
        /// The offending value, as JSON text.
        value: String,
        /// Why it is rejected, and what is supported.
        reason: String,
    },
    /// `set_timesteps` was asked for an impossible number of steps.
    #[error(
        "{class}: num_inference_steps = {steps} is invalid: it must be between 1 and \
         {limit} = {max}"
    )]
    InvalidStepCount {
        /// The scheduler class.
        class: String,
        /// The requested number of inference steps.
        steps: usize,
        /// The largest allowed number of steps.
        max: usize,
        /// The config value that bounds it (`num_train_timesteps`, or LCM's
        /// `original_inference_steps`).
        limit: String,
    },
    /// A stochastic step (LCM's re-noising) was given no noise.
    #[error("{class}: step {index} adds fresh noise, and none was given")]
    NoiseRequired {
        /// The scheduler class.
        class: String,
        /// The step index.
        index: usize,
    },
    /// A method that needs timesteps was called before `set_timesteps`.
    #[error("{class}: `{operation}` was called before `set_timesteps`")]
    TimestepsNotSet {
        /// The scheduler class.
        class: String,
        /// The method that was called.
        operation: String,
    },
    /// A step index past the end of the timestep schedule.
    #[error("{class}: step index {index} is out of range for a schedule of {len} timesteps")]
    StepIndexOutOfRange {
        /// The scheduler class.
        class: String,
        /// The step index given.
        index: usize,
        /// The number of timesteps in the schedule.
        len: usize,
    },
    /// A multistep scheduler was stepped out of order (its history would be wrong).
    #[error(
        "{class}: step index {got} out of order: this multistep scheduler expected step \
         {expected} next (start again at step 0, or call `reset`)"
    )]
    StepOutOfOrder {
        /// The scheduler class.
        class: String,
        /// The step index the scheduler's history expects.
        expected: usize,
        /// The step index given.
        got: usize,
    },
    /// A training timestep outside `0..num_train_timesteps`.
    #[error("training timestep {timestep} is out of range 0..{num_train_timesteps}")]
    TimestepOutOfRange {
        /// The timestep given.
        timestep: usize,
        /// The number of training timesteps of the schedule.
        num_train_timesteps: usize,
    },
    /// Tensors whose shapes do not fit together.
    #[error("shape mismatch for {what}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Which tensor or argument.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A JSON text (a config file) could not be parsed.
    #[error("invalid JSON in {origin}: {message}")]
    Json {
        /// Where the text came from (a path or a description).
        origin: String,
        /// What the parser said.
        message: String,
    },
    /// An error from the shared plumbing (files, fixture tensors, readback).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// The result type of this crate.
pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;
