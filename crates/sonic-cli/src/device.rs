//! The global `--device` (or `SONIC_DEVICE`): parsed with the device names of this build as
//! possible values (listed by `--help`, completed by the shells), and, when omitted, the best
//! compiled-in device that works: CUDA, then Metal, then a wgpu GPU adapter (a discrete GPU,
//! not a software rasteriser), then flex, then ndarray.

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};
use clap::builder::{PossibleValue, TypedValueParser};

/// The device names `--device` accepts in this build (`cuda:N` and `wgpu:N` take an index).
pub fn names() -> Vec<&'static str> {
    sonic_core::device::available_devices()
        .into_iter()
        .map(|n| n.trim_end_matches("[:N]"))
        .collect()
}

/// Parses `--device` values: one of [`names`], optionally `:N` for an index.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceParser;

impl TypedValueParser for DeviceParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let invalid = || {
            let mut e = clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd);
            e.insert(
                clap::error::ContextKind::InvalidArg,
                clap::error::ContextValue::String(arg.map_or("--device".into(), |a| a.to_string())),
            );
            e.insert(
                clap::error::ContextKind::InvalidValue,
                clap::error::ContextValue::String(value.to_string_lossy().into_owned()),
            );
            e.insert(
                clap::error::ContextKind::ValidValue,
                clap::error::ContextValue::Strings(names().iter().map(|s| s.to_string()).collect()),
            );
            e
        };
        let text = value
            .to_str()
            .ok_or_else(invalid)?
            .trim()
            .to_ascii_lowercase();
        let base = text.split_once(':').map_or(text.as_str(), |(b, _)| b);
        if !names().contains(&base) {
            return Err(invalid());
        }
        Ok(text)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(names().into_iter().map(|n| {
            let help = match n {
                "flex" => "CPU, Burn's flex backend",
                "ndarray" => "CPU, ndarray backend",
                "wgpu" => "GPU through wgpu (Vulkan, Metal, DX12); wgpu:N = discrete GPU N",
                "wgpu-cpu" => "wgpu on a software adapter",
                "cuda" => "NVIDIA GPU; cuda:N = GPU N",
                "metal" => "Apple GPU",
                _ => "",
            };
            PossibleValue::new(n).help(help)
        })))
    }
}

/// Whether a small computation on `device` succeeds (a missing driver or adapter panics inside
/// the backend; the panic is caught and its message kept quiet).
fn works(device: &Device) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Tensor::<1>::from_floats([1.0, 2.0], device);
        t.sum().into_scalar::<f32>() == 3.0
    }))
    .unwrap_or(false);
    std::panic::set_hook(hook);
    ok
}

/// The order in which devices are tried when `--device` is not given: a CUDA GPU, a Metal GPU,
/// a discrete GPU through wgpu, then the CPU backends. Each entry: (cargo feature, device spec).
const PREFERENCE: [(&str, &str); 5] = [
    ("cuda", "cuda"),
    ("metal", "metal"),
    ("wgpu", "wgpu:0"),
    ("flex", "flex"),
    ("ndarray", "ndarray"),
];

/// The first device spec of [`PREFERENCE`] whose feature is `available` and that `works`.
fn pick(available: &[&str], works: &mut dyn FnMut(&str) -> bool) -> Option<&'static str> {
    PREFERENCE
        .iter()
        .filter(|(feature, _)| available.contains(feature))
        .map(|&(_, spec)| spec)
        .find(|spec| works(spec))
}

/// The device to run on: `spec` when given (an error when it does not parse), else the first of
/// cuda, metal, wgpu:0 (discrete GPU), flex, ndarray that is compiled in and works. Returns
/// the device and its name.
pub fn select(spec: Option<&str>) -> Result<(Device, String)> {
    if let Some(spec) = spec {
        return Ok((sonic_core::device::parse_device(spec)?, spec.to_string()));
    }
    let available = names();
    let mut found = None;
    let chosen = pick(
        &available,
        &mut |spec| match sonic_core::device::parse_device(spec) {
            Ok(device) if works(&device) => {
                found = Some(device);
                true
            }
            _ => false,
        },
    );
    match (chosen, found) {
        (Some(name), Some(device)) => Ok((device, name.to_string())),
        _ => bail!(
            "no working device among those compiled in ({}); pass --device",
            available.join(", ")
        ),
    }
}

/// [`select`], then prints `device: NAME` on stderr.
pub fn announce(spec: Option<&str>) -> Result<(Device, String)> {
    let (device, name) = select(spec)?;
    eprintln!("device: {name}");
    Ok((device, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_come_before_the_cpu_and_broken_devices_are_skipped() {
        let all = ["ndarray", "flex", "wgpu", "metal", "cuda"];
        assert_eq!(pick(&all, &mut |_| true), Some("cuda"));
        // No CUDA or Metal GPU: a wgpu GPU, then the CPU.
        let mut gpu_less = |s: &str| !matches!(s, "cuda" | "metal");
        assert_eq!(pick(&all, &mut gpu_less), Some("wgpu:0"));
        let mut cpu_only = |s: &str| matches!(s, "flex" | "ndarray");
        assert_eq!(pick(&all, &mut cpu_only), Some("flex"));
        // A build without flex still finds a device.
        assert_eq!(pick(&["ndarray", "wgpu"], &mut cpu_only), Some("ndarray"));
        // Only what is compiled in is tried, in the preference order.
        let mut tried = Vec::new();
        let none = pick(&["flex", "cuda"], &mut |s| {
            tried.push(s.to_string());
            false
        });
        assert_eq!(
            (none, tried),
            (None, vec!["cuda".to_string(), "flex".to_string()])
        );
    }
}
