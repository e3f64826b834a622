//! Unpacks one image into an empty directory and prints what it did and how long it took;
//! the tool behind the unpack speed figure in the README.
//!
//! `cargo run --release -p mkroot-common --example unpack -- IMAGE EMPTY_DIR`

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [image, target] = args.as_slice() else {
        eprintln!("usage: unpack IMAGE EMPTY_DIR");
        std::process::exit(2);
    };
    let start = Instant::now();
    let options = mkroot_common::unpack::UnpackOptions::default();
    match mkroot_common::unpack::unpack_file(image, target, &options) {
        Ok(report) => println!(
            "{report:?} in {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        ),
        Err(err) => {
            eprintln!("unpack: {}: {err}", image.display());
            std::process::exit(1);
        }
    }
}
