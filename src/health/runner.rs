//! The scheduler: one task per probe key, each on a fixed phase and a fixed rate.

use super::{Outcome, Probe, ProbeKey, Verdict};
use crate::config::Check;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The probes to run: each key with its check and the generation its verdicts carry.
pub type ProbeSet = BTreeMap<ProbeKey, (Check, u64)>;

/// Runs the probes the state owner asks for, sending every outcome back to it.
pub struct Runner {
    running: HashMap<ProbeKey, ((Check, u64), CancellationToken)>,
    verdicts: mpsc::Sender<Verdict>,
    tasks: TaskTracker,
}

impl Runner {
    pub fn new(verdicts: mpsc::Sender<Verdict>) -> Self {
        Runner { running: HashMap::new(), verdicts, tasks: TaskTracker::new() }
    }

    /// Makes the running probes those of `wanted`: probes of vanished keys, or whose
    /// check or generation changed, stop; new ones start at their phase.
    pub fn sync(&mut self, wanted: &ProbeSet) {
        self.running.retain(|key, (run, cancel)| {
            let keep = wanted.get(key) == Some(run);
            if !keep {
                cancel.cancel();
            }
            keep
        });
        for (key, (check, generation)) in wanted {
            if self.running.contains_key(key) {
                continue;
            }
            let cancel = CancellationToken::new();
            let probe = Probe::new(check, key.address).map_err(|e| {
                tracing::error!("check {} for {}: cannot build the probe: {e}", key.check, key.address);
                format!("cannot build the probe: {e}")
            });
            let run = Run { key: key.clone(), generation: *generation, verdicts: self.verdicts.clone() };
            self.tasks.spawn(crate::supervise::task("probe", schedule(run, check.clone(), probe, cancel.clone())));
            self.running.insert(key.clone(), ((check.clone(), *generation), cancel));
        }
    }

    /// Stops every probe and waits for their tasks.
    pub async fn stop(mut self) {
        for (_, (_, cancel)) in self.running.drain() {
            cancel.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// A fixed phase in [0, min(interval, 1 s)) from a hash of the key, so probes spread
/// over time and a key keeps its phase across restarts.
fn phase(key: &ProbeKey, interval: Duration) -> Duration {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    let span = interval.min(Duration::from_secs(1)).as_nanos() as u64;
    Duration::from_nanos(hasher.finish() % span.max(1))
}

/// Probes `key` at its phase, then every `interval` (fixed rate). A probe still
/// running when the next is due makes that next one count as a failure.
/// One run of a key's probe: where its verdicts go, stamped with its generation.
struct Run {
    key: ProbeKey,
    generation: u64,
    verdicts: mpsc::Sender<Verdict>,
}

impl Run {
    async fn send(&self, outcome: Outcome) -> Result<(), ()> {
        let verdict = Verdict { key: self.key.clone(), generation: self.generation, outcome, at: SystemTime::now() };
        self.verdicts.send(verdict).await.map_err(|_| ())
    }
}

async fn schedule(run: Run, check: Check, probe: Result<Probe, String>, cancel: CancellationToken) {
    let mut next = Instant::now() + phase(&run.key, check.interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let outcome = match &probe {
            Ok(probe) => tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = probe.run() => outcome,
            },
            Err(reason) => Outcome { passed: false, latency: Duration::ZERO, reason: reason.clone(), report: None },
        };
        if run.send(outcome).await.is_err() {
            return;
        }
        crate::supervise::fault_point("probe");
        next += check.interval;
        while next < Instant::now() {
            let overrun = Outcome {
                passed: false,
                latency: check.interval,
                reason: "probe overran its interval".into(),
                report: None,
            };
            if run.send(overrun).await.is_err() {
                return;
            }
            next += check.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_stable_and_below_min_interval_and_one_second() {
        let key = |a: &str| ProbeKey { check: "web".into(), address: a.parse().unwrap() };
        let p = phase(&key("127.0.0.1"), Duration::from_millis(300));
        assert_eq!(p, phase(&key("127.0.0.1"), Duration::from_millis(300)));
        assert!(p < Duration::from_millis(300));
        let phases: Vec<Duration> =
            (1..50).map(|i| phase(&key(&format!("127.0.0.{i}")), Duration::from_secs(10))).collect();
        assert!(phases.iter().all(|p| *p < Duration::from_secs(1)));
        assert!(phases.iter().any(|p| *p > Duration::from_millis(500)), "spread over the second");
    }
}
