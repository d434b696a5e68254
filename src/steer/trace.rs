//! What the answer stages report as they decide, for whoever listens (ripgrep's `Sink`
//! shape: the stages report typed events, the sink owns the words). On the query path
//! nobody listens: [`Quiet`] is a sink whose events compile to nothing, and stages
//! gather what only a listener needs behind [`Sink::LISTENING`].

use crate::geo::{Placement, RegionId};
use crate::view::{Candidate, ServiceView};
use std::net::IpAddr;

use super::{Client, Family};

/// One decision of the answer stages.
#[derive(Debug)]
pub enum Event<'a> {
    /// Stage 1: the service's targets of the query's family.
    Candidates { service: &'a ServiceView, family: Family, set: &'a [Candidate] },
    /// gslb: where the client was placed.
    Placed { place: &'a Placement, client: &'a Client },
    /// `all`: every candidate, health ignored.
    All,
    /// `healthy` (and gslb without a region): how many of the candidates are healthy.
    Healthy { healthy: usize, of: usize },
    /// `failover`: one priority tier looked at.
    Tier { priority: u8, live: usize, all: usize },
    /// gslb: one region of the client's try order looked at (the first is its own).
    Region { region: RegionId, first: bool, live: usize, all: usize },
    /// No candidate healthy, `when_all_down = "all"`: this many answered as if healthy.
    FailOpen { kept: usize },
    /// No candidate healthy, `when_all_down = "none"`.
    NothingAnswered,
    /// Weight-0 candidates left out while one of positive weight remains.
    WeightZero { left_out: usize },
    /// After stage 2: the set the order arranges, and whether it failed open.
    Kept { set: &'a [Candidate], failed_open: bool },
    /// Stage 3.
    Ordered(Ordered),
    /// Stage 4: what was answered, with which TTL.
    Answered { client: IpAddr, out: &'a [IpAddr], ttl: u32, halved: bool, max_answers: usize },
}

/// What the order did.
#[derive(Debug, Clone, Copy)]
pub enum Ordered {
    /// Round-robin: the position this query started at, of how many.
    RoundRobin {
        start: usize,
        of: usize,
    },
    Weighted,
    /// Sticky: the client network hashed.
    Sticky {
        network: IpAddr,
        prefix: u8,
    },
}

/// Receives the stages' events.
pub trait Sink {
    /// Whether events are wanted at all; when not, nothing is gathered for them, and
    /// the answer moves counters (explain's does not).
    const LISTENING: bool;

    fn event(&mut self, event: Event<'_>);
}

/// The query path's sink: hears nothing.
pub struct Quiet;

impl Sink for Quiet {
    const LISTENING: bool = false;

    fn event(&mut self, _: Event<'_>) {}
}
