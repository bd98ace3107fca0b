//! A safetensors file mapped read-only and shared by the tensors loaded from it.
//!
//! Each tensor is handed to Burn as a slice of the mapping (no copy: cubecl's copy-on-write
//! `Bytes`, copied only if a weight is ever written in place). The finiteness check of loading
//! reads each tensor from the file into small reused buffers (`pread`), not through the
//! mapping: the pages land in the page cache without being mapped into the process, so a
//! checked model is not resident until it runs - as with diffusers, whose loading reads nothing
//! - and the check costs no page faults (docs/PERFORMANCE.md, entry 17).

use crate::config::open_file;
use crate::error::{CoreError, Result};
use burn::store::bridge;
use burn::tensor::{AllocationProperty, Bytes, DType, TensorData};
use memmap2::Mmap;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::Path;

type Snapshot = burn::store::burn_pack::Tensor;

/// A read-only mapping of a weights file and where each tensor lies in it.
pub(crate) struct MappedFile {
    /// The file, read for the finiteness check.
    file: File,
    /// Tensor name (as the file spells it) -> byte range in the mapping and dtype.
    ranges: BTreeMap<String, (Range<usize>, DType)>,
}

impl MappedFile {
    /// Maps `path` and makes a lazily read snapshot of each tensor of `tensors` (name, dtype,
    /// shape, byte range in the file). Data that is not aligned to its element size (a
    /// non-conforming writer) is copied when read.
    pub(crate) fn open(
        path: &Path,
        tensors: Vec<(String, DType, Vec<usize>, Range<u64>)>,
    ) -> Result<(Self, Vec<Snapshot>)> {
        let file = open_file(path)?;
        // SAFETY: the mapping is read-only; the usual caveat of memory maps applies (a file
        // truncated by another process while mapped), as for every mmap-based weights loader.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let shared = bytes::Bytes::from_owner(map);
        let mut ranges = BTreeMap::new();
        let mut out = Vec::with_capacity(tensors.len());
        for (name, dtype, shape, range) in tensors {
            // The header was checked against the file's length; the file may have changed since.
            let range = range.start as usize..range.end as usize;
            if range.end > shared.len() {
                return Err(CoreError::WeightsFile {
                    path: path.to_path_buf(),
                    message: format!(
                        "tensor `{name}` lies past the end: the file changed while being read"
                    ),
                });
            }
            ranges.insert(name.clone(), (range.clone(), dtype));
            let data = shared.slice(range);
            out.push(bridge::deferred(
                name,
                dtype,
                shape.clone().into(),
                None,
                move || {
                    let align = dtype.size().max(1);
                    let bytes = if (data.as_ptr() as usize).is_multiple_of(align) {
                        Bytes::from_shared(data.clone(), AllocationProperty::File)
                    } else {
                        Bytes::from_bytes_vec(data.to_vec())
                    };
                    Ok(TensorData::from_bytes(bytes, shape.clone(), dtype))
                },
            ));
        }
        Ok((Self { file, ranges }, out))
    }

    /// Whether every value of the tensor `name` (as the file spells it) is finite, read from
    /// the file in pieces of [`PIECE`] bytes, in parallel. `None` when this cannot say: no such
    /// tensor, a dtype other than f32 / f16 / bf16 (an f64 value may overflow the f32 it is
    /// loaded as), a read error (the load then reads the data itself and reports it).
    pub(crate) fn check_finite(&self, name: &str) -> Option<bool> {
        let finite = self.scan(name, sonic_kernels::reduce::bytes_all_finite)?;
        Some(finite.into_iter().all(|f| f))
    }

    /// How many values of the tensor `name` are NaN or infinite (`None` as for
    /// [`Self::check_finite`]).
    pub(crate) fn count_non_finite(&self, name: &str) -> Option<usize> {
        let counts = self.scan(name, sonic_kernels::reduce::bytes_count_non_finite)?;
        Some(counts.into_iter().sum())
    }

    /// `f(piece, dtype)` for each piece of [`PIECE`] bytes of the f32 / f16 / bf16 tensor
    /// `name`, read from the file into a reused, aligned buffer; `None` if a read or an `f`
    /// fails, or for another dtype.
    fn scan<R: Send>(
        &self,
        name: &str,
        f: impl Fn(&[u8], DType) -> Option<R> + Sync,
    ) -> Option<Vec<R>> {
        let (range, dtype) = self.ranges.get(name)?;
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return None;
        }
        (0..range.len().div_ceil(PIECE))
            .into_par_iter()
            .map(|i| {
                let start = range.start + i * PIECE;
                let len = PIECE.min(range.end - start);
                // Taken out of the thread-local, not borrowed: `f` may run nested rayon work,
                // and a piece stolen onto this thread meanwhile then finds the slot empty and
                // allocates its own buffer instead of finding it borrowed.
                let mut buffer = PIECE_BUFFER.take();
                buffer.resize(PIECE / 8, 0);
                let bytes = &mut bytemuck::cast_slice_mut(buffer.as_mut_slice())[..len];
                let result = read_at(&self.file, bytes, start as u64)
                    .ok()
                    .and_then(|()| f(bytes, *dtype));
                PIECE_BUFFER.set(buffer);
                result
            })
            .collect()
    }
}

/// Bytes per read of [`MappedFile::check_finite`]: large enough that a read costs little
/// besides its copy, small enough to stay in the L2 cache for the check that follows.
pub(crate) const PIECE: usize = 1 << 20;

thread_local! {
    /// Each thread's buffer for [`MappedFile::scan`] (`u64`s: aligned for any dtype), empty
    /// until first used or while in use.
    static PIECE_BUFFER: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Reads exactly `buf.len()` bytes of `file` at `offset`.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

#[cfg(test)]
mod tests {
    //! Loading through the mapping: the finiteness check read from the file, and linear
    //! weights transposed at first use (`Checkpoint::load_into` on flex).
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::weights::LoadOptions;
    use std::path::PathBuf;

    /// A safetensors file of one tensor `w` with the given dtype name and raw little-endian data.
    fn one_tensor(dir: &Path, dtype: &str, shape: &[usize], data: &[u8]) -> PathBuf {
        let header = format!(
            r#"{{"w":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[0,{}]}}}}"#,
            data.len()
        );
        let p = dir.join(format!("{dtype}.safetensors"));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(&p, &bytes).unwrap();
        p
    }

    #[derive(burn::module::Module, Debug)]
    struct Holder {
        w: burn::module::Param<burn::tensor::Tensor<1>>,
    }

    /// The finiteness check reads the file in pieces: a NaN or an infinity is found in every
    /// float dtype, in the first and the last value, on both sides of a piece boundary, and
    /// counted; finite data loads unchanged.
    #[test]
    fn non_finite_values_are_found_anywhere_in_every_dtype() {
        let device = crate::device::parse_device("flex").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let load = |p: &Path, n: usize| {
            let holder = Holder {
                w: burn::module::Param::from_tensor(burn::tensor::Tensor::zeros([n], &device)),
            };
            Checkpoint::open(p)
                .unwrap()
                .load_into(holder, &LoadOptions::default())
        };
        // f32 over three pieces (PIECE bytes each, the last one short).
        let n = PIECE / 4 * 2 + 77;
        for at in [0, PIECE / 4 - 1, PIECE / 4, n - 1] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 - 500.0).collect();
                v[at] = bad;
                let p = one_tensor(dir.path(), "F32", &[n], bytemuck::cast_slice(&v));
                match load(&p, n) {
                    Err(CoreError::NonFiniteWeight {
                        key, count, numel, ..
                    }) => {
                        assert_eq!((key.as_str(), count, numel), ("w", 1, n), "at {at}");
                    }
                    other => panic!("{bad} at {at}: {other:?}"),
                }
            }
        }
        let v: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3).collect();
        let p = one_tensor(dir.path(), "F32", &[n], bytemuck::cast_slice(&v));
        let got = load(&p, n).unwrap().w.val().into_data();
        got.assert_eq(&TensorData::new(v, [n]), true);
        // Half precisions: f16 0x7c00 is infinity, bf16 0x7fc0 NaN; 0x3c00 / 0x3f80 are 1.0.
        for (dtype, one, special) in [("F16", 0x3c00u16, 0x7c00u16), ("BF16", 0x3f80, 0x7fc0)] {
            let mut v = vec![one; 1000];
            v[999] = special;
            v[3] = special;
            let p = one_tensor(dir.path(), dtype, &[1000], bytemuck::cast_slice(&v));
            match load(&p, 1000) {
                Err(CoreError::NonFiniteWeight { count, .. }) => assert_eq!(count, 2, "{dtype}"),
                other => panic!("{dtype}: {other:?}"),
            }
            v[999] = one;
            v[3] = one;
            let p = one_tensor(dir.path(), dtype, &[1000], bytemuck::cast_slice(&v));
            let got = load(&p, 1000).unwrap().w.val().into_data();
            got.convert::<f32>()
                .assert_eq(&TensorData::new(vec![1.0f32; 1000], [1000]), true);
        }
        // f64 is checked after the cast: a finite 1e300 is infinite as f32.
        let p = one_tensor(
            dir.path(),
            "F64",
            &[2],
            bytemuck::cast_slice(&[1.0f64, 1e300]),
        );
        assert!(matches!(
            load(&p, 2),
            Err(CoreError::NonFiniteWeight { .. })
        ));
    }

    /// A linear layer loaded on flex: its weight is lazy until used, then the transpose of
    /// the file's `[out, in]`, and the layer computes `x W^T + b`.
    #[test]
    fn linear_weights_load_in_pytorch_order() {
        use burn::nn::{Linear, LinearConfig};
        let device = crate::device::parse_device("flex").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lin.safetensors");
        let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect(); // [out 4, in 3]
        let tensors = [
            crate::weights::NamedTensor {
                name: "weight".into(),
                shape: vec![4, 3],
                data: w.clone(),
            },
            crate::weights::NamedTensor {
                name: "bias".into(),
                shape: vec![4],
                data: vec![0.5; 4],
            },
        ];
        crate::weights::write_safetensors_f32(&p, &tensors, None).unwrap();
        let lin: Linear = LinearConfig::new(3, 4).init(&device);
        let lin = Checkpoint::open(&p)
            .unwrap()
            .load_into(lin, &LoadOptions::default())
            .unwrap();
        assert!(
            !lin.weight.is_initialized(),
            "transposed before its first use"
        );
        let x = [1.0f32, -1.0, 2.0];
        let y = lin
            .forward(burn::tensor::Tensor::<2>::from_data(
                TensorData::new(x.to_vec(), [1, 3]),
                &device,
            ))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (o, got) in y.iter().enumerate() {
            let want: f32 = 0.5 + (0..3).map(|i| w[o * 3 + i] * x[i]).sum::<f32>();
            assert!((got - want).abs() < 1e-6, "out {o}: {got} vs {want}");
        }
        assert_eq!(lin.weight.dims(), [3, 4]);
    }
}
