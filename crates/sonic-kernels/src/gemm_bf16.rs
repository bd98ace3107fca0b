//! bfloat16 matrix products on AVX512-BF16 (`vdpbf16ps`), accumulated in f32.
//!
//! `C = [C +] A B` with `A` `m x k` and `B` `k x n` in bf16 (both row-major, unit stride along
//! the row) and `C` `m x n` in f32. One `vdpbf16ps` multiplies 16 pairs of bf16 and adds both
//! products of each pair to an f32 lane: twice the multiply-adds of an f32 FMA, so a bf16
//! product runs at up to twice the f32 rate instead of being widened to f32 first.
//!
//! Blocking (GotoBLAS-style): `B` is packed per block of [`KC`] pairs of rows and up to
//! [`NC`] columns into panels of [`NR`] columns whose rows are interleaved in pairs (lane `j`
//! of a 32-bit pair holds `B[2q][j]` in its low half, `B[2q + 1][j]` in its high half, zero
//! past `k` or `n`); `A` is read in place, one 32-bit pair of each of [`MR`] rows broadcast per
//! step (its rows run along `k`, exactly the pair order). Each micro-tile is `MR x NR` = 12 x
//! 32 f32 accumulators in 24 registers. An odd `k` ends with a half pair whose high half is
//! zero on both sides.
//!
//! Only compiled for x86-64 and only run where [`available`] says the CPU has AVX512-BF16;
//! callers widen to f32 otherwise.

use half::bf16;
use rayon::prelude::*;

/// Rows of a micro-tile.
pub const MR: usize = 12;
/// Columns of a micro-tile (two 16-lane registers).
pub const NR: usize = 32;
/// Pairs of `k` per packed block (384 rows of `B`: a panel is 24 KiB, in L1 beside `A`'s
/// strip of 9 KiB).
pub const KC: usize = 192;
/// Columns of `B` per packed block (at most; 384 KiB packed, in L2).
pub const NC: usize = 512;

/// Whether this CPU runs the bf16 products (AVX-512 F / BW and AVX512-BF16, and the kernels'
/// ISA not lowered below AVX-512 by `SONIC_KERNELS_ISA`).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512bf16")
        }) && crate::cpu::Isa::selected() == crate::cpu::Isa::Avx512
            && crate::cpu::enabled("bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// An operand or result matrix: its first value and row stride (unit column stride).
#[derive(Clone, Copy)]
pub(crate) struct Mat<T> {
    pub(crate) ptr: *const T,
    pub(crate) rs: usize,
}
// SAFETY: the products only read `A` and `B` and write disjoint tiles of `C` per task.
unsafe impl<T> Send for Mat<T> {}
unsafe impl<T> Sync for Mat<T> {}

impl<T> Mat<T> {
    /// The sub-matrix from row `i`, column `j` (a method, so that closures capture the whole
    /// `Send` wrapper, not its raw pointer).
    ///
    /// # Safety
    /// `(i, j)` must lie inside the matrix.
    unsafe fn at(self, i: usize, j: usize) -> Mat<T> {
        Mat {
            // SAFETY: the caller's contract.
            ptr: unsafe { self.ptr.add(i * self.rs + j) },
            rs: self.rs,
        }
    }
}

/// `c = [c +] a b` on slices: `a` `m x k` (row stride `lda`), `b` `k x n` (row stride `ldb`),
/// `c` `m x n` (row stride `ldc`), added to `c`'s values when `accumulate`, else overwriting
/// them; split over the rayon threads when `parallel`.
///
/// # Panics
/// If [`available`] is false or a slice is shorter than its shape and stride imply.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    [m, n, k]: [usize; 3],
    a: &[bf16],
    lda: usize,
    b: &[bf16],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    assert!(available(), "the CPU lacks AVX512-BF16");
    let fits = |len: usize, rows: usize, cols: usize, ld: usize| {
        rows == 0 || cols == 0 || (ld >= cols && len >= (rows - 1) * ld + cols)
    };
    assert!(fits(a.len(), m, k, lda), "a is shorter than m x k");
    assert!(fits(b.len(), k, n, ldb), "b is shorter than k x n");
    assert!(fits(c.len(), m, n, ldc), "c is shorter than m x n");
    // SAFETY: the slices hold the shapes just checked; `available` checked the CPU.
    unsafe {
        gemm(
            [m, n, k],
            Mat {
                ptr: a.as_ptr(),
                rs: lda,
            },
            Mat {
                ptr: b.as_ptr(),
                rs: ldb,
            },
            Mat {
                ptr: c.as_mut_ptr() as *const f32,
                rs: ldc,
            },
            accumulate,
            parallel,
        )
    }
}

/// The product behind [`matmul`], on raw matrices.
///
/// # Safety
/// [`available`] must be true; `a`, `b` and `c` must hold `m x k`, `k x n` and `m x n` values
/// at their row strides, `c` writable and not overlapping `a` or `b`, and no other thread may
/// touch `c`'s values meanwhile.
pub(crate) unsafe fn gemm(
    [m, n, k]: [usize; 3],
    a: Mat<bf16>,
    b: Mat<bf16>,
    c: Mat<f32>,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row `i` of `c` holds `n` values (the caller's contract).
                unsafe { std::slice::from_raw_parts_mut((c.ptr as *mut f32).add(i * c.rs), n) }
                    .fill(0.0);
            }
        }
        return;
    }
    // Tasks: column blocks (each packs its own part of `B` once), and row blocks where there
    // are too few column blocks to keep the threads busy.
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let col_blocks_wanted = (2 * threads).max(1);
    let nc = n
        .div_ceil(col_blocks_wanted)
        .next_multiple_of(NR)
        .clamp(NR, NC);
    let col_blocks = n.div_ceil(nc);
    let row_blocks = if col_blocks >= 2 * threads || threads == 1 {
        1
    } else {
        (2 * threads)
            .div_ceil(col_blocks)
            .min(m.div_ceil(4 * MR))
            .max(1)
    };
    let mc = m.div_ceil(row_blocks).next_multiple_of(MR);
    let row_blocks = m.div_ceil(mc);
    let task = |pack: &mut Vec<u16>, t: usize| {
        let (rb, cb) = (t / col_blocks, t % col_blocks);
        let (i0, j0) = (rb * mc, cb * nc);
        let (rows, cols) = (mc.min(m - i0), nc.min(n - j0));
        // SAFETY: task `t` alone writes rows `i0..i0 + rows`, columns `j0..j0 + cols` of `c`;
        // every pointer stays inside the caller's matrices.
        unsafe {
            block(
                [rows, cols, k],
                a.at(i0, 0),
                b.at(0, j0),
                c.at(i0, j0),
                accumulate,
                pack,
            )
        }
    };
    let tasks = row_blocks * col_blocks;
    if threads == 1 || tasks == 1 {
        let mut pack = Vec::new();
        for t in 0..tasks {
            task(&mut pack, t);
        }
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each_init(Vec::new, |pack, t| task(pack, t));
    }
}

/// One task's product on one thread: `B`'s columns packed per [`KC`] pairs, all of `A`'s rows.
///
/// # Safety
/// As for [`gemm`], for this block.
unsafe fn block(
    [m, n, k]: [usize; 3],
    a: Mat<bf16>,
    b: Mat<bf16>,
    c: Mat<f32>,
    accumulate: bool,
    pack: &mut Vec<u16>,
) {
    let pairs = k.div_ceil(2);
    let panels = n.div_ceil(NR);
    let mut q0 = 0;
    while q0 < pairs {
        let kc = KC.min(pairs - q0);
        let rows = (2 * kc).min(k - 2 * q0);
        pack.resize(panels * kc * 2 * NR, 0);
        // SAFETY: rows `2 q0 .. 2 q0 + rows` of `B`'s `n` columns are inside `B`.
        unsafe { pack_b(b.ptr.add(2 * q0 * b.rs), b.rs, rows, n, kc, pack) };
        let load_c = accumulate || q0 > 0;
        for p in 0..panels {
            let j0 = p * NR;
            let cols = NR.min(n - j0);
            let panel = pack[p * kc * 2 * NR..].as_ptr();
            let mut i0 = 0;
            while i0 < m {
                let r = MR.min(m - i0);
                // SAFETY: rows `i0 .. i0 + r` of `A` from column `2 q0` hold `rows` values;
                // the tile of `C` is inside `C` (the caller's contract).
                unsafe {
                    tile(
                        r,
                        kc,
                        rows % 2 == 1,
                        a.ptr.add(i0 * a.rs + 2 * q0) as *const u16,
                        a.rs,
                        panel,
                        (c.ptr as *mut f32).add(i0 * c.rs + j0),
                        c.rs,
                        cols,
                        load_c,
                    )
                };
                i0 += r;
            }
        }
        q0 += kc;
    }
}

/// Packs `rows` (<= `2 kc`) rows of `B` (row stride `ldb`) and `n` columns into panels of
/// [`NR`] columns: panel `p`, pair `q`, lane `j` at `((p kc + q) NR + j) * 2`, low half row
/// `2q`, high half row `2q + 1`; zero past `rows` and past `n`.
///
/// # Safety
/// `b` must hold `rows x n` values at row stride `ldb`; `out` holds the packed size.
pub(crate) unsafe fn pack_b(
    b: *const bf16,
    ldb: usize,
    rows: usize,
    n: usize,
    kc: usize,
    out: &mut [u16],
) {
    let b = b as *const u16;
    let panels = n.div_ceil(NR);
    // Row pairs outer, panels inner: each row of `B` is read front to back.
    for q in 0..kc {
        let (r0, r1) = (2 * q, 2 * q + 1);
        for p in 0..panels {
            let j0 = p * NR;
            let cols = NR.min(n - j0);
            let d = &mut out[(p * kc + q) * 2 * NR..(p * kc + q + 1) * 2 * NR];
            if r1 < rows && cols == NR {
                // SAFETY: both rows hold `NR` values from column `j0`.
                unsafe {
                    interleave_32(b.add(r0 * ldb + j0), b.add(r1 * ldb + j0), d.as_mut_ptr())
                };
                continue;
            }
            for j in 0..NR {
                // SAFETY: only rows below `rows` and columns below `n` are read.
                let at = |r: usize| unsafe {
                    if r < rows && j < cols {
                        *b.add(r * ldb + j0 + j)
                    } else {
                        0
                    }
                };
                d[2 * j] = at(r0);
                d[2 * j + 1] = at(r1);
            }
        }
    }
}

/// Packs the transpose of `K` (`cols` rows of `d` values, row stride `ldk`) as [`pack_b`]
/// packs a `d x cols` matrix with `kc = ceil(d / 2)`: panel `p` holds keys `32 p ..`, lane
/// `j` of pair `q` is `(K[j][2q], K[j][2q + 1])`, zero past `d` and past `cols`. Each lane is
/// one 32-bit read of a key's row.
///
/// # Safety
/// `k` must hold `cols x d` values at row stride `ldk`; `out` holds `ceil(cols / NR) x
/// ceil(d / 2) x 2 NR` values.
pub(crate) unsafe fn pack_bt(k: *const bf16, ldk: usize, cols: usize, d: usize, out: &mut [u16]) {
    let k = k as *const u16;
    let pairs = d.div_ceil(2);
    let full = d / 2;
    for p in 0..cols.div_ceil(NR) {
        let j0 = p * NR;
        let keys = NR.min(cols - j0);
        let dst = &mut out[p * pairs * 2 * NR..(p + 1) * pairs * 2 * NR];
        for j in 0..NR {
            for q in 0..pairs {
                let (lo, hi) = if j < keys {
                    // SAFETY: key `j0 + j` has `d` values; the high half only below `d`.
                    unsafe {
                        let row = k.add((j0 + j) * ldk);
                        (
                            *row.add(2 * q),
                            if q < full { *row.add(2 * q + 1) } else { 0 },
                        )
                    }
                } else {
                    (0, 0)
                };
                dst[q * 2 * NR + 2 * j] = lo;
                dst[q * 2 * NR + 2 * j + 1] = hi;
            }
        }
    }
}

/// Interleaves 32 values of two rows: `out[2j] = lo[j]`, `out[2j + 1] = hi[j]`.
///
/// # Safety
/// `lo` and `hi` hold 32 values, `out` 64; AVX-512 BW is available.
#[inline]
unsafe fn interleave_32(lo: *const u16, hi: *const u16, out: *mut u16) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        x86::interleave_32(lo, hi, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    for j in 0..32 {
        // SAFETY: the caller's contract.
        unsafe {
            *out.add(2 * j) = *lo.add(j);
            *out.add(2 * j + 1) = *hi.add(j);
        }
    }
}

/// One micro-tile: `C[r x cols] = [C +] A[r x 2kc] B_panel`, `r <= MR`, `cols <= NR`;
/// `odd`: the last pair has only its low row.
///
/// # Safety
/// `a` holds `r` rows of `2 kc - odd` values (row stride `lda`), `panel` `kc` packed pairs,
/// `c` `r x cols` values (row stride `ldc`); AVX512-BF16 is available.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile(
    r: usize,
    kc: usize,
    odd: bool,
    a: *const u16,
    lda: usize,
    panel: *const u16,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    load_c: bool,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract.
    unsafe {
        macro_rules! rows {
            ($($n:literal)*) => {
                match r {
                    $($n => x86::tile::<$n>(kc, odd, a, lda, panel, c, ldc, cols, load_c),)*
                    _ => unreachable!("a tile has 1 to MR rows"),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8 9 10 11 12)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (r, kc, odd, a, lda, panel, c, ldc, cols, load_c);
        unreachable!("bf16 products run only where `available` is true (x86-64)")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `vpermt2w` indices: lane `2j` takes `lo[j]`, lane `2j + 1` takes `hi[j]` (index
    /// `32 + j`), for the first 16 columns and for the second.
    const INTERLEAVE: [[i16; 32]; 2] = {
        let mut idx = [[0i16; 32]; 2];
        let mut half = 0;
        while half < 2 {
            let mut i = 0;
            while i < 32 {
                let j = (16 * half + i / 2) as i16;
                idx[half][i] = if i % 2 == 0 { j } else { 32 + j };
                i += 1;
            }
            half += 1;
        }
        idx
    };

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn interleave_32(lo: *const u16, hi: *const u16, out: *mut u16) {
        // SAFETY: the caller's contract (32 values each, 64 out).
        unsafe {
            let l = _mm512_loadu_si512(lo as *const _);
            let h = _mm512_loadu_si512(hi as *const _);
            let first = _mm512_loadu_si512(INTERLEAVE[0].as_ptr() as *const _);
            let second = _mm512_loadu_si512(INTERLEAVE[1].as_ptr() as *const _);
            _mm512_storeu_si512(out as *mut _, _mm512_permutex2var_epi16(l, first, h));
            _mm512_storeu_si512(
                out.add(32) as *mut _,
                _mm512_permutex2var_epi16(l, second, h),
            );
        }
    }

    /// See [`super::tile`], with `R` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const R: usize>(
        kc: usize,
        odd: bool,
        a: *const u16,
        lda: usize,
        panel: *const u16,
        c: *mut f32,
        ldc: usize,
        cols: usize,
        load_c: bool,
    ) {
        let m0: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            (1u16 << cols) - 1
        };
        let m1: __mmask16 = if cols >= 32 {
            0xffff
        } else if cols > 16 {
            (1u16 << (cols - 16)) - 1
        } else {
            0
        };
        // SAFETY: the caller's contract bounds every access below.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            if load_c {
                for (i, row) in acc.iter_mut().enumerate() {
                    row[0] = _mm512_maskz_loadu_ps(m0, c.add(i * ldc));
                    row[1] = _mm512_maskz_loadu_ps(m1, c.add(i * ldc + 16));
                }
            }
            let full = kc - odd as usize;
            for q in 0..full {
                let b0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(q * 64) as *const _));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(q * 64 + 32) as *const _));
                for (i, row) in acc.iter_mut().enumerate() {
                    let pair = (a.add(i * lda + 2 * q) as *const i32).read_unaligned();
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], av, b1);
                }
            }
            if odd {
                let q = full;
                let b0: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(q * 64) as *const _));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(panel.add(q * 64 + 32) as *const _));
                for (i, row) in acc.iter_mut().enumerate() {
                    let low = *a.add(i * lda + 2 * q) as i32;
                    let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(low));
                    row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], av, b1);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                _mm512_mask_storeu_ps(c.add(i * ldc), m0, row[0]);
                _mm512_mask_storeu_ps(c.add(i * ldc + 16), m1, row[1]);
            }
        }
    }
}
