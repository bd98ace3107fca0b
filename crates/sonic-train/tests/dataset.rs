//! Manifests: validation errors name the line and field; the official `labels.csv` layout
//! (CRLF tolerated); the seeded split.

use sonic_train::TrainError;
use sonic_train::dataset::Dataset;
use std::path::Path;

fn touch(p: &Path) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, b"x").unwrap();
}

fn err_at(e: TrainError) -> (usize, String) {
    match e {
        TrainError::Manifest { line, field, .. } => (line, field),
        other => panic!("expected a manifest error, got {other}"),
    }
}

#[test]
fn csv_manifest_resolves_paths_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["a/1.wav", "a/1.png", "a/2.wav", "a/2.png"] {
        touch(&d.join(f));
    }
    let m = d.join("m.csv");
    std::fs::write(
        &m,
        "caption,audio,image,label\r\n\"rain, heavy\",a/1.wav,a/1.png,rain\r\n\r\nfire,a/2.wav,a/2.png,fire\r\n",
    )
    .unwrap();
    let ds = Dataset::open(&m).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.records[0].caption, "rain, heavy");
    assert_eq!(ds.records[0].audio, d.join("a/1.wav"));
    assert_eq!(ds.records[1].line, 4);
    assert_eq!(ds.records[1].label.as_deref(), Some("fire"));

    // A missing image on line 3.
    std::fs::write(
        &m,
        "audio,image,caption\na/1.wav,a/1.png,x\na/2.wav,a/9.png,y\n",
    )
    .unwrap();
    let e = Dataset::open(&m).unwrap_err();
    assert!(
        e.to_string().contains("m.csv:3") && e.to_string().contains("a/9.png"),
        "{e}"
    );
    assert_eq!(err_at(e), (3, "image".into()));
    // A missing column, a wrong field count, an unknown column, an empty label.
    std::fs::write(&m, "audio,image\na/1.wav,a/1.png\n").unwrap();
    assert_eq!(
        err_at(Dataset::open(&m).unwrap_err()),
        (1, "caption".into())
    );
    std::fs::write(&m, "audio,image,caption\na/1.wav,a/1.png\n").unwrap();
    assert_eq!(err_at(Dataset::open(&m).unwrap_err()), (2, "<line>".into()));
    std::fs::write(&m, "audio,image,caption,mood\n").unwrap();
    assert_eq!(err_at(Dataset::open(&m).unwrap_err()), (1, "mood".into()));
    std::fs::write(&m, "audio,image,caption,label\na/1.wav,a/1.png,x,\n").unwrap();
    assert_eq!(err_at(Dataset::open(&m).unwrap_err()), (2, "label".into()));
}

#[test]
fn jsonl_manifest_names_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["1.wav", "1.jpg"] {
        touch(&d.join(f));
    }
    let m = d.join("m.jsonl");
    std::fs::write(
        &m,
        "{\"audio\":\"1.wav\",\"image\":\"1.jpg\",\"caption\":\"a\",\"label\":3}\n{\"audio\":\"1.wav\",\"image\":\"1.jpg\"}\n",
    )
    .unwrap();
    assert_eq!(
        err_at(Dataset::open(&m).unwrap_err()),
        (2, "caption".into())
    );
    std::fs::write(
        &m,
        "{\"audio\":\"1.wav\",\"image\":\"1.jpg\",\"caption\":\"a\",\"label\":3}\n\n{\"audio\":\"2.wav\",\"image\":\"1.jpg\",\"caption\":\"b\"}\n",
    )
    .unwrap();
    assert_eq!(err_at(Dataset::open(&m).unwrap_err()), (3, "audio".into()));
    std::fs::write(
        &m,
        "{\"audio\":\"1.wav\",\"image\":\"1.jpg\",\"caption\":\"a\",\"label\":3}\n",
    )
    .unwrap();
    assert_eq!(
        Dataset::open(&m).unwrap().records[0].label.as_deref(),
        Some("3")
    );
}

#[test]
fn labels_csv_import_tolerates_crlf_and_writes_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["clips/a.wav", "clips/a.jpg", "clips/b.wav", "clips/b.png"] {
        touch(&d.join(f));
    }
    std::fs::write(
        d.join("labels.csv"),
        "path,label\r\nclips/a.wav,thunder\r\nclips/b.wav,birds\r\n",
    )
    .unwrap();
    let ds = Dataset::import_labels_csv(d).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.records[0].label.as_deref(), Some("thunder"));
    assert_eq!(ds.records[1].image, d.join("clips/b.png"));
    assert_eq!(ds.records[1].caption, "");
    // Round trip through a manifest.
    let m = d.join("manifest.csv");
    ds.write_csv(&m).unwrap();
    let back = Dataset::open(&m).unwrap();
    assert_eq!(back.records.len(), 2);
    assert_eq!(back.records[1].audio, ds.records[1].audio);
    assert_eq!(back.records[0].label, ds.records[0].label);
    // No header, CRLF, a clip without an image on line 2.
    std::fs::write(
        d.join("labels.csv"),
        "clips/a.wav,thunder\r\nclips/c.wav,x\r\n",
    )
    .unwrap();
    touch(&d.join("clips/c.wav"));
    let e = Dataset::import_labels_csv(d).unwrap_err();
    assert_eq!(err_at(e), (2, "path".into()));
}

/// Found by the `manifest` fuzz target: a header naming `caption` after an extra column made
/// rows of three fields index past their end (a panic).
#[test]
fn labels_csv_header_with_extra_columns_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["a.wav", "a.png"] {
        touch(&d.join(f));
    }
    for header in [
        "path,label,x,caption",
        "path,label,caption,x",
        "path,label,x",
    ] {
        std::fs::write(d.join("labels.csv"), format!("{header}\na.wav,dog,bark\n")).unwrap();
        let e = Dataset::import_labels_csv(d).unwrap_err();
        assert_eq!(err_at(e), (1, "<header>".into()), "{header}");
    }
    std::fs::write(d.join("labels.csv"), "path,label,caption\na.wav,dog,bark\n").unwrap();
    let ds = Dataset::import_labels_csv(d).unwrap();
    assert_eq!(ds.records[0].caption, "bark");
}

#[test]
fn split_is_seeded_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut text = String::from("audio,image,caption\n");
    for i in 0..20 {
        touch(&d.join(format!("{i}.wav")));
        touch(&d.join(format!("{i}.png")));
        text.push_str(&format!("{i}.wav,{i}.png,c{i}\n"));
    }
    std::fs::write(d.join("m.csv"), text).unwrap();
    let ds = Dataset::open(&d.join("m.csv")).unwrap();
    let (t1, v1) = ds.split(0.25, 7).unwrap();
    let (t2, v2) = ds.split(0.25, 7).unwrap();
    let (_, v3) = ds.split(0.25, 8).unwrap();
    assert_eq!((t1.len(), v1.len()), (15, 5));
    assert_eq!(v1, v2);
    assert_eq!(t1, t2);
    assert_ne!(v1.records, v3.records);
    let mut all: Vec<_> = t1
        .records
        .iter()
        .chain(&v1.records)
        .map(|r| r.line)
        .collect();
    all.sort_unstable();
    assert_eq!(all, (2..22).collect::<Vec<_>>());
    assert!(ds.split(1.0, 0).is_err());
}

#[test]
fn class_ids_agree_across_splits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut text = String::from("audio,image,caption,label\n");
    for i in 0..12 {
        touch(&d.join(format!("{i}.wav")));
        touch(&d.join(format!("{i}.png")));
        text.push_str(&format!(
            "{i}.wav,{i}.png,c,{}\n",
            ["rain", "fire", "wind"][i % 3]
        ));
    }
    std::fs::write(d.join("m.csv"), text).unwrap();
    let ds = Dataset::open(&d.join("m.csv")).unwrap();
    let (train, val) = ds.split(0.25, 1).unwrap();
    let id_of = |set: &Dataset, label: &str| -> Vec<usize> {
        let ids = set.class_ids().unwrap();
        set.records
            .iter()
            .zip(ids)
            .filter(|(r, _)| r.label.as_deref() == Some(label))
            .map(|(_, i)| i)
            .collect()
    };
    for label in ["rain", "fire", "wind"] {
        let mut all = id_of(&train, label);
        all.extend(id_of(&val, label));
        all.dedup();
        assert_eq!(all.len(), 1, "{label}: {all:?}");
    }
    assert_ne!(id_of(&ds, "rain")[0], id_of(&ds, "fire")[0]);
    let unlabeled = d.join("u.csv");
    std::fs::write(&unlabeled, "audio,image,caption\n0.wav,0.png,c\n").unwrap();
    let e = Dataset::open(&unlabeled).unwrap().class_ids().unwrap_err();
    assert_eq!(err_at(e), (2, "label".into()));
}
