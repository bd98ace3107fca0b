//! A small FLAC encoder (16-bit, fixed block size, the fixed predictors of orders 0-4 with
//! partitioned Rice coding), enough to carry a soundtrack losslessly inside an MP4.
//!
//! Each FLAC frame is one MP4 sample; [`FlacStream::streaminfo`] goes into the `dfLa` box.
//! [`FlacStream::to_flac_file`] gives a standalone `.flac` file (used to check the encoder
//! against an independent decoder).

/// Samples per FLAC block (the last block may be shorter).
pub const BLOCK_SIZE: usize = 4096;

/// The encoded stream: its frames and what the STREAMINFO block needs.
#[derive(Debug, Clone)]
pub struct FlacStream {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count (1-8).
    pub channels: usize,
    /// Samples per channel.
    pub total_samples: u64,
    /// The encoded frames, each with its samples per channel.
    pub frames: Vec<(Vec<u8>, usize)>,
}

struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            acc: 0,
            bits: 0,
        }
    }

    /// Writes the low `n` (<= 32) bits of `v`, most significant first.
    fn put(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        self.acc = (self.acc << n) | (v & ((1u64 << n) - 1));
        self.bits += n;
        while self.bits >= 8 {
            self.bits -= 8;
            self.bytes.push((self.acc >> self.bits) as u8);
        }
        self.acc &= (1u64 << self.bits) - 1;
    }

    fn put_signed(&mut self, v: i64, n: u32) {
        self.put(v as u64, n);
    }

    /// `q` zeros then a one.
    fn unary(&mut self, mut q: u64) {
        while q >= 32 {
            self.put(0, 32);
            q -= 32;
        }
        self.put(1, q as u32 + 1);
    }

    fn align(&mut self) {
        if self.bits > 0 {
            self.put(0, 8 - self.bits);
        }
    }
}

fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The frame number in FLAC's UTF-8-like coding.
fn utf8_number(w: &mut BitWriter, n: u64) {
    if n < 0x80 {
        w.put(n, 8);
        return;
    }
    let mut len = 2;
    while len < 7 && n >= 1u64 << (5 * len + 1) {
        len += 1;
    }
    let lead = (0xFF00u64 >> len) & 0xFF;
    w.put(lead | (n >> (6 * (len - 1))), 8);
    for i in (0..len - 1).rev() {
        w.put(0x80 | ((n >> (6 * i)) & 0x3F), 8);
    }
}

/// Residuals of the fixed predictor of `order` (0-4) for `x`, from sample `order` on.
fn fixed_residual(x: &[i32], order: usize) -> Vec<i64> {
    (order..x.len())
        .map(|n| {
            let s = |k: usize| x[n - k] as i64;
            match order {
                0 => s(0),
                1 => s(0) - s(1),
                2 => s(0) - 2 * s(1) + s(2),
                3 => s(0) - 3 * s(1) + 3 * s(2) - s(3),
                _ => s(0) - 4 * s(1) + 6 * s(2) - 4 * s(3) + s(4),
            }
        })
        .collect()
}

fn zigzag(r: i64) -> u64 {
    ((r << 1) ^ (r >> 63)) as u64
}

/// The cheapest Rice parameter (0-30) for `u` and its cost in bits.
fn best_rice(u: &[u64]) -> (u32, u64) {
    let mut best = (0, u64::MAX);
    for k in 0..=30u32 {
        let cost: u64 = u.iter().map(|&v| (v >> k) + 1 + k as u64).sum();
        if cost < best.1 {
            best = (k, cost);
        }
        if u.iter().all(|&v| v >> k == 0) {
            break;
        }
    }
    best
}

/// A residual coding: partition order, Rice parameter per partition, bits in all.
type RicePlan = (u32, Vec<u32>, u64);

/// The partition order and parameters with the fewest bits (RICE2 coding: 5-bit parameters).
fn plan_residual(res: &[i64], block: usize, order: usize) -> RicePlan {
    let u: Vec<u64> = res.iter().map(|&r| zigzag(r)).collect();
    let mut best: RicePlan = (0, Vec::new(), u64::MAX);
    for p in 0..=6u32 {
        let parts = 1usize << p;
        if !block.is_multiple_of(parts) || block / parts <= order {
            break;
        }
        let mut params = Vec::with_capacity(parts);
        let mut bits = 0u64;
        let mut start = 0;
        for i in 0..parts {
            let len = block / parts - if i == 0 { order } else { 0 };
            let (k, cost) = best_rice(&u[start..start + len]);
            params.push(k);
            bits += cost + 5;
            start += len;
        }
        if bits < best.2 {
            best = (p, params, bits);
        }
    }
    best
}

fn write_subframe(w: &mut BitWriter, x: &[i32]) {
    let block = x.len();
    if x.iter().all(|&v| v == x[0]) {
        w.put(0, 8); // padding bit, type CONSTANT, no wasted bits
        w.put_signed(x[0] as i64, 16);
        return;
    }
    let verbatim_bits = 16 * block as u64;
    let mut best: Option<(usize, Vec<i64>, RicePlan)> = None;
    for order in 0..=4.min(block - 1) {
        let res = fixed_residual(x, order);
        let plan = plan_residual(&res, block, order);
        let total = plan.2 + 16 * order as u64 + 6;
        if best
            .as_ref()
            .is_none_or(|b| total < b.2.2 + 16 * b.0 as u64 + 6)
        {
            best = Some((order, res, plan));
        }
    }
    match best {
        Some((order, res, (p, params, bits))) if bits + 16 * (order as u64) + 6 < verbatim_bits => {
            w.put(0, 1);
            w.put(0b001000 | order as u64, 6);
            w.put(0, 1);
            for &v in &x[..order] {
                w.put_signed(v as i64, 16);
            }
            w.put(0b01, 2); // RICE2: 5-bit parameters
            w.put(p as u64, 4);
            let parts = 1usize << p;
            let mut start = 0;
            for (i, &k) in params.iter().enumerate() {
                let len = block / parts - if i == 0 { order } else { 0 };
                w.put(k as u64, 5);
                for &r in &res[start..start + len] {
                    let u = zigzag(r);
                    w.unary(u >> k);
                    w.put(u, k);
                }
                start += len;
            }
        }
        _ => {
            w.put(0, 1);
            w.put(0b000001, 6);
            w.put(0, 1);
            for &v in x {
                w.put_signed(v as i64, 16);
            }
        }
    }
}

/// `f32` samples in `[-1, 1]` to 16-bit integers (rounded, clamped; NaN becomes 0).
pub fn to_i16(samples: &[f32]) -> Vec<i32> {
    samples
        .iter()
        .map(|&s| {
            let v = if s.is_finite() { s } else { 0.0 };
            (v * 32767.0).round().clamp(-32768.0, 32767.0) as i32
        })
        .collect()
}

impl FlacStream {
    /// Encodes `channels` (equal lengths, 1-8 of them, 16-bit values in `i32`) at `sample_rate`
    /// (1 Hz to 655 350 Hz). Returns `None` for an unsupported layout.
    pub fn encode(channels: &[Vec<i32>], sample_rate: u32) -> Option<Self> {
        let n = channels.first()?.len();
        if channels.len() > 8
            || channels.iter().any(|c| c.len() != n)
            || sample_rate == 0
            || sample_rate > 655_350
        {
            return None;
        }
        let mut frames = Vec::new();
        for (index, start) in (0..n).step_by(BLOCK_SIZE).enumerate() {
            let len = BLOCK_SIZE.min(n - start);
            let mut w = BitWriter::new();
            w.put(0b11_1111_1111_1110, 14); // sync code
            w.put(0, 1); // reserved
            w.put(0, 1); // fixed block size
            w.put(0b0111, 4); // block size - 1 in 16 bits after the number
            w.put(0b0000, 4); // sample rate from STREAMINFO
            w.put(channels.len() as u64 - 1, 4); // independent channels
            w.put(0b100, 3); // 16 bits per sample
            w.put(0, 1);
            utf8_number(&mut w, index as u64);
            w.put(len as u64 - 1, 16);
            let crc = crc8(&w.bytes);
            w.put(crc as u64, 8);
            for c in channels {
                write_subframe(&mut w, &c[start..start + len]);
            }
            w.align();
            let crc = crc16(&w.bytes);
            w.put(crc as u64, 16);
            frames.push((w.bytes, len));
        }
        Some(Self {
            sample_rate,
            channels: channels.len(),
            total_samples: n as u64,
            frames,
        })
    }

    /// The 34-byte STREAMINFO block (MD5 left as zeros: "not computed").
    pub fn streaminfo(&self) -> Vec<u8> {
        let sizes = self.frames.iter().map(|(f, _)| f.len());
        let min_frame = sizes.clone().min().unwrap_or(0) as u64;
        let max_frame = sizes.max().unwrap_or(0) as u64;
        let mut w = BitWriter::new();
        // Minimum block size excluding the last block: every other block is full.
        w.put(BLOCK_SIZE as u64, 16);
        w.put(BLOCK_SIZE as u64, 16);
        w.put(min_frame, 24);
        w.put(max_frame, 24);
        w.put(self.sample_rate as u64, 20);
        w.put(self.channels as u64 - 1, 3);
        w.put(15, 5);
        w.put(self.total_samples >> 32, 4);
        w.put(self.total_samples & 0xFFFF_FFFF, 32);
        w.put(0, 32);
        w.put(0, 32);
        w.put(0, 32);
        w.put(0, 32);
        w.bytes
    }

    /// A standalone FLAC file: the marker, STREAMINFO (the last metadata block), the frames.
    pub fn to_flac_file(&self) -> Vec<u8> {
        let info = self.streaminfo();
        let mut out = b"fLaC".to_vec();
        out.push(0x80);
        out.extend_from_slice(&(info.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&info);
        for (f, _) in &self.frames {
            out.extend_from_slice(f);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_the_flac_check_values() {
        // The CRC catalogue's check values for "123456789".
        assert_eq!(crc8(b"123456789"), 0xF4);
        assert_eq!(crc16(b"123456789"), 0xFEE8);
    }

    #[test]
    fn frame_numbers_use_the_utf8_coding() {
        for (n, bytes) in [
            (0u64, vec![0x00]),
            (0x7F, vec![0x7F]),
            (0x80, vec![0xC2, 0x80]),
            (0x7FF, vec![0xDF, 0xBF]),
            (0x800, vec![0xE0, 0xA0, 0x80]),
        ] {
            let mut w = BitWriter::new();
            utf8_number(&mut w, n);
            assert_eq!(w.bytes, bytes, "{n}");
        }
    }

    #[test]
    fn fixed_predictors_remove_polynomials() {
        let x: Vec<i32> = (0..50).map(|i| 3 * i * i - 2 * i + 7).collect();
        assert!(fixed_residual(&x, 3).iter().all(|&r| r == 0));
        assert!(fixed_residual(&x, 2).iter().all(|&r| r == 6));
    }

    #[test]
    fn bad_layouts_are_refused() {
        assert!(FlacStream::encode(&[], 44100).is_none());
        assert!(FlacStream::encode(&[vec![0; 4], vec![0; 3]], 44100).is_none());
        assert!(FlacStream::encode(&[vec![0; 4]], 0).is_none());
        assert!(FlacStream::encode(&vec![vec![0; 4]; 9], 44100).is_none());
    }
}
