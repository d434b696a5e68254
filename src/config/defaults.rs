//! Every default of the configuration, in one place (SPEC §2; the README lists the
//! ones SPEC leaves to steerdns).

use std::net::SocketAddr;
use std::time::Duration;

pub const LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5353);
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8053);
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
pub const TCP_MAX_CONNECTIONS: usize = 1024;
pub const TCP_MAX_CONNECTIONS_PER_CLIENT: usize = 64;
pub const RRL_SLIP: u32 = 2;
pub const RRL_IPV4_PREFIX: u8 = 24;
pub const RRL_IPV6_PREFIX: u8 = 56;
pub const RRL_TABLE_SIZE: usize = 100_000;
pub const RRL_WINDOW: Duration = Duration::from_secs(15);
/// Added to the longest check timeout for the default `startup_wait`.
pub const STARTUP_WAIT_MARGIN: Duration = Duration::from_secs(1);

pub const STORE_BACKEND: &str = "file";
/// Relative to the config's directory.
pub const STORE_PATH: &str = "state/steerdns-state.json";
/// Relative to the config's directory: etcd's copy of its last snapshot.
pub const ETCD_COPY_PATH: &str = "state/steerdns-etcd-copy.json";
pub const ETCD_PREFIX: &str = "/steerdns/";

pub const MAX_ZONE_BYTES: u64 = 1 << 30;

pub const CHECK_PATH: &str = "/";
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const RISE: u32 = 2;
pub const FALL: u32 = 3;

pub const TTL: u32 = 30;
/// `max_answers` for `round-robin`; `weighted` and `sticky` answer one.
pub const MAX_ANSWERS: usize = 8;
pub const MAX_ANSWERS_PICKED: usize = 1;
pub const MAX_REGISTRATIONS: u32 = 1000;
