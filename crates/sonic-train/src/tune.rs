//! Hyperparameter search for the trainers (`sonic tune`): the search itself is the
//! `sonic-tune` crate (re-exported here, so `sonic_train::tune::study::Study` still names it);
//! [`objective`] turns a trial into a stage-1 / stage-2 training run whose validation loss is
//! the value the search minimises.

pub use sonic_tune::*;

pub mod objective;
