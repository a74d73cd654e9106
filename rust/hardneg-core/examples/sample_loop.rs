//! Draws negatives for power-law interactions in a loop, for profilers (`perf record`) and quick
//! CPU-time checks of the recommendation and knowledge-graph samplers.
//!
//!     cargo run --release -p hardneg-core --example sample_loop -- USERS ITEMS NEG THREADS REPEATS [MODE]
//!
//! MODE (default all): 0 uniform with replacement, 1 uniform without, 2 popularity with, 3 without.
//!
//! Users hold `min(600, 5 * Pareto(1.2))` items drawn with Zipf(0.9) popularity; every run
//! samples all users (uniform, popularity; with and without replacement).

use hardneg_core::sample::recsys::{Interactions, NegativeSampler, SampleOptions, Strategy};
use hardneg_core::sample::Streams;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|x| x.parse().expect("integer argument")).collect();
    let (num_users, num_items, neg, threads, repeats) = (a[0], a[1], a[2], a[3], a[4]);
    let only = a.get(5).copied();
    let mut s = 7u64;
    let mut unit = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    // Zipf(0.9) by inverting the continuous approximation of its CDF
    let zipf = |u: f64| ((u * ((num_items as f64).powf(0.1) - 1.0) + 1.0).powf(10.0) as usize).min(num_items) - 1;
    let (mut users, mut items) = (Vec::new(), Vec::new());
    for u in 0..num_users {
        let count = ((5.0 * unit().powf(-1.0 / 1.2)) as usize).min(600);
        for _ in 0..count {
            users.push(u as i64);
            items.push(((zipf(unit()) * 7919) % num_items) as i64);
        }
    }
    let inter = Interactions::from_pairs(&users, &items, num_users, num_items, threads).unwrap();
    println!("{} interactions", inter.len());
    let batch: Vec<i64> = (0..num_users as i64).collect();
    for (si, strategy) in [Strategy::Uniform, Strategy::Popularity { alpha: 0.75 }].into_iter().enumerate() {
        let sampler = NegativeSampler::new(inter.clone(), strategy).unwrap();
        for (ri, replace) in [true, false].into_iter().enumerate() {
            if only.is_some_and(|o| o != 2 * si + ri) {
                continue;
            }
            let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
            for r in 0..repeats {
                let c = cpu_seconds();
                let opts = SampleOptions { num_negatives: neg, replace, streams: Streams { seed: r as u64, epoch: 0, offset: 0 }, threads };
                let t = Instant::now();
                let out = sampler.sample(&batch, &opts, None).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                best_cpu = best_cpu.min(cpu_seconds() - c);
                std::hint::black_box(out);
            }
            let per = |x: f64| x * 1e9 / (num_users * neg) as f64;
            println!("{strategy:?} replace={replace}: wall {best:.3} s ({:.1} ns per negative), CPU {best_cpu:.3} s ({:.1} ns)", per(best), per(best_cpu));
        }
    }
}

/// CPU time of the process (user + system) from /proc/self/stat, in seconds (0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // fields after the command name: state is 0, utime 11, stime 12 (in 1/100 s)
    (ticks(11) + ticks(12)) / 100.0
}
