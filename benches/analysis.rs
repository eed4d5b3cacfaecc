//! Criterion benchmarks of the analysis a report needs after timing: the
//! statistics of a large sample and the accuracy metrics of a large output.
//! They run after every precision, so they must stay negligible beside the
//! timing itself (`make bench` / `cargo bench --bench analysis`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use precisiond_core::accuracy::{compare_values, top1_agreement};
use precisiond_core::bench::{median_relative_ci, LatencyStats};

fn samples(n: usize) -> Vec<f64> {
    // Deterministic, latency-like: a base with a long right tail.
    (0..n)
        .map(|i| {
            let u = ((i as u64).wrapping_mul(2_654_435_761) % 1_000_003) as f64 / 1_000_003.0;
            1.0 + 0.05 * u + if u > 0.99 { 2.0 * u } else { 0.0 }
        })
        .collect()
}

fn statistics(c: &mut Criterion) {
    // 100 000 timed calls: the iteration cap of one precision.
    let s = samples(100_000);
    c.bench_function("latency stats, 100k samples", |b| {
        b.iter(|| LatencyStats::from_samples(black_box(&s)))
    });
    c.bench_function("median 95% CI, 100k samples", |b| {
        b.iter(|| median_relative_ci(black_box(&s)))
    });
}

fn accuracy(c: &mut Criterion) {
    // A segmentation-sized output: 21 classes x 512 x 512.
    let n = 21 * 512 * 512;
    let reference: Vec<f64> = (0..n).map(|i| ((i % 977) as f64 * 0.37).sin()).collect();
    let candidate: Vec<f64> = reference.iter().map(|v| v + 1e-3 * v.cos()).collect();
    c.bench_function("cosine/max-abs/SQNR, 5.5M values", |b| {
        b.iter(|| compare_values(black_box(&reference), black_box(&candidate)))
    });
    c.bench_function("top-1 agreement, 5.5M values in rows of 1000", |b| {
        b.iter(|| {
            top1_agreement(
                black_box(&reference[..5_504_000]),
                black_box(&candidate[..5_504_000]),
                1000,
            )
        })
    });
}

criterion_group!(benches, statistics, accuracy);
criterion_main!(benches);
