//! Health checks (SPEC §6): probes keyed by (check, probe address), each run on its own
//! fixed-rate schedule, their outcomes sent to the state owner as [`Verdict`]s.
//!
//! `rise_fall` is the pure state machine, `probe` one probe (HTTP(S) or TCP), `runner`
//! the scheduler that starts, keeps and stops a task per key.

pub mod agent;
mod http;
mod probe;
mod rise_fall;
mod runner;

pub use agent::{Report, Reported};
pub use probe::{Outcome, Probe, install_crypto_provider};
pub use rise_fall::{Health, RiseFall, Transition};
pub use runner::{ProbeSet, Runner};

use std::net::IpAddr;
use std::time::SystemTime;

/// What is probed: a check's definition applied to one address. Services that share a
/// backend share its probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    pub check: String,
    pub address: IpAddr,
}

/// One probe's outcome, for the state owner.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub key: ProbeKey,
    /// Which run of the key's probe sent it: a probe restarted by a reload gets a new
    /// generation, so verdicts its predecessor left queued are told apart.
    pub generation: u64,
    pub outcome: Outcome,
    pub at: SystemTime,
}

/// Raises the soft open-file limit to the hard one, so that probes in flight are not
/// capped below what the configured pairs need.
/// Returns the limit in force (None when it cannot be read).
pub fn raise_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => Some(hard),
            Err(e) => {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
                Some(soft)
            }
        },
        Ok((soft, _)) => Some(soft),
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            None
        }
    }
}
