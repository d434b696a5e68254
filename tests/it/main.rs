//! The integration tests: one binary, a real server per test on 127.0.0.1, real
//! UDP/TCP sockets and processes.

mod admin;
mod admin_edge;
mod backend;
mod cli;
mod crash;
mod dns;
mod dnssec;
#[cfg(feature = "etcd")]
mod etcd;
mod examples;
mod explain;
mod gslb;
mod harness;
mod health;
mod load;
mod metrics;
mod orders;
mod pktinfo;
mod ready;
mod registrations;
mod robustness;
mod rrl;
mod services;
#[cfg(feature = "etcd")]
mod shared;
mod tcp;
pub mod templates;
mod tls;
mod zones;
