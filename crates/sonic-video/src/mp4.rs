//! An MP4 (ISO BMFF) writer for one H.264 video track and an optional FLAC audio track
//! (FLAC in ISO BMFF, `fLaC` / `dfLa`), with the `moov` box first so that browsers start
//! playing before the whole file has arrived. Every sample is its own chunk, interleaved by
//! time; creation times are 0, so the same input gives the same bytes.

use crate::error::VideoError;
use crate::flac::FlacStream;
use crate::h264::H264Track;

/// What the muxer needs besides the tracks.
#[derive(Debug, Clone, Default)]
pub struct Mp4Options {
    /// Frames per second (any positive rate; stored with a 1/1000-frame time base).
    pub fps: f64,
    /// Text tags (`udta/meta/ilst`: `©cmt` holds the parameters, `©too` the encoder name).
    pub comment: Option<String>,
    /// The writing application (`©too`).
    pub tool: Option<String>,
}

/// A box under construction: its type and body.
struct Bx {
    kind: [u8; 4],
    body: Vec<u8>,
}

impl Bx {
    fn new(kind: &[u8; 4]) -> Self {
        Self {
            kind: *kind,
            body: Vec::new(),
        }
    }
    /// A full box: version 0 and `flags`.
    fn full(kind: &[u8; 4], flags: u32) -> Self {
        let mut b = Self::new(kind);
        b.u32(flags & 0x00FF_FFFF);
        b
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.body.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.body.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.body.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.body.extend_from_slice(v);
        self
    }
    fn child(&mut self, b: Bx) -> &mut Self {
        let bytes = b.finish();
        self.body.extend_from_slice(&bytes);
        self
    }
    fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 8);
        out.extend_from_slice(&((self.body.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(&self.kind);
        out.extend_from_slice(&self.body);
        out
    }
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
const MOVIE_TIMESCALE: u32 = 1000;

/// One track's samples as the tables need them.
struct TrackPlan {
    id: u32,
    timescale: u32,
    /// (count, duration) runs.
    durations: Vec<(u32, u32)>,
    sizes: Vec<u32>,
    /// 1-based sync sample numbers; `None`: every sample is a sync sample.
    sync: Option<Vec<u32>>,
    offsets: Vec<u64>,
    media_duration: u64,
}

impl TrackPlan {
    fn movie_duration(&self) -> u32 {
        (self.media_duration * MOVIE_TIMESCALE as u64).div_ceil(self.timescale as u64) as u32
    }
}

fn tkhd(plan: &TrackPlan, volume: u16, width: u32, height: u32) -> Bx {
    let mut b = Bx::full(b"tkhd", 3);
    b.u32(0)
        .u32(0)
        .u32(plan.id)
        .u32(0)
        .u32(plan.movie_duration());
    b.u32(0).u32(0).u16(0).u16(0).u16(volume).u16(0);
    for m in MATRIX {
        b.u32(m);
    }
    b.u32(width << 16).u32(height << 16);
    b
}

fn mdhd(plan: &TrackPlan) -> Bx {
    let mut b = Bx::full(b"mdhd", 0);
    b.u32(0)
        .u32(0)
        .u32(plan.timescale)
        .u32(plan.media_duration as u32);
    b.u16(0x55C4).u16(0); // "und"
    b
}

fn hdlr(kind: &[u8; 4], name: &str) -> Bx {
    let mut b = Bx::full(b"hdlr", 0);
    b.u32(0).bytes(kind).u32(0).u32(0).u32(0);
    b.bytes(name.as_bytes()).u8(0);
    b
}

fn dinf() -> Bx {
    let mut dref = Bx::full(b"dref", 0);
    dref.u32(1).child(Bx::full(b"url ", 1));
    let mut b = Bx::new(b"dinf");
    b.child(dref);
    b
}

fn stbl(plan: &TrackPlan, entry: Bx) -> Bx {
    let mut stsd = Bx::full(b"stsd", 0);
    stsd.u32(1).child(entry);
    let mut stts = Bx::full(b"stts", 0);
    stts.u32(plan.durations.len() as u32);
    for &(n, d) in &plan.durations {
        stts.u32(n).u32(d);
    }
    let mut stsc = Bx::full(b"stsc", 0);
    stsc.u32(1).u32(1).u32(1).u32(1);
    let mut stsz = Bx::full(b"stsz", 0);
    stsz.u32(0).u32(plan.sizes.len() as u32);
    for &s in &plan.sizes {
        stsz.u32(s);
    }
    let mut stco = Bx::full(b"stco", 0);
    stco.u32(plan.offsets.len() as u32);
    for &o in &plan.offsets {
        stco.u32(o as u32);
    }
    let mut b = Bx::new(b"stbl");
    b.child(stsd).child(stts);
    if let Some(sync) = &plan.sync {
        let mut stss = Bx::full(b"stss", 0);
        stss.u32(sync.len() as u32);
        for &s in sync {
            stss.u32(s);
        }
        b.child(stss);
    }
    b.child(stsc).child(stsz).child(stco);
    b
}

fn avc1(track: &H264Track) -> Bx {
    let mut b = Bx::new(b"avc1");
    b.bytes(&[0; 6]).u16(1); // reserved, data_reference_index
    b.u16(0).u16(0).u32(0).u32(0).u32(0);
    b.u16(track.width as u16).u16(track.height as u16);
    b.u32(0x0048_0000).u32(0x0048_0000).u32(0).u16(1);
    let mut name = [0u8; 32];
    let label = b"OpenH264";
    name[0] = label.len() as u8;
    name[1..=label.len()].copy_from_slice(label);
    b.bytes(&name).u16(0x0018).u16(0xFFFF);
    let mut avcc = Bx::new(b"avcC");
    avcc.u8(1)
        .u8(track.sps[1])
        .u8(track.sps[2])
        .u8(track.sps[3]);
    avcc.u8(0xFF)
        .u8(0xE1)
        .u16(track.sps.len() as u16)
        .bytes(&track.sps);
    avcc.u8(1).u16(track.pps.len() as u16).bytes(&track.pps);
    b.child(avcc);
    b
}

fn flac_entry(audio: &FlacStream) -> Bx {
    let mut b = Bx::new(b"fLaC");
    b.bytes(&[0; 6]).u16(1);
    b.u32(0).u32(0);
    b.u16(audio.channels as u16).u16(16).u16(0).u16(0);
    let rate = if audio.sample_rate <= 0xFFFF {
        audio.sample_rate
    } else {
        0
    };
    b.u32(rate << 16);
    let info = audio.streaminfo();
    let mut dfla = Bx::full(b"dfLa", 0);
    dfla.u8(0x80)
        .bytes(&(info.len() as u32).to_be_bytes()[1..])
        .bytes(&info);
    b.child(dfla);
    b
}

fn ilst_item(kind: &[u8; 4], text: &str) -> Bx {
    let mut data = Bx::new(b"data");
    data.u32(1).u32(0).bytes(text.as_bytes());
    let mut item = Bx::new(kind);
    item.child(data);
    item
}

fn udta(options: &Mp4Options) -> Option<Bx> {
    let items: Vec<Bx> = [
        (b"\xa9cmt", options.comment.as_deref()),
        (b"\xa9too", options.tool.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| ilst_item(k, v)))
    .collect();
    if items.is_empty() {
        return None;
    }
    let mut ilst = Bx::new(b"ilst");
    for i in items {
        ilst.child(i);
    }
    let mut hd = Bx::full(b"hdlr", 0);
    hd.u32(0).bytes(b"mdir").bytes(b"appl").u32(0).u32(0).u8(0);
    let mut meta = Bx::full(b"meta", 0);
    meta.child(hd).child(ilst);
    let mut u = Bx::new(b"udta");
    u.child(meta);
    Some(u)
}

fn moov(
    video: &H264Track,
    vplan: &TrackPlan,
    audio: Option<(&FlacStream, &TrackPlan)>,
    options: &Mp4Options,
) -> Vec<u8> {
    let duration = vplan
        .movie_duration()
        .max(audio.map_or(0, |(_, p)| p.movie_duration()));
    let mut mvhd = Bx::full(b"mvhd", 0);
    mvhd.u32(0).u32(0).u32(MOVIE_TIMESCALE).u32(duration);
    mvhd.u32(0x0001_0000).u16(0x0100).u16(0).u32(0).u32(0);
    for m in MATRIX {
        mvhd.u32(m);
    }
    for _ in 0..6 {
        mvhd.u32(0);
    }
    mvhd.u32(if audio.is_some() { 3 } else { 2 });
    let mut moov = Bx::new(b"moov");
    moov.child(mvhd);

    let mut vmhd = Bx::full(b"vmhd", 1);
    vmhd.u16(0).u16(0).u16(0).u16(0);
    let mut minf = Bx::new(b"minf");
    minf.child(vmhd)
        .child(dinf())
        .child(stbl(vplan, avc1(video)));
    let mut mdia = Bx::new(b"mdia");
    mdia.child(mdhd(vplan))
        .child(hdlr(b"vide", "VideoHandler"))
        .child(minf);
    let mut trak = Bx::new(b"trak");
    trak.child(tkhd(vplan, 0, video.width as u32, video.height as u32))
        .child(mdia);
    moov.child(trak);

    if let Some((stream, aplan)) = audio {
        let mut smhd = Bx::full(b"smhd", 0);
        smhd.u16(0).u16(0);
        let mut minf = Bx::new(b"minf");
        minf.child(smhd)
            .child(dinf())
            .child(stbl(aplan, flac_entry(stream)));
        let mut mdia = Bx::new(b"mdia");
        mdia.child(mdhd(aplan))
            .child(hdlr(b"soun", "SoundHandler"))
            .child(minf);
        let mut trak = Bx::new(b"trak");
        trak.child(tkhd(aplan, 0x0100, 0, 0)).child(mdia);
        moov.child(trak);
    }
    if let Some(u) = udta(options) {
        moov.child(u);
    }
    moov.finish()
}

/// Runs of equal durations.
fn runs(durations: impl Iterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for d in durations {
        match out.last_mut() {
            Some((n, last)) if *last == d => *n += 1,
            _ => out.push((1, d)),
        }
    }
    out
}

/// Writes the MP4 file's bytes.
pub fn mux(
    video: &H264Track,
    audio: Option<&FlacStream>,
    options: &Mp4Options,
) -> Result<Vec<u8>, VideoError> {
    if !(options.fps.is_finite() && options.fps >= 0.001 && options.fps <= 1000.0) {
        return Err(VideoError::InvalidParameter {
            name: "fps",
            value: options.fps.to_string(),
            reason: "must be between 0.001 and 1000".into(),
        });
    }
    // Time base: 1/1000 of a frame at `fps` rounded to 1/1000 frame per second.
    let timescale = (options.fps * 1000.0).round() as u32;
    let frame_ticks = 1000u32;
    let n = video.frames.len() as u32;
    let mut vplan = TrackPlan {
        id: 1,
        timescale,
        durations: vec![(n, frame_ticks)],
        sizes: video.frames.iter().map(|f| f.data.len() as u32).collect(),
        sync: Some(
            video
                .frames
                .iter()
                .enumerate()
                .filter(|(_, f)| f.sync)
                .map(|(i, _)| i as u32 + 1)
                .collect(),
        ),
        offsets: Vec::new(),
        media_duration: n as u64 * frame_ticks as u64,
    };
    let mut aplan = audio.map(|a| TrackPlan {
        id: 2,
        timescale: a.sample_rate,
        durations: runs(a.frames.iter().map(|f| f.1 as u32)),
        sizes: a.frames.iter().map(|f| f.0.len() as u32).collect(),
        sync: None,
        offsets: Vec::new(),
        media_duration: a.total_samples,
    });
    // The samples in time order: (start in seconds, track, index).
    let mut order: Vec<(f64, u8, usize)> = (0..video.frames.len())
        .map(|i| (i as f64 / options.fps, 0, i))
        .collect();
    if let Some(a) = audio {
        let mut t = 0u64;
        for (i, f) in a.frames.iter().enumerate() {
            order.push((t as f64 / a.sample_rate as f64, 1, i));
            t += f.1 as u64;
        }
    }
    order.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let sample = |track: u8, i: usize| -> &[u8] {
        match (track, audio) {
            (1, Some(a)) => &a.frames[i].0,
            _ => &video.frames[i].data,
        }
    };
    let payload: u64 = order
        .iter()
        .map(|&(_, t, i)| sample(t, i).len() as u64)
        .sum();

    let mut ftyp = Bx::new(b"ftyp");
    ftyp.bytes(b"isom").u32(0x200);
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        ftyp.bytes(brand);
    }
    let ftyp = ftyp.finish();
    // The offsets have a fixed width, so the moov's size does not depend on them.
    let place = |vplan: &mut TrackPlan, aplan: &mut Option<TrackPlan>, base: u64| {
        vplan.offsets = vec![0; video.frames.len()];
        if let Some(p) = aplan.as_mut() {
            p.offsets = vec![0; p.sizes.len()];
        }
        let mut at = base;
        for &(_, t, i) in &order {
            match (t, aplan.as_mut()) {
                (1, Some(p)) => p.offsets[i] = at,
                _ => vplan.offsets[i] = at,
            }
            at += sample(t, i).len() as u64;
        }
    };
    place(&mut vplan, &mut aplan, 0);
    let moov_len = moov(video, &vplan, audio.zip(aplan.as_ref()), options).len() as u64;
    let mdat_header = 8u64;
    let base = ftyp.len() as u64 + moov_len + mdat_header;
    if base + payload > u32::MAX as u64 {
        return Err(VideoError::InvalidParameter {
            name: "video",
            value: format!("{} bytes", base + payload),
            reason: "this writer keeps files under 4 GiB (32-bit offsets)".into(),
        });
    }
    place(&mut vplan, &mut aplan, base);
    let moov = moov(video, &vplan, audio.zip(aplan.as_ref()), options);
    let mut out = Vec::with_capacity((base + payload) as usize);
    out.extend_from_slice(&ftyp);
    out.extend_from_slice(&moov);
    out.extend_from_slice(&((payload + mdat_header) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for &(_, t, i) in &order {
        out.extend_from_slice(sample(t, i));
    }
    Ok(out)
}
