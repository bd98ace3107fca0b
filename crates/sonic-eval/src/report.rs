//! Writing an [`EvalReport`]: `metrics.json` (the summary, the settings, the per-item scores),
//! `items.csv` (one row per item) and `report.html` (a page with each sound's name, the picture,
//! the ground truth and the scores). Every file is written atomically.

use crate::error::EvalError;
use crate::evaluate::{EvalItem, EvalReport};
use sonic_core::config::write_atomic;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The files [`write_report`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `metrics.json`.
    pub metrics: PathBuf,
    /// `items.csv`.
    pub items: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Escapes text for HTML.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A path as the page links it: relative to `out` when it lies inside, else absolute, each
/// segment percent-encoded where URLs need it.
fn link(path: &Path, out: &Path) -> String {
    let rel = path.strip_prefix(out).unwrap_or(path);
    let text = rel.to_string_lossy().replace('\\', "/");
    let mut s = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    if path.is_absolute() && rel == path {
        format!("file://{s}")
    } else {
        s
    }
}

/// Writes `metrics.json`, `items.csv` and `report.html` into `out` (created if needed).
/// `settings` (e.g. the model and the sampling parameters) is stored in `metrics.json` and
/// shown on the page.
pub fn write_report(
    out: &Path,
    items: &[EvalItem],
    report: &EvalReport,
    settings: &serde_json::Value,
) -> Result<ReportFiles, EvalError> {
    std::fs::create_dir_all(out).map_err(|source| sonic_core::CoreError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let files = ReportFiles {
        metrics: out.join("metrics.json"),
        items: out.join("items.csv"),
        html: out.join("report.html"),
    };
    let json = serde_json::json!({
        "summary": report.summary,
        "class_names": report.class_names,
        "settings": settings,
        "items": report.items,
    });
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| EvalError::input("metrics.json", e.to_string()))?;
    write_atomic(&files.metrics, format!("{text}\n").as_bytes())?;

    let mut csv =
        String::from("key,audio,image,reference,label,predicted,clip_score,iis,ais,aic,lpips\n");
    for (item, s) in items.iter().zip(&report.items) {
        let cols = [
            item.key.clone(),
            item.audio.display().to_string(),
            item.generated.display().to_string(),
            item.reference
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            item.label.clone().unwrap_or_default(),
            s.predicted.clone().unwrap_or_default(),
            fmt(s.clip_score),
            fmt(s.iis),
            fmt(s.ais),
            s.aic.map(|c| u8::from(c).to_string()).unwrap_or_default(),
            fmt(s.lpips),
        ];
        let row: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    write_atomic(&files.items, csv.as_bytes())?;
    write_atomic(&files.html, page(out, items, report, settings).as_bytes())?;
    Ok(files)
}

fn page(
    out: &Path,
    items: &[EvalItem],
    report: &EvalReport,
    settings: &serde_json::Value,
) -> String {
    let s = &report.summary;
    let mut h = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>sonic eval</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em}\
         table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
         img{max-width:192px;max-height:192px}.num{text-align:right;font-variant-numeric:tabular-nums}\
         </style></head><body>\n<h1>sonic eval</h1>\n<table>\n",
    );
    for (name, v) in [
        ("items", Some(s.items as f64)),
        ("CLIP score", s.clip_score),
        ("IIS", s.iis),
        ("AIS", s.ais),
        ("AIC", s.aic),
        ("LPIPS", s.lpips),
        ("FID", s.fid),
    ] {
        let _ = writeln!(
            h,
            "<tr><th>{name}</th><td class=\"num\">{}</td></tr>",
            v.map_or_else(
                || "&ndash;".to_string(),
                |v| if name == "items" {
                    format!("{v}")
                } else {
                    format!("{v:.4}")
                }
            )
        );
    }
    h.push_str("</table>\n<h2>Settings</h2>\n<pre>");
    h.push_str(&html(
        &serde_json::to_string_pretty(settings).unwrap_or_default(),
    ));
    h.push_str("</pre>\n<h2>Items</h2>\n<table>\n<tr><th>sound</th><th>picture</th><th>ground truth</th>\
                <th>label / predicted</th><th>CLIP</th><th>IIS</th><th>AIS</th><th>LPIPS</th></tr>\n");
    for (item, sc) in items.iter().zip(&report.items) {
        let sound = item.audio.file_name().map_or_else(
            || item.audio.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let reference = item.reference.as_ref().map_or_else(
            || "&ndash;".to_string(),
            |p| format!("<img src=\"{}\" alt=\"ground truth\">", html(&link(p, out))),
        );
        let label = match (&item.label, &sc.predicted) {
            (Some(l), Some(p)) => format!(
                "{} / {}{}",
                html(l),
                html(p),
                if l == p { " &#10003;" } else { "" }
            ),
            (Some(l), None) => html(l),
            (None, Some(p)) => format!("&ndash; / {}", html(p)),
            (None, None) => "&ndash;".into(),
        };
        let num = |v: Option<f64>| v.map_or_else(|| "&ndash;".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            h,
            "<tr><td>{}<br><small>{}</small></td><td><img src=\"{}\" alt=\"generated\"></td><td>{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            html(&sound),
            html(&item.key),
            html(&link(&item.generated, out)),
            reference,
            label,
            num(sc.clip_score),
            num(sc.iis),
            num(sc.ais),
            num(sc.lpips),
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_links() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(
            html("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        let out = Path::new("/tmp/eval");
        assert_eq!(
            link(Path::new("/tmp/eval/images/a b.png"), out),
            "images/a%20b.png"
        );
        assert_eq!(link(Path::new("/data/x.png"), out), "file:///data/x.png");
    }
}
