//! The length of an Ogg Vorbis stream as libvorbisfile defines it: the absolute granule
//! position of the stream's last page.
//!
//! Vorbis packets decode to overlapping blocks, so the last packet usually yields more samples
//! than the stream holds; the encoder records the true end as the granule position of the last
//! page, and the reference decoder (libvorbisfile, and libsndfile through it) drops every
//! sample past it. symphonia 0.5 applies that end trim only when it can tell the last page's
//! duration, which fails for short streams (one audio page, both first and last) and for
//! streams whose last page continues a packet from the page before: it then returns up to a
//! block of extra samples (e.g. 2624 frames for a 2205-frame `oggenc` file). The decoder reads
//! the granule here and trims to it.

use std::io::{Read, Seek, SeekFrom};

/// The largest possible Ogg page: 27-byte header, 255 lacing values, 255 x 255 payload bytes.
const MAX_PAGE: u64 = 27 + 255 + 255 * 255;

/// The parsed fixed part of one Ogg page found in a byte buffer.
struct Page {
    header_type: u8,
    granule: u64,
    serial: u32,
    /// Offset of the payload in the buffer.
    body: usize,
}

/// Parses and CRC-checks the page starting at `buf[at..]`; `None` if there is no complete,
/// valid page there.
fn page_at(buf: &[u8], at: usize) -> Option<Page> {
    let head = buf.get(at..at.checked_add(27)?)?;
    if &head[0..4] != b"OggS" || head[4] != 0 {
        return None;
    }
    let header_type = head[5];
    let granule = u64::from_le_bytes(head[6..14].try_into().ok()?);
    let serial = u32::from_le_bytes(head[14..18].try_into().ok()?);
    let crc = u32::from_le_bytes(head[22..26].try_into().ok()?);
    let segments = head[26] as usize;
    let lacing = buf.get(at + 27..at + 27 + segments)?;
    let payload: usize = lacing.iter().map(|&l| l as usize).sum();
    let len = 27 + segments + payload;
    let page = buf.get(at..at + len)?;
    if page_crc(page) != crc {
        return None;
    }
    Some(Page {
        header_type,
        granule,
        serial,
        body: at + 27 + segments,
    })
}

/// Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial value 0) over a whole page
/// with its CRC field taken as zero.
fn page_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (i, &byte) in page.iter().enumerate() {
        let b = if (22..26).contains(&i) { 0 } else { byte };
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The absolute granule position of the last page of the Vorbis stream in an Ogg file, i.e.
/// the number of sample frames libvorbisfile decodes it to. Pages that fail their CRC (a
/// truncated or damaged end) are skipped, so a cut file gives the granule of its last complete
/// page. `None` when the file does not start with a Vorbis identification page or no audio
/// page with a granule position is found near its end: the caller then keeps what the
/// decoder produced.
///
/// Leaves the reader at an unspecified position.
pub(crate) fn vorbis_end_granule<R: Read + Seek>(src: &mut R) -> std::io::Result<Option<u64>> {
    let len = src.seek(SeekFrom::End(0))?;
    // The first page: the Vorbis identification header ("\x01vorbis") on a BOS page.
    src.seek(SeekFrom::Start(0))?;
    let mut first = vec![0u8; len.min(MAX_PAGE) as usize];
    src.read_exact(&mut first)?;
    let Some(bos) = page_at(&first, 0) else {
        return Ok(None);
    };
    let is_vorbis = bos.header_type & 0x02 != 0
        && first.get(bos.body..bos.body + 7) == Some(b"\x01vorbis".as_slice());
    if !is_vorbis {
        return Ok(None);
    }
    // The last page of that stream lies within the last two maximal pages of the file.
    let tail_len = len.min(2 * MAX_PAGE);
    src.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    src.read_exact(&mut tail)?;
    let mut at = tail.len();
    while let Some(pos) = tail[..at].windows(4).rposition(|w| w == b"OggS") {
        at = pos;
        if let Some(page) = page_at(&tail, pos)
            && page.serial == bos.serial
            && page.granule != u64::MAX
            && page.granule > 0
        {
            return Ok(Some(page.granule));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds one Ogg page with a correct CRC.
    fn page(header_type: u8, granule: u64, serial: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 255);
        let mut p = Vec::new();
        p.extend_from_slice(b"OggS");
        p.push(0);
        p.push(header_type);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&serial.to_le_bytes());
        p.extend_from_slice(&seq.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(1);
        p.push(payload.len() as u8);
        p.extend_from_slice(payload);
        let crc = page_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        p
    }

    #[test]
    fn a_damaged_page_fails_its_crc() {
        let a = page(2, 0, 7, 0, b"\x01vorbis");
        let mut b = a.clone();
        b[30] ^= 1;
        assert!(page_at(&a, 0).is_some());
        assert!(
            page_at(&b, 0).is_none(),
            "a corrupted page must fail its CRC"
        );
    }

    #[test]
    fn finds_the_last_granule_of_the_vorbis_stream() {
        let mut file = page(2, 0, 7, 0, b"\x01vorbis....");
        file.extend(page(0, 0, 7, 1, b"setup"));
        file.extend(page(0, 4096, 7, 2, b"audio"));
        // A page of another stream after it, and a page without a granule (-1).
        file.extend(page(0, 999_999, 8, 0, b"other"));
        file.extend(page(4, 5000, 7, 3, b"end"));
        file.extend(page(1, u64::MAX, 7, 4, b"cont"));
        let mut cur = std::io::Cursor::new(file);
        assert_eq!(vorbis_end_granule(&mut cur).unwrap(), Some(5000));
    }

    #[test]
    fn not_vorbis_or_truncated_gives_none() {
        let opus = page(2, 0, 7, 0, b"OpusHead....");
        let mut cur = std::io::Cursor::new(opus);
        assert_eq!(vorbis_end_granule(&mut cur).unwrap(), None);
        // Only header pages (granule 0) before a cut: nothing to trim to.
        let mut file = page(2, 0, 7, 0, b"\x01vorbis....");
        let last = page(4, 5000, 7, 1, b"end");
        file.extend_from_slice(&last[..last.len() - 2]);
        let mut cur = std::io::Cursor::new(file.clone());
        assert_eq!(vorbis_end_granule(&mut cur).unwrap(), None);
        // A cut last page: the last complete audio page counts.
        let mut file = page(2, 0, 7, 0, b"\x01vorbis....");
        file.extend(page(0, 4096, 7, 1, b"audio"));
        file.extend_from_slice(&last[..last.len() - 2]);
        let mut cur = std::io::Cursor::new(file);
        assert_eq!(vorbis_end_granule(&mut cur).unwrap(), Some(4096));
        let mut cur = std::io::Cursor::new(b"OggS".to_vec());
        assert_eq!(vorbis_end_granule(&mut cur).unwrap(), None);
    }
}
