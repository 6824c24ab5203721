//! Benchmark (not a test): the worker's clone against `git clone --depth 1`, both over smart HTTP from the same
//! local `git http-backend` server, on a repository of 20,000 files (or the count given as the first argument).
//!
//!     cargo run --release --example clone_bench [FILES] [ROUNDS]

#[path = "../tests/api/support/git_server.rs"]
#[allow(dead_code)]
mod git_server;
#[path = "../tests/api/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{
    process::Command,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use git_server::{GitServer, many_files};
use unified_worker::git::{RepoSpec, clone::clone, set_server_timeouts};

fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let server = GitServer::start();
    let started = Instant::now();
    server.create_repo("bench", "main", &[many_files(files)]);
    println!("repository of {files} files created in {:.1?}", started.elapsed());
    let url = server.url("bench");
    set_server_timeouts(Duration::from_secs(60));

    let mut worker = Vec::new();
    let mut git = Vec::new();
    // Round 0 only warms the server's page cache and is not counted.
    for round in 0..=rounds {
        let dir = tempfile::TempDir::new().expect("temp dir");
        // Alternate the order so that neither side always runs on a warmer cache.
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for run_worker in order {
            let target = dir.path().join(if run_worker { "worker" } else { "git" });
            let started = Instant::now();
            if run_worker {
                let spec = RepoSpec {
                    url: url.clone(),
                    branch: None,
                    depth: 1,
                    token: None,
                };
                std::fs::create_dir_all(&target).expect("mkdir");
                let cloned = clone(&spec, &target, &AtomicBool::new(false), &|_| {}).expect("worker clone");
                assert!(cloned.head.is_some());
                worker.push(started.elapsed());
            } else {
                let status = Command::new("git")
                    .args(["clone", "-q", "--depth", "1", &url])
                    .arg(&target)
                    .status()
                    .expect("git clone");
                assert!(status.success());
                git.push(started.elapsed());
            }
        }
        let count = |name: &str| {
            let out = Command::new("git")
                .args(["ls-files"])
                .current_dir(dir.path().join(name))
                .output()
                .expect("git ls-files");
            out.stdout.iter().filter(|b| **b == b'\n').count()
        };
        assert_eq!(count("worker"), files, "the worker's clone has every file");
        assert_eq!(count("git"), files, "git's clone has every file");
        if round == 0 {
            worker.clear();
            git.clear();
        }
    }
    // The machine's load drifts between rounds; the ratio within a round compares like with like.
    let mut ratios: Vec<f64> = worker
        .iter()
        .zip(&git)
        .map(|(w, g)| w.as_secs_f64() / g.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!("rounds: {rounds}; worker (libgit2): {worker:.2?}; git clone --depth 1: {git:.2?}");
    let (w, g) = (median(&mut worker), median(&mut git));
    println!(
        "median: worker {:.3}s, git {:.3}s; median of per-round ratios worker/git = {:.2} (range {:.2}-{:.2})",
        w.as_secs_f64(),
        g.as_secs_f64(),
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
