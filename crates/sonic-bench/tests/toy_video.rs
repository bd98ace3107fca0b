//! The toy-video check (`sonic bench toy-video`, docs/VIDEO.md) at a few training steps:
//! every part fits together (training, sliding windows, rendering, classification, the MP4);
//! it cannot check learning at that size (the full run does: frame accuracy >= 0.9).

use sonic_bench::toy_world::ToyWorldOptions;
use sonic_bench::toy_world::video::{self, ToyVideoOptions};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures folder (../shared/fixtures) not found")
}

#[test]
fn toy_video_smoke() {
    let device = sonic_core::device::default_device().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut o = ToyWorldOptions::quick(fixtures(), device);
    o.train_per_class = 2;
    o.test_per_class = 1;
    o.base_steps = 2;
    o.base_batch = 4;
    o.stage1_steps = 2;
    o.stage1_batch = 4;
    o.stage2_steps = 2;
    o.stage2_batch = 4;
    o.sample_steps = 2;
    o.eval_batch = 5;
    o.out_dir = Some(out.path().to_path_buf());
    let mut v = ToyVideoOptions::full(o);
    v.segments = 5;
    v.segment_seconds = 1.0;
    v.keyframe_every = 2;
    let mut rendered = 0;
    let report = video::run(&v, &mut |p| {
        if let sonic_bench::toy_world::ToyProgress::Step {
            phase: "video",
            step,
            ..
        } = p
        {
            rendered = *step;
        }
    })
    .unwrap();
    // 5 s at 4 fps; frames within 0.5 s of the four changes (2 on each side) are excluded.
    assert_eq!(report.total_frames, 20);
    assert_eq!(rendered, 20);
    assert_eq!(report.frames, 20 - 4 * 4);
    let scored = report
        .frame_classes
        .iter()
        .filter(|f| f.0.is_some())
        .count();
    assert_eq!(scored, report.frames);
    let line = report.summary_line();
    assert!(
        line.starts_with("toy-video: frame_accuracy=") && line.contains(" frames=4 "),
        "{line}"
    );
    // The MP4 holds every frame and the whole clip.
    let mp4 = std::fs::read(report.video.unwrap()).unwrap();
    let stsz = mp4.windows(4).position(|w| w == b"stsz").unwrap() + 4;
    assert_eq!(
        u32::from_be_bytes(mp4[stsz + 8..stsz + 12].try_into().unwrap()),
        20
    );
    // The segments: 0, 1, 2, 3, then a different class.
    let classes = video::segment_classes(5, 9);
    assert_eq!(&classes[..4], &[0, 1, 2, 3]);
    assert_ne!(classes[4], 3);
}
