//! [`SchedulerChoice`]: the user-facing scheduler names of [`crate::scheduler_by_name`] as an
//! enum, with `FromStr` / `Display`, for command lines and configs.

use crate::error::{Result, SchedulerError};
use crate::{SCHEDULER_NAMES, Scheduler, scheduler_by_name};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// A scheduler chosen by name.
///
/// ```
/// use sonic_schedulers::SchedulerChoice;
/// let s: SchedulerChoice = "dpm++2m-karras".parse().unwrap();
/// assert_eq!(s, SchedulerChoice::DpmSolver2mKarras);
/// assert_eq!(s.to_string(), "dpm++2m-karras");
/// assert!("warp-drive".parse::<SchedulerChoice>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulerChoice {
    /// The model's own `scheduler_config.json` class.
    #[default]
    Model,
    /// DDIM (deterministic, eta = 0).
    Ddim,
    /// DDIM inversion (image latents to noise).
    DdimInverse,
    /// PNDM in PLMS mode.
    Pndm,
    /// Euler (discrete).
    Euler,
    /// Euler with Karras sigmas.
    EulerKarras,
    /// DPM-Solver++ 2M.
    DpmSolver2m,
    /// DPM-Solver++ 2M with Karras sigmas.
    DpmSolver2mKarras,
    /// `lcm`: Latent Consistency Model sampling (LCM models, LCM-LoRA), 4-8 steps.
    Lcm,
}

impl SchedulerChoice {
    /// Every choice, in the order of [`SCHEDULER_NAMES`].
    pub const ALL: [SchedulerChoice; 9] = [
        SchedulerChoice::Ddim,
        SchedulerChoice::DdimInverse,
        SchedulerChoice::Pndm,
        SchedulerChoice::Euler,
        SchedulerChoice::EulerKarras,
        SchedulerChoice::DpmSolver2m,
        SchedulerChoice::DpmSolver2mKarras,
        SchedulerChoice::Lcm,
        SchedulerChoice::Model,
    ];

    /// The name [`crate::scheduler_by_name`] understands.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerChoice::Ddim => SCHEDULER_NAMES[0],
            SchedulerChoice::DdimInverse => SCHEDULER_NAMES[1],
            SchedulerChoice::Pndm => SCHEDULER_NAMES[2],
            SchedulerChoice::Euler => SCHEDULER_NAMES[3],
            SchedulerChoice::EulerKarras => SCHEDULER_NAMES[4],
            SchedulerChoice::DpmSolver2m => SCHEDULER_NAMES[5],
            SchedulerChoice::DpmSolver2mKarras => SCHEDULER_NAMES[6],
            SchedulerChoice::Lcm => SCHEDULER_NAMES[7],
            SchedulerChoice::Model => SCHEDULER_NAMES[8],
        }
    }

    /// One line on what the choice is.
    pub fn description(self) -> &'static str {
        match self {
            SchedulerChoice::Model => "the model's own scheduler_config.json class",
            SchedulerChoice::Ddim => "DDIM, deterministic (eta = 0)",
            SchedulerChoice::DdimInverse => "DDIM inversion: image latents to noise",
            SchedulerChoice::Pndm => "PNDM in PLMS mode (Stable Diffusion's default)",
            SchedulerChoice::Euler => "Euler (discrete sigmas)",
            SchedulerChoice::EulerKarras => "Euler with Karras sigmas",
            SchedulerChoice::DpmSolver2m => "DPM-Solver++ 2M, good in 20-25 steps",
            SchedulerChoice::DpmSolver2mKarras => "DPM-Solver++ 2M with Karras sigmas",
            SchedulerChoice::Lcm => {
                "LCM, 4-8 steps with an LCM model or LCM-LoRA (stochastic, seeded)"
            }
        }
    }

    /// Builds the scheduler from a model's scheduler config ([`scheduler_by_name`]).
    pub fn build(self, model_config: &Value) -> Result<Box<dyn Scheduler>> {
        scheduler_by_name(self.name(), model_config)
    }
}

impl fmt::Display for SchedulerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerChoice {
    type Err = SchedulerError;

    /// Parses a name of [`SCHEDULER_NAMES`] (case-insensitive, `_` for `-`).
    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| SchedulerError::UnknownClass {
                name: s.to_string(),
                known: SCHEDULER_NAMES.join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_builds() {
        let config = serde_json::json!({
            "_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1,
            "set_alpha_to_one": false, "skip_prk_steps": true
        });
        for c in SchedulerChoice::ALL {
            assert_eq!(c.name().parse::<SchedulerChoice>().unwrap(), c);
            assert!(c.build(&config).is_ok(), "{c}");
        }
        assert_eq!(
            "DPM++2M_KARRAS".parse::<SchedulerChoice>().unwrap(),
            SchedulerChoice::DpmSolver2mKarras
        );
        let e = "lms".parse::<SchedulerChoice>().unwrap_err();
        assert!(e.to_string().contains("lms"), "{e}");
    }
}
