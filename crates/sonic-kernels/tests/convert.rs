//! The vectorised conversions against `half`: bit for bit on ~17 M f32 bit patterns spread
//! over the whole range plus the special ones (zeros, infinities, NaNs with payloads,
//! subnormals, ties with an even and an odd kept bit, values that round up to infinity), and
//! on all 65 536 bf16 patterns (NaNs only as NaNs); lengths that are not multiples of 16 take the scalar tail.

use half::bf16;
use sonic_kernels::convert::{bf16_to_f32, f32_to_bf16, to_bf16_vec, to_f32_vec};

#[test]
fn rounding_to_bf16_is_halfs_bit_for_bit() {
    let mut bits: Vec<u32> = (0..=u32::MAX).step_by(251).collect();
    bits.extend([
        0x0000_0000,
        0x8000_0000,
        0x7f80_0000,
        0xff80_0000, // zeros, infinities
        0x7fc0_0000,
        0x7f80_0001,
        0xffc1_2345,
        0x7fbf_ffff, // NaNs (quiet, signalling, payloads)
        0x0000_0001,
        0x0000_8000,
        0x0001_8000,
        0x807f_ffff, // subnormals, ties
        0x3f80_8000,
        0x3f81_8000,
        0x3f80_8001,
        0x3f80_7fff, // ties to even, just above / below
        0x7f7f_ffff,
        0x7f7f_8000,
        0xff7f_8000,
        0x7f7f_7fff, // the largest finite, rounding to inf
    ]);
    bits.push(0x3f80_0000); // an odd count: the scalar tail runs too
    let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
    let mut got = vec![bf16::ZERO; values.len()];
    f32_to_bf16(&values, &mut got);
    for ((&b, &v), g) in bits.iter().zip(&values).zip(&got) {
        assert_eq!(
            g.to_bits(),
            bf16::from_f32(v).to_bits(),
            "f32 bits {b:#010x}"
        );
    }
    let par = to_bf16_vec(&values);
    assert!(
        par.iter()
            .zip(&got)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn widening_is_exact_for_every_bf16() {
    let all: Vec<bf16> = (0..=u16::MAX)
        .map(bf16::from_bits)
        .chain([bf16::ONE])
        .collect();
    let mut got = vec![0f32; all.len()];
    bf16_to_f32(&all, &mut got);
    for (h, g) in all.iter().zip(&got) {
        if h.is_nan() {
            // `half` also sets the quiet bit of a signalling NaN; a NaN is all that is asked.
            assert!(g.is_nan(), "bf16 bits {:#06x}", h.to_bits());
        } else {
            assert_eq!(
                g.to_bits(),
                h.to_f32().to_bits(),
                "bf16 bits {:#06x}",
                h.to_bits()
            );
        }
    }
    let par = to_f32_vec(&all);
    assert!(
        par.iter()
            .zip(&got)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
