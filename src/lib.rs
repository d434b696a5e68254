//! steerdns: an authoritative DNS server that answers A/AAAA for load-balanced
//! services from a live picture of their targets.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | TOML → validated [`config::Config`]; every error with file:line:col and key |
//! | [`zone`] | static zones from RFC 1035 files, indexed for SPEC §5.1 lookups |
//! | [`geo`] | client address (ECS or source) → region and ECS scope; gslb try orders |
//! | [`health`] | probes (HTTP(S), TCP), the rise/fall machine, the fixed-rate scheduler |
//! | [`rrl`] | response rate limiting: token buckets by client prefix and imputed name, one bounded table |
//! | [`tls`] | DNS over TLS's certificate and key as a rustls server config |
//! | [`loaded`] | a config with its zones and regions, validated together |
//! | [`view`] | the immutable [`view::View`] every query is answered from |
//! | [`steer`] | the answer stages (candidates → policy → order → cap), pure functions reporting typed events to a sink |
//! | [`dns`] | `respond(&View, request bytes) → response bytes`: parse, resolve, emit; `explain`, the listening sink that owns the words |
//! | [`metrics`] | counters (atomics on the query path) and the Prometheus exposition |
//! | [`server`] | sockets: steerdns's own UDP, TCP and TLS loops, RRL on UDP; a panic answering one query drops that query |
//! | [`store`] | run-time state kept across restarts (memory, a JSON file) or shared by nodes (etcd, feature `etcd`); leases are the store's |
//! | [`state`] | the single owner of mutable state: a pure model (`apply(inputs, now) → effects`) and its shell |
//! | [`admin`] | the admin HTTP API (axum): status, admin states, registrations, reload, healthz |
//! | [`app`] | wiring: make the counters, start the tasks, serve, reload, stop |
//! | [`api`] | the API's JSON types, shared with the CLI |
//! | [`supervise`] | crash-only: named tasks, the panic hook, contained queries, the owner's heartbeat |
//! | [`sys`] | the system calls safe crates do not cover (batched UDP, heap trimming): the one module with `unsafe` |
//! | [`cli`] | the `steerdns` command line |
//! | [`fuzzing`] | the fuzz harnesses (queries over UDP and TCP, zone files, configs, API bodies), shared by `fuzz/` and `cargo test` |
//!
//! Dependencies flow one way, down this table (`api` and `supervise` are used from
//! anywhere); `layering`'s test checks there is no cycle.
//!
//! # The query path
//!
//! ```text
//!                                                    ┌─ fast: name hashed from the wire ─► precompiled RRset
//! UDP socket ─► server::udp ─┐                       │        (zone::Zones)               or steer::answer
//!                            ├─► dns::respond(&View) ┤
//! TCP socket ─► server::tcp ─┘      (one ArcSwap    └─ general: dns::resolve ─► zone::Zone::lookup,
//!                                     load, no locks,                           steer::answer
//!                                     no I/O, no await)
//! ```
//!
//! Both paths write through one writer (`dns::writer`) and write the same bytes; the
//! fast one takes plain queries for static A/AAAA/TXT and service answers.
//!
//! Everything that changes answers goes through the state owner, whose model builds a
//! new View that the shell publishes with one atomic swap; readers never lock:
//!
//! ```text
//! config file / SIGHUP ──► loaded::load ─┐
//! health::Runner ──► Verdicts ───────────┤   state::Model      ┌─► ArcSwap<View> ──► dns::respond
//! admin API: states, registrations ──────┼─► apply(inputs) ───┼─► ArcSwap<Status> ─► status, explain, metrics
//! store ──► Snapshot/Changes/Written ────┘   (state::Owner)    ├─► store writes (reported back as events)
//!                                                              └─► probe set, replies
//! ```

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dns;
pub mod dnssec;
pub mod fuzzing;
pub mod geo;
pub mod health;
#[cfg(test)]
mod layering;
pub mod loaded;
pub mod metrics;
pub mod rrl;
pub mod server;
pub mod state;
pub mod steer;
pub mod store;
pub mod supervise;
pub mod sys;
pub mod tls;
pub mod view;
pub mod zone;
