fn main() {
    eprintln!("mkroot: not built yet");
    std::process::exit(2);
}
