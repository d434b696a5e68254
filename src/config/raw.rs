//! The TOML file as written: serde structs that deny unknown keys and keep spans, so
//! that validation can point at the line of each value.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<S<Vec<S<String>>>>,
    pub admin_listen: Option<S<String>>,
    pub admin_token_file: Option<S<String>>,
    pub registration_token_file: Option<S<String>>,
    pub identity: Option<S<String>>,
    pub udp_workers: Option<S<i64>>,
    pub dnssec_signatures_per_second: Option<S<i64>>,
    pub tcp_idle_timeout: Option<S<String>>,
    pub tcp_max_connections: Option<S<i64>>,
    pub tcp_max_connections_per_client: Option<S<i64>>,
    pub shutdown_timeout: Option<S<String>>,
    pub startup_wait: Option<S<String>>,
    pub admin_hosts: Option<S<Vec<S<String>>>>,
    pub admin_tls_cert_file: Option<S<String>>,
    pub admin_tls_key_file: Option<S<String>>,
    pub tls_listen: Option<S<Vec<S<String>>>>,
    pub tls_cert_file: Option<S<String>>,
    pub tls_key_file: Option<S<String>>,
    pub rrl: Option<RawRrl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<S<String>>,
    pub level: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRrl {
    pub responses_per_second: Option<S<i64>>,
    pub slip: Option<S<i64>>,
    pub ipv4_prefix: Option<S<i64>>,
    pub ipv6_prefix: Option<S<i64>>,
    pub exempt: Option<S<Vec<S<String>>>>,
    pub table_size: Option<S<i64>>,
    pub window: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<S<String>>,
    pub path: Option<S<String>>,
    pub endpoints: Option<S<Vec<S<String>>>>,
    pub prefix: Option<S<String>>,
    pub ca_file: Option<S<String>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub username: Option<S<String>>,
    pub password_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: S<String>,
    pub file: S<String>,
    pub dnssec_keys: Option<Vec<S<String>>>,
    pub dnssec_cds_keys: Option<Vec<S<String>>>,
    pub max_zone_bytes: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub probe_source: Option<S<String>>,
    pub share: Option<S<bool>>,
    pub probers_per_target: Option<S<i64>>,
    pub node_lease_ttl: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    pub default_region: Option<S<String>>,
    pub mmdb: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    #[serde(default)]
    pub networks: Vec<S<String>>,
    #[serde(default)]
    pub countries: Vec<S<String>>,
    #[serde(default)]
    pub continents: Vec<S<String>>,
    #[serde(default)]
    pub fallback: Vec<S<String>>,
    pub location: Option<S<Vec<f64>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub kind: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub path: Option<S<String>>,
    pub host: Option<S<String>>,
    pub expect_status: Option<S<Vec<S<i64>>>>,
    pub expect_body: Option<S<String>>,
    pub tls_verify: Option<S<bool>>,
    pub agent_header: Option<S<String>>,
    pub agent_send: Option<S<String>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: S<String>,
    pub policy: Option<S<String>>,
    pub order: Option<S<String>>,
    pub check: Option<S<String>>,
    pub ttl: Option<S<i64>>,
    pub max_answers: Option<S<i64>>,
    pub when_all_down: Option<S<String>>,
    pub max_registrations: Option<S<i64>>,
    pub accept_registrations: Option<S<bool>>,
    pub registration_networks: Option<S<Vec<S<String>>>>,
    pub registration_token_file: Option<S<String>>,
    #[serde(default)]
    pub targets: Vec<S<RawTarget>>,
}

/// `[[templates]]`: a pattern, its caps, and every `[[services]]` key but name and
/// targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub pattern: S<String>,
    pub max_services: Option<S<i64>>,
    pub max_registrations_total: Option<S<i64>>,
    pub policy: Option<S<String>>,
    pub order: Option<S<String>>,
    pub check: Option<S<String>>,
    pub ttl: Option<S<i64>>,
    pub max_answers: Option<S<i64>>,
    pub when_all_down: Option<S<String>>,
    pub max_registrations: Option<S<i64>>,
    pub accept_registrations: Option<S<bool>>,
    pub registration_networks: Option<S<Vec<S<String>>>>,
    pub registration_token_file: Option<S<String>>,
}

/// A target: a bare address string, or a table with the address and its attributes.
#[derive(Debug)]
pub enum RawTarget {
    Address(String),
    Table(RawTargetTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetTable {
    pub address: S<String>,
    pub weight: Option<S<i64>>,
    pub region: Option<S<String>>,
    pub priority: Option<S<i64>>,
    pub check_address: Option<S<String>>,
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address string or a table { address = \"…\", … }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget::Address(v.to_string()))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawTarget, M::Error> {
                let table = Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTarget::Table(table))
            }
        }
        deserializer.deserialize_any(TargetVisitor)
    }
}
