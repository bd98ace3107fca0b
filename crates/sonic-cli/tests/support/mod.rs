//! Test helpers shared by the integration tests of `sonic-cli`.

pub mod hub;
