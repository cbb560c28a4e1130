//! Times fedialt's image preparation (captioning::images::prepare) on the files given, for
//! bench/images.py: prints, per file, the best of N runs in ms, the output's size and bytes, and
//! the process's peak RSS at the end (run one file per process to read its peak).
//!
//!     cargo run --release --example prepare_images -- RUNS FILE...

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().and_then(|r| r.parse().ok()).unwrap_or(5);
    for path in &args[1..] {
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut best = f64::MAX;
        let mut last = None;
        for _ in 0..runs {
            let started = std::time::Instant::now();
            let prepared = fedialt::captioning::images::prepare(&bytes, 100_000_000);
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            last = Some(prepared);
        }
        match last {
            Some(Ok(p)) => println!(
                "{path}\t{best:.1}\t{}x{}\t{}\t{}",
                p.width,
                p.height,
                p.jpeg.len(),
                peak_rss_kb()
            ),
            other => println!("{path}\terror {other:?}"),
        }
    }
}
