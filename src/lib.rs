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
//! | [`steer`] | the answer stages (candidates → policy → order → cap), pure functions |
//! | [`view`] | the immutable [`view::View`] every query is answered from |
//! | [`health`] | probes (HTTP(S), TCP), the rise/fall machine, the fixed-rate scheduler |
//! | [`state`] | the single owner of mutable state: applies verdicts, reloads, admin states and registrations; publishes Views |
//! | [`dns`] | `respond(&View, request bytes) → response bytes`: parse, resolve, emit |
//! | [`server`] | sockets: steerdns's own UDP loop, TCP through hickory-server |
//! | [`app`] | wiring: load, build the View, serve, reload, stop |
//! | [`admin`] | the admin HTTP API (axum): status, admin states, reload, healthz |
//! | [`api`] | the API's JSON types, shared with the CLI |
//! | [`metrics`] | counters (atomics on the query path) and the Prometheus exposition |
//! | [`store`] | run-time state kept across restarts (memory, a JSON file) or shared by nodes (etcd, feature `etcd`) |
//! | [`cli`] | the `steerdns` command line |
//!
//! # The query path
//!
//! ```text
//! UDP socket ─► server::udp ─┐                       ┌─► zone::Zone::lookup (static names)
//!                            ├─► dns::respond(&View) ┤
//! TCP (hickory) ─► server::tcp┘      (one ArcSwap    └─► steer::answer (services)
//!                                     load, no locks,
//!                                     no I/O, no await)
//! ```
//!
//! Everything that changes answers goes through the state owner, which builds a new
//! View and publishes it with one atomic swap; readers never lock:
//!
//! ```text
//! config file / SIGHUP ──► app::load ───┐
//! health::Runner ──► Verdicts ──────────┤
//! admin API: states, registrations ─────┼─► state::State ──► ArcSwap<View> ──► dns::respond
//! etcd watch ──► store::Event ──────────┘   (its writes to etcd go out through the
//!                                            store and come back as store::Events)
//! ```

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dns;
pub mod geo;
pub mod health;
pub mod loaded;
pub mod metrics;
pub mod server;
pub mod state;
pub mod steer;
pub mod store;
pub mod supervise;
pub mod view;
pub mod zone;
