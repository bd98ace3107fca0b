//! Embeds audio files with a CLAP checkpoint and prints the embeddings' shape, norms and the
//! time taken:
//!
//! ```sh
//! cargo run -p sonic-audio --release --example encode -- CLAP_weights_2022.pth a.wav b.mp3
//! ```

use sonic_audio::ClapAudioEncoder;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .ok_or("usage: encode <weights.pth|.safetensors> <audio files...>")?;
    let files: Vec<String> = args.collect();
    let device = sonic_core::device::default_device()?;
    let t = Instant::now();
    let encoder = ClapAudioEncoder::from_file(&weights, &device)?;
    println!("loaded {:?} in {:.2?}", encoder.sizes(), t.elapsed());
    if files.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let emb = encoder.encode_files(&files)?;
    println!(
        "embedded {} file(s) in {:.2?}: {:?}",
        files.len(),
        t.elapsed(),
        emb.dims()
    );
    let data = emb
        .to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    for (f, row) in files.iter().zip(data.chunks(encoder.embedding_dim())) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        println!(
            "{f}: |e| = {norm:.6}, e[..4] = {:?}",
            &row[..4.min(row.len())]
        );
    }
    Ok(())
}
