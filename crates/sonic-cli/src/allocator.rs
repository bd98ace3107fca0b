//! glibc's allocator, tuned for model activations.
//!
//! By default glibc hands every freed block above its mmap threshold (adaptive, at most
//! 32 MiB) back to the kernel and trims the top of the heap, so each step of a model allocates
//! its activations from fresh pages that the kernel must fault in and zero: about 8 % of the
//! samples of a UNet step (docs/PERFORMANCE.md, entry 16). Blocks up to 32 MiB kept on the heap,
//! and up to 1 GiB of freed heap top kept mapped, let the next step reuse them. Measured on
//! `sonic bench`: unet-64 -2 to -5 %, vae-decode-64 -9 %, unet-32 -6 %, peak RSS +1 to +10 %.
//!
//! Only the binary does this (a library leaves the allocator to its program). Any of glibc's
//! own settings in the environment (`GLIBC_TUNABLES`, `MALLOC_MMAP_THRESHOLD_`,
//! `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`) turns it off, so that they keep their effect.

/// Applies the settings above, unless the environment sets glibc's own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    const OWN: [&str; 4] = [
        "GLIBC_TUNABLES",
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_TOP_PAD_",
    ];
    if OWN.iter().any(|k| std::env::var_os(k).is_some()) {
        return;
    }
    // SAFETY: `mallopt` only changes the allocator's parameters; it is called before any
    // thread is started. A refused value (0 returned) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

/// Nothing to tune with another allocator than glibc's.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
