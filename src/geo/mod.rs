//! Client address → region (SPEC §1): the longest-prefix match in the regions'
//! networks (compiled by `trie`, which also gives the ECS scope), else the GeoIP
//! database's country, then continent, else `[geo] default_region`. Also each region's
//! try order for `gslb`: itself, its `fallback` list, the nearest by great-circle
//! distance, then every other region by name.

mod trie;

pub use trie::RegionId;

use crate::config::{Config, ConfigError, ConfigErrors};
use std::collections::HashMap;
use std::net::IpAddr;
use trie::Trie;

/// What decided a client's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// A configured network of this prefix length.
    Network(u8),
    /// The GeoIP database's country or continent code, in a database network of this
    /// prefix length.
    Country(String, u8),
    Continent(String, u8),
    /// `[geo] default_region`.
    Default,
}

/// A client's place: its region, what decided it, and the ECS scope: the largest
/// block around the client in which every address gets the same region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub region: RegionId,
    pub decided: Decided,
    pub scope: u8,
}

/// The compiled region data of one config.
pub struct Geo {
    names: Vec<String>,
    v4: Trie,
    v6: Trie,
    countries: HashMap<String, RegionId>,
    continents: HashMap<String, RegionId>,
    default: Option<RegionId>,
    mmdb: Option<maxminddb::Reader<Vec<u8>>>,
    orders: Vec<Vec<RegionId>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo").field("regions", &self.names).field("mmdb", &self.mmdb.is_some()).finish()
    }
}

impl Geo {
    /// Compiles the regions of `config` and opens its GeoIP database; a missing or
    /// corrupt database is an error at `geo.mmdb`.
    pub fn build(config: &Config) -> Result<Geo, ConfigErrors> {
        let names: Vec<String> = config.regions.keys().cloned().collect();
        let id = |name: &str| names.iter().position(|n| n == name).map(|i| i as RegionId);
        let (mut v4, mut v6) = (Trie::new(32), Trie::new(128));
        let (mut countries, mut continents) = (HashMap::new(), HashMap::new());
        for (name, region) in &config.regions {
            let region_id = id(name).expect("a configured region");
            for net in &region.networks {
                let trie = if net.addr().is_ipv4() { &mut v4 } else { &mut v6 };
                trie.insert(trie::bits(net.addr()), net.prefix_len(), region_id);
            }
            countries.extend(region.countries.iter().map(|c| (c.clone(), region_id)));
            continents.extend(region.continents.iter().map(|c| (c.clone(), region_id)));
        }
        v4.finish();
        v6.finish();
        let mmdb = match &config.geo.mmdb {
            Some(path) => Some(maxminddb::Reader::open_readfile(path).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    file: config.file.clone(),
                    line: config.geo.mmdb_at.0,
                    column: config.geo.mmdb_at.1,
                    key: "geo.mmdb".into(),
                    message: format!("cannot read the GeoIP database {}: {e}", path.display()),
                }])
            })?),
            None => None,
        };
        let orders = (0..names.len()).map(|r| try_order(config, &names, r)).collect();
        let default = config.geo.default_region.as_deref().and_then(id);
        Ok(Geo { names, v4, v6, countries, continents, default, mmdb, orders })
    }

    pub fn region_count(&self) -> usize {
        self.names.len()
    }

    /// Every region, by id.
    pub fn regions(&self) -> impl Iterator<Item = (RegionId, &str)> {
        self.names.iter().enumerate().map(|(i, n)| (i as RegionId, n.as_str()))
    }

    pub fn name(&self, region: RegionId) -> &str {
        &self.names[region as usize]
    }

    pub fn id(&self, name: &str) -> Option<RegionId> {
        self.names.iter().position(|n| n == name).map(|i| i as RegionId)
    }

    /// The regions a `gslb` answer for a client of `region` tries, in order.
    pub fn order(&self, region: RegionId) -> &[RegionId] {
        &self.orders[region as usize]
    }

    /// The client's region; None only when nothing decides and there is no
    /// `default_region` (then no service uses `gslb`).
    pub fn locate(&self, address: IpAddr) -> Option<Placement> {
        let trie = if address.is_ipv4() { &self.v4 } else { &self.v6 };
        let found = trie.find(trie::bits(address));
        if let Some(region) = found.region {
            let decided = Decided::Network(found.network_len.unwrap_or(found.scope));
            return Some(Placement { region, decided, scope: found.scope });
        }
        // with a database, its network for this address bounds the block too, whatever
        // it maps to (a neighbouring database network may map to another region)
        let (database, database_len) = self.mmdb.as_ref().map_or((None, 0), |db| self.look_up_database(db, address));
        let scope = found.scope.max(database_len);
        match database {
            Some((region, decided)) => Some(Placement { region, decided, scope }),
            None => self.default.map(|region| Placement { region, decided: Decided::Default, scope }),
        }
    }

    /// The country, then the continent, of the database's entry for `address`, mapped
    /// to a region, and the length of the database network holding `address`.
    fn look_up_database(&self, db: &maxminddb::Reader<Vec<u8>>, address: IpAddr) -> (Option<(RegionId, Decided)>, u8) {
        let Ok(result) = db.lookup(address) else { return (None, 0) };
        let len = result.network().map_or(0, |n| n.prefix());
        let Ok(Some(record)) = result.decode::<maxminddb::geoip2::Country>() else { return (None, len) };
        if let Some(code) = record.country.iso_code
            && let Some(&region) = self.countries.get(code)
        {
            return (Some((region, Decided::Country(code.to_string(), len))), len);
        }
        let mapped = record
            .continent
            .code
            .and_then(|code| Some((*self.continents.get(code)?, Decided::Continent(code.to_string(), len))));
        (mapped, len)
    }
}

/// A region's try order: itself, its fallback list (not transitive), the regions with a
/// location nearest first (when it has one; ties by name), then all by name.
fn try_order(config: &Config, names: &[String], region: usize) -> Vec<RegionId> {
    let this = &config.regions[&names[region]];
    let mut order = vec![region as RegionId];
    let mut push = |r: RegionId| {
        if !order.contains(&r) {
            order.push(r);
        }
    };
    for f in &this.fallback {
        push(names.iter().position(|n| n == f).expect("validated") as RegionId);
    }
    if let Some(here) = this.location {
        let mut located: Vec<(f64, usize)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| config.regions[n].location.map(|there| (distance(here, there), i)))
            .collect();
        located.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        located.into_iter().for_each(|(_, i)| push(i as RegionId));
    }
    (0..names.len()).for_each(|i| push(i as RegionId));
    order
}

/// Great-circle distance in radians between two (latitude, longitude) points.
fn distance((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests;
