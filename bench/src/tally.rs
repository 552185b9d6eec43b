//! What a scenario measured: which events arrived, counted by their index so
//! that a missing or a duplicated event shows, how long it took, the CPU
//! time each process spent, and latency percentiles.

use std::future::Future;
use std::time::Duration;

use crate::cpu::{CpuTime, Processes};

/// Which events of a scenario arrived (by index), and what went wrong.
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    /// Whether event `i` arrived.
    seen: Vec<bool>,
    /// How many distinct events arrived.
    unique: u64,
    /// Errors, duplicates and events the scenario did not send.
    errors: u64,
    /// What the first of them was.
    first_error: Option<String>,
}

impl Tally {
    /// A tally of `events` events, none arrived yet.
    pub(crate) fn new(events: u64) -> Self {
        Self {
            seen: vec![false; events as usize],
            unique: 0,
            errors: 0,
            first_error: None,
        }
    }

    /// Marks event `index` as arrived; an index seen before or outside the
    /// scenario is an error.
    pub(crate) fn mark(&mut self, index: u64) {
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.seen.get_mut(i))
        {
            Some(seen) if !*seen => {
                *seen = true;
                self.unique += 1;
            }
            Some(_) => self.error(format!("event {index} arrived twice")),
            None => self.error(format!("event {index} is not one the scenario sent")),
        }
    }

    /// Marks the event whose index is `key` (a record key or request id).
    pub(crate) fn mark_key(&mut self, key: &str) {
        match key.parse::<u64>() {
            Ok(index) => self.mark(index),
            Err(_) => self.error(format!("an event with an unknown key {key:?}")),
        }
    }

    /// Counts an error.
    pub(crate) fn error(&mut self, message: impl Into<String>) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| message.into());
    }

    /// Whether every event arrived.
    pub(crate) fn complete(&self) -> bool {
        self.unique == self.seen.len() as u64
    }

    /// Whether every event arrived, once, and nothing went wrong.
    pub(crate) fn accounted(&self) -> bool {
        self.complete() && self.errors == 0
    }

    /// Adds what `part` (a tally of the same events) counted; an event both
    /// saw arrived twice.
    pub(crate) fn merge(&mut self, part: Tally) {
        self.merge_at(0, part);
    }

    /// Adds what `part` counted, its event `i` being this tally's event
    /// `offset + i` (one stream's events within all streams' deliveries).
    pub(crate) fn merge_at(&mut self, offset: u64, part: Tally) {
        for (i, seen) in part.seen.into_iter().enumerate() {
            if seen {
                self.mark(offset + i as u64);
            }
        }
        self.errors += part.errors;
        if let Some(error) = part.first_error {
            self.first_error.get_or_insert(error);
        }
    }

    /// Why the tally does not account for every event, if it does not.
    pub(crate) fn problem(&self, name: &str) -> Option<String> {
        if self.accounted() {
            return None;
        }
        Some(format!(
            "{name}: {} of {} events accounted for, {} errors{}",
            self.unique,
            self.seen.len(),
            self.errors,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ))
    }
}

/// One throughput measurement.
#[derive(Debug, Clone)]
pub(crate) struct Throughput {
    /// The scenario's name in the table.
    pub(crate) name: &'static str,
    /// Events (or deliveries) it moved.
    pub(crate) events: u64,
    /// How long it took.
    pub(crate) elapsed: Duration,
    /// Which of them arrived.
    pub(crate) tally: Tally,
    /// CPU time the processes spent in the scenario.
    pub(crate) cpu: Option<CpuTime>,
}

impl Throughput {
    /// A measurement of `events` events over `elapsed`.
    pub(crate) fn new(name: &'static str, events: u64, elapsed: Duration, tally: Tally) -> Self {
        Self {
            name,
            events,
            elapsed,
            tally,
            cpu: None,
        }
    }

    /// A scenario left out with `--only`: no figures (null in the JSON).
    pub(crate) fn skipped(name: &'static str) -> Self {
        Self::new(name, 0, Duration::ZERO, Tally::new(0))
    }

    /// CPU microseconds per event: load generator, gateway, broker, all.
    pub(crate) fn cpu_per_event_us(&self) -> [f64; 4] {
        match self.cpu {
            Some(cpu) if self.events > 0 => cpu.per_event_us(self.events),
            _ => [f64::NAN; 4],
        }
    }

    /// Events per second.
    pub(crate) fn eps(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Why the scenario does not account for every event, if it does not.
    pub(crate) fn problem(&self) -> Option<String> {
        self.tally.problem(self.name)
    }
}

/// The run with the median rate; a run that lost events wins, so that it is
/// reported.
pub(crate) fn median(mut runs: Vec<Throughput>) -> Option<Throughput> {
    if let Some(bad) = runs.iter().position(|run| run.problem().is_some()) {
        return Some(runs.swap_remove(bad));
    }
    runs.sort_by(|a, b| a.eps().total_cmp(&b.eps()));
    let middle = runs.len() / 2;
    (!runs.is_empty()).then(|| runs.swap_remove(middle))
}

/// The direct client's CPU per event over the gateway's own, round by round
/// (each `gateway` run beside the `direct` run of its round), and the median
/// of those ratios: a slow drift of the machine moves both runs of a round
/// alike, where the median of each side would pair runs of different times.
pub(crate) fn paired_efficiency(direct: &[Throughput], gateway: &[Throughput]) -> f64 {
    let mut ratios: Vec<f64> = direct
        .iter()
        .zip(gateway)
        .map(|(direct, gateway)| direct.cpu_per_event_us()[0] / gateway.cpu_per_event_us()[1])
        .filter(|ratio| ratio.is_finite())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What a scenario returns: its measurement, or why it could not run.
pub(crate) trait Measured {
    /// The measurement with the CPU time spent in it.
    fn with_cpu(self, cpu: CpuTime) -> Self;
}

impl Measured for Throughput {
    fn with_cpu(mut self, cpu: CpuTime) -> Self {
        self.cpu = Some(cpu);
        self
    }
}

impl Measured for Result<Throughput, String> {
    fn with_cpu(self, cpu: CpuTime) -> Self {
        self.map(|t| t.with_cpu(cpu))
    }
}

/// Runs `scenario`, recording the CPU time the processes spent in it.
pub(crate) async fn on_cpu<T: Measured>(
    processes: &Processes,
    scenario: impl Future<Output = T>,
) -> T {
    let before = processes.now();
    let outcome = scenario.await;
    outcome.with_cpu(processes.now() - before)
}

/// One side of the latency scenario: its percentiles, and which of its
/// events were confirmed.
pub(crate) type Side = (Latency, Tally);

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            p50: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        }
    }
}

impl Latency {
    /// The percentiles of `samples`.
    pub(crate) fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_repeated_event_is_not_accounted_for() {
        let mut tally = Tally::new(3);
        for key in ["0", "2", "1"] {
            tally.mark_key(key);
        }
        assert!(tally.accounted());
        tally.mark(1);
        assert_eq!(
            tally.problem("s").as_deref(),
            Some("s: 3 of 3 events accounted for, 1 errors (first: event 1 arrived twice)")
        );
        let mut missing = Tally::new(3);
        missing.mark(0);
        missing.mark(2);
        assert!(!missing.accounted());
        let mut stranger = Tally::new(1);
        stranger.mark(5);
        stranger.mark_key("warm");
        assert_eq!(stranger.errors, 2);
    }

    #[test]
    fn parts_merge_by_index_and_a_doubly_seen_event_counts_against() {
        let mut a = Tally::new(4);
        a.mark(0);
        a.mark(1);
        let mut b = Tally::new(4);
        b.mark(2);
        b.mark(3);
        let mut all = Tally::new(4);
        all.merge(a.clone());
        all.merge(b);
        assert!(all.accounted());
        all.merge(a);
        assert!(!all.accounted(), "events 0 and 1 came twice");

        // Two streams of two events: stream 1's events are 2 and 3.
        let mut deliveries = Tally::new(4);
        let mut stream = Tally::new(2);
        stream.mark(0);
        stream.mark(1);
        deliveries.merge_at(0, stream.clone());
        deliveries.merge_at(2, stream.clone());
        assert!(deliveries.accounted());
        let mut short = Tally::new(4);
        stream.seen[1] = false;
        stream.unique = 1;
        short.merge_at(0, stream.clone());
        short.merge_at(2, stream);
        assert_eq!(short.unique, 2, "each stream missed one");
    }

    #[test]
    fn percentiles_take_the_sample_at_or_above_the_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let latency = Latency::of(samples);
        assert_eq!((latency.p50, latency.p99, latency.max), (50.0, 99.0, 100.0));
        assert!(Latency::of(Vec::new()).p50.is_nan());
    }

    #[test]
    fn efficiency_pairs_each_round_and_takes_the_median_ratio() {
        // Round by round: the client's CPU per event in the direct run, the
        // gateway's in the gateway run beside it (seconds for 1000 events).
        let run = |client: f64, gateway: f64| {
            Throughput::new("run", 1000, Duration::from_secs(1), Tally::new(0)).with_cpu(CpuTime {
                client,
                gateway,
                broker: 0.0,
            })
        };
        let direct = [run(0.004, 0.0), run(0.008, 0.0), run(0.006, 0.0)];
        // The machine was twice as slow in round two: both sides.
        let gateway = [run(0.001, 0.005), run(0.002, 0.010), run(0.001, 0.008)];
        // 0.8, 0.8, 0.75: the median ratio; the medians of each side would
        // give 0.006 / 0.008 = 0.75 from runs of different rounds.
        assert_eq!(paired_efficiency(&direct, &gateway), 0.8);
        assert!(paired_efficiency(&direct, &[]).is_nan());
    }
}
