//! Run-time device selection.
//!
//! Backends are cargo features (`flex` by default, `ndarray`, `wgpu`, `cuda`, `metal`, `cpu`);
//! the device is a string chosen at run time, e.g. `--device wgpu`.

use crate::error::{CoreError, Result};
use burn::tensor::Device;

/// The device strings this build understands, for help texts.
pub fn available_devices() -> Vec<&'static str> {
    let mut v = Vec::new();
    if cfg!(feature = "flex") {
        v.push("flex");
    }
    if cfg!(feature = "ndarray") {
        v.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
        v.push("wgpu-cpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda[:N]");
    }
    if cfg!(feature = "metal") {
        v.push("metal");
    }
    if cfg!(feature = "cpu") {
        v.push("cpu");
    }
    v
}

/// The default device: `$SONIC_DEVICE` when set (e.g. `SONIC_DEVICE=wgpu-cpu cargo test`),
/// else the first of flex, ndarray, wgpu, cuda, metal, cpu that is compiled in.
pub fn default_device() -> Result<Device> {
    if let Ok(spec) = std::env::var("SONIC_DEVICE")
        && !spec.trim().is_empty()
    {
        return parse_device(&spec);
    }
    let first = available_devices().first().copied().ok_or_else(|| CoreError::Device {
        spec: "default".into(),
        reason: "no backend feature is enabled (build with --features flex, ndarray, wgpu, cuda or metal)".into(),
    })?;
    parse_device(first.trim_end_matches("[:N]"))
}

fn unavailable(spec: &str, feature: &str) -> CoreError {
    CoreError::Device {
        spec: spec.to_string(),
        reason: format!(
            "this build lacks the `{feature}` feature; available: {}",
            available_devices().join(", ")
        ),
    }
}

/// Parses a device string: `flex`, `ndarray`, `cpu`, `wgpu` (default adapter), `wgpu-cpu`
/// (a software adapter such as Mesa's lavapipe), `wgpu:N` (discrete GPU N), `cuda`, `cuda:N`,
/// `metal`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    #[allow(unused_variables)]
    let (name, index) = match s.split_once(':') {
        Some((n, i)) => {
            let idx: usize = i.parse().map_err(|_| CoreError::Device {
                spec: spec.to_string(),
                reason: format!("`{i}` is not a device index"),
            })?;
            (n.to_string(), Some(idx))
        }
        None => (s.clone(), None),
    };
    match name.as_str() {
        "flex" => {
            #[cfg(feature = "flex")]
            {
                return Ok(Device::flex());
            }
            #[allow(unreachable_code)]
            Err(unavailable(spec, "flex"))
        }
        "ndarray" => {
            #[cfg(feature = "ndarray")]
            {
                return Ok(Device::ndarray());
            }
            #[allow(unreachable_code)]
            Err(unavailable(spec, "ndarray"))
        }
        "cpu" => {
            #[cfg(feature = "cpu")]
            {
                return Ok(Device::cpu());
            }
            #[allow(unreachable_code)]
            Err(unavailable(spec, "cpu"))
        }
        "wgpu" | "wgpu-cpu" => {
            #[cfg(feature = "wgpu")]
            {
                use burn::tensor::DeviceKind;
                let kind = match (name.as_str(), index) {
                    ("wgpu-cpu", _) => DeviceKind::Cpu,
                    (_, Some(i)) => DeviceKind::DiscreteGpu(i),
                    _ => DeviceKind::DefaultDevice,
                };
                return Ok(Device::wgpu(kind));
            }
            #[allow(unreachable_code)]
            Err(unavailable(spec, "wgpu"))
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            {
                return Ok(Device::cuda(index.unwrap_or(0)));
            }
            #[allow(unreachable_code)]
            Err(unavailable(spec, "cuda"))
        }
        "metal" => {
            #[cfg(feature = "metal")]
            {
                return Ok(Device::metal(burn::tensor::DeviceKind::DefaultDevice));
            }
            #[allow(unreachable_code)]
            Err(unavailable(spec, "metal"))
        }
        _ => Err(CoreError::Device {
            spec: spec.to_string(),
            reason: format!(
                "unknown backend; available: {}",
                available_devices().join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_device_is_an_error_naming_it() {
        let e = parse_device("tpu").unwrap_err();
        assert!(e.to_string().contains("tpu"), "{e}");
        let e = parse_device("cuda:x").unwrap_err();
        assert!(e.to_string().contains("not a device index"), "{e}");
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_parses() {
        assert!(parse_device("FLEX").is_ok());
        assert!(default_device().is_ok());
    }
}
