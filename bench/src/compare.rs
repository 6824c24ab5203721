//! `bench/run.sh compare <rev>`: two worker binaries measured side by side in one run, on the figures that a change
//! of the SSE path can move (stream throughput, CPU per event, added latency). Each round runs every binary once
//! per figure, in an order that alternates from round to round, so that the load of a shared machine falls on
//! both alike; each figure is the median over the rounds.

use std::{path::PathBuf, time::Instant};

use crate::{median, proc_stats::cpu_seconds, runs, sse_client, worker::Worker};

pub struct Subject {
    pub name: String,
    pub bin: PathBuf,
}

/// `NAME=PATH` arguments.
pub fn subjects(args: &[String]) -> Vec<Subject> {
    let subjects: Vec<Subject> = args
        .iter()
        .map(|arg| {
            let (name, bin) = arg.split_once('=').expect("arguments are NAME=PATH");
            Subject {
                name: name.into(),
                bin: bin.into(),
            }
        })
        .collect();
    assert!(subjects.len() >= 2, "compare needs two or more NAME=PATH arguments");
    subjects
}

#[derive(Default)]
struct Figures {
    rate: Vec<f64>,
    cpu: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// Every delay of every round: its percentiles are steadier than the median of per-round ones.
    delays: Vec<f64>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn compare(subjects: &[Subject]) {
    let lines = 200_000u64;
    let mut figures: Vec<Figures> = subjects.iter().map(|_| Figures::default()).collect();
    let load_before = load_average();
    for round in 0..runs() {
        let mut order: Vec<usize> = (0..subjects.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &i in &order {
            let worker = Worker::spawn_bin(&subjects[i].bin).await;
            let cpu0 = cpu_seconds(worker.pid());
            let started = Instant::now();
            let summary = sse_client::run_job(worker.port, &format!("lines={lines}")).await;
            let secs = started.elapsed().as_secs_f64();
            let cpu = (cpu_seconds(worker.pid()) - cpu0) / summary.events as f64 * 100_000.0;
            figures[i].rate.push(summary.events as f64 / secs);
            figures[i].cpu.push(cpu);
            eprintln!(
                "round {round} {}: throughput {:.0} events/s, {cpu:.3} CPU s per 100k (load {})",
                subjects[i].name,
                summary.events as f64 / secs,
                load_average()
            );
        }
        for &i in &order {
            let worker = Worker::spawn_bin(&subjects[i].bin).await;
            let mut delays = sse_client::run_job(worker.port, "lines=10000 rate=5000 stamp=1")
                .await
                .delays_us;
            assert!(!delays.is_empty(), "no stamped events arrived");
            delays.sort_by(|a, b| a.total_cmp(b));
            let (p50, p99) = (delays[delays.len() / 2], delays[delays.len() * 99 / 100]);
            figures[i].p50.push(p50);
            figures[i].p99.push(p99);
            figures[i].delays.extend_from_slice(&delays);
            eprintln!(
                "round {round} {}: latency p50 {p50:.0} µs, p99 {p99:.0} µs",
                subjects[i].name
            );
        }
    }
    println!(
        "\n{} rounds, load average (1, 5, 15 min) {load_before} before, {} after\n",
        runs(),
        load_average()
    );
    let names: Vec<&str> = subjects.iter().map(|s| s.name.as_str()).collect();
    // Rounds pair the subjects under the same load, so the per-round ratio is the fairer comparison; the ratio
    // of the medians is shown beside it.
    let others: String = names[1..]
        .iter()
        .map(|n| {
            format!(
                " {n} / {0}: ratio of medians | {n} / {0}: per-round ratio, median (min – max) |",
                names[0]
            )
        })
        .collect();
    println!("| figure | {} (median) |{others}", names.join(" (median) | "));
    println!(
        "|---|{}{}",
        "---|".repeat(names.len()),
        "---|---|".repeat(names.len() - 1)
    );
    let row = |label: &str, pick: fn(&Figures) -> &Vec<f64>, scale: f64, digits: usize| {
        let medians: Vec<f64> = figures.iter().map(|f| median(pick(f).clone()) * scale).collect();
        let cells: Vec<String> = medians.iter().map(|m| format!("{m:.digits$}")).collect();
        let base = pick(&figures[0]);
        let ratios: String = figures[1..]
            .iter()
            .zip(&medians[1..])
            .map(|(f, m)| {
                let per_round: Vec<f64> = pick(f).iter().zip(base).map(|(x, b)| x / b).collect();
                let (min, max) = per_round
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
                format!(
                    " {:.3} | {:.3} ({min:.2} – {max:.2}) |",
                    m / medians[0],
                    median(per_round.clone())
                )
            })
            .collect();
        println!("| {label} | {} |{ratios}", cells.join(" | "));
    };
    row("stream throughput (events/s, end to end)", |f| &f.rate, 1.0, 0);
    row("worker CPU seconds per 100,000 events", |f| &f.cpu, 1.0, 3);
    row("added latency p50 (ms, 5,000 lines/s)", |f| &f.p50, 0.001, 3);
    row("added latency p99 (ms)", |f| &f.p99, 0.001, 3);
    let pooled: Vec<String> = figures
        .iter_mut()
        .map(|f| {
            f.delays.sort_by(|a, b| a.total_cmp(b));
            let at = |q: f64| f.delays[((f.delays.len() as f64 * q) as usize).min(f.delays.len() - 1)] / 1000.0;
            format!(
                "p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
                at(0.5),
                at(0.99),
                at(0.999)
            )
        })
        .collect();
    println!();
    for (name, pooled) in names.iter().zip(pooled) {
        println!("all rounds' delays pooled, {name}: {pooled}");
    }
}
