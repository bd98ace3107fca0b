//! Which instruction set the kernels use, probed once at run time.

use std::sync::OnceLock;

/// An instruction-set level of the x86-64 paths (other targets always use [`Isa::Portable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, no explicit SIMD (the compiler may still vectorise).
    Portable,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512 F, 16 lanes.
    Avx512,
}

fn probe() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

impl Isa {
    /// The best level this CPU supports.
    pub fn supported() -> Isa {
        static CPU: OnceLock<Isa> = OnceLock::new();
        *CPU.get_or_init(probe)
    }

    /// The level the kernels use: [`Isa::supported`], lowered by `SONIC_KERNELS_ISA`
    /// (`portable`, `avx2` or `avx512`; a level the CPU lacks is never chosen).
    pub fn selected() -> Isa {
        static SELECTED: OnceLock<Isa> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let cap = match std::env::var("SONIC_KERNELS_ISA")
                .ok()
                .as_deref()
                .map(str::trim)
            {
                Some("portable") => Isa::Portable,
                Some("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            };
            cap.min(Isa::supported())
        })
    }

    /// Every level this CPU can run, lowest first (for tests and benches).
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::supported())
            .collect()
    }

    /// `self`, lowered to what the CPU supports: the dispatchers call this so that an
    /// unsupported level can never reach a `target_feature` function.
    pub(crate) fn clamp(self) -> Isa {
        self.min(Isa::supported())
    }
}

/// Whether the kernel family `name` (`attention`, `conv`, `winograd`, `upsample`, `norm`, `geglu`, `bf16`) is enabled: all are, unless
/// listed in `SONIC_KERNELS_OFF` (comma-separated, e.g. `conv,norm`), which sends those
/// operations to Burn's own implementation. Read once; for measuring a kernel against Burn in
/// the same binary and for ruling a kernel out when chasing a numerical difference.
pub fn enabled(name: &str) -> bool {
    static OFF: OnceLock<Vec<String>> = OnceLock::new();
    !OFF.get_or_init(|| {
        std::env::var("SONIC_KERNELS_OFF")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .iter()
    .any(|s| s == name)
}
