//! [[zones]], [regions.*] and [geo].

use super::*;

impl Validator<'_> {
    pub(super) fn zones(&mut self, raw: Vec<(RawZone, String)>) -> Vec<ZoneConfig> {
        let mut zones: Vec<ZoneConfig> = Vec::new();
        for (zone, key) in raw {
            let Some(origin) = self.name(&zone.origin, &format!("{key}.origin")) else { continue };
            if zones.iter().any(|z| z.origin == origin) {
                self.err(&zone.origin, &format!("{key}.origin"), "this zone is configured twice");
                continue;
            }
            let at = self.location(zone.origin.span());
            let max_bytes = match &zone.max_zone_bytes {
                Some(value) => bytes(value.get_ref()).unwrap_or_else(|| {
                    self.err(value, &format!("{key}.max_zone_bytes"), "must be a size, e.g. \"512MiB\", \"1GiB\"");
                    defaults::MAX_ZONE_BYTES
                }),
                None => defaults::MAX_ZONE_BYTES,
            };
            let dnssec_keys: Vec<KeyFile> = zone
                .dnssec_keys
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, k)| KeyFile {
                    path: self.path(k),
                    key: format!("{key}.dnssec_keys[{i}]"),
                    at: self.location(k.span()),
                })
                .collect();
            let mut dnssec_cds_keys = Vec::new();
            for (i, cds) in zone.dnssec_cds_keys.iter().flatten().enumerate() {
                match dnssec_keys.iter().position(|k| k.path == self.path(cds)) {
                    Some(at) => dnssec_cds_keys.push(at),
                    None => self.err(cds, &format!("{key}.dnssec_cds_keys[{i}]"), "names no key of dnssec_keys"),
                }
            }
            zones.push(ZoneConfig { origin, file: self.path(&zone.file), at, max_bytes, dnssec_keys, dnssec_cds_keys });
        }
        zones
    }

    pub(super) fn geo(&mut self, raw: RawGeo, regions: &BTreeMap<String, Region>, services: &[Service]) -> GeoConfig {
        if let Some(r) = &raw.default_region {
            if !regions.contains_key(r.get_ref()) {
                self.err(r, "geo.default_region", format!("names no region; known: {}", names(regions.keys())));
            }
        } else if let Some(s) = services.iter().find(|s| s.policy == Policy::Gslb)
            && !self.failed.iter().any(|f| f == "geo")
        {
            let line = s.at;
            self.errors.list.push(ConfigError {
                file: self.errors_file(),
                line: line.0,
                column: line.1,
                key: "geo.default_region".into(),
                message: format!("is required because service {} uses policy = \"gslb\"", s.name),
            });
        }
        let mmdb = raw.mmdb.as_ref().map(|m| self.path(m));
        let mmdb_at = raw.mmdb.as_ref().map_or((0, 0), |m| self.location(m.span()));
        GeoConfig { default_region: raw.default_region.map(S::into_inner), mmdb, mmdb_at }
    }

    pub(super) fn errors_file(&self) -> PathBuf {
        self.errors.file().to_path_buf()
    }

    pub(super) fn regions(&mut self, raw: Vec<(S<String>, Option<RawRegion>)>) -> BTreeMap<String, Region> {
        let known: Vec<String> = raw.iter().map(|(n, _)| n.get_ref().clone()).collect();
        let mut networks: HashMap<IpNet, String> = HashMap::new();
        let mut places: HashMap<String, String> = HashMap::new();
        let mut out = BTreeMap::new();
        for (name, region) in raw {
            let region = region.unwrap_or_default();
            let key = format!("regions.{}", name.get_ref());
            let mut r = Region::default();
            for n in &region.networks {
                let Some(net) = self.network(n, &format!("{key}.networks")) else { continue };
                match networks.insert(net, name.get_ref().clone()) {
                    Some(other) if &other == name.get_ref() => {
                        self.err(n, &format!("{key}.networks"), "is listed twice")
                    }
                    Some(other) => self.err(n, &format!("{key}.networks"), format!("is also in region {other}")),
                    None => r.networks.push(net),
                }
            }
            r.countries = self.places(&region.countries, &format!("{key}.countries"), &name, &mut places, |c| {
                COUNTRIES.split(' ').any(|k| k == c)
            });
            r.continents = self.places(&region.continents, &format!("{key}.continents"), &name, &mut places, |c| {
                CONTINENTS.contains(&c)
            });
            for f in &region.fallback {
                if f.get_ref() == name.get_ref() {
                    self.err(f, &format!("{key}.fallback"), "a region cannot fall back to itself");
                } else if !known.contains(f.get_ref()) {
                    self.err(f, &format!("{key}.fallback"), format!("names no region; known: {}", known.join(", ")));
                } else {
                    r.fallback.push(f.get_ref().clone());
                }
            }
            r.location = region.location.as_ref().and_then(|l| self.coordinates(l, &format!("{key}.location")));
            out.insert(name.into_inner(), r);
        }
        out
    }

    pub(super) fn network(&mut self, value: &S<String>, key: &str) -> Option<IpNet> {
        let text = value.get_ref();
        let parsed = text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
        match parsed {
            Some(net) if net.trunc() != net => {
                self.err(value, key, format!("has bits set beyond the prefix; did you mean \"{}\"?", net.trunc()));
                None
            }
            Some(net) => Some(net),
            None => {
                self.err(value, key, "must be a network in CIDR form, e.g. \"10.1.0.0/16\" or \"2001:db8::/32\"");
                None
            }
        }
    }

    /// Country or continent codes, each in at most one region.
    pub(super) fn places(
        &mut self,
        codes: &[S<String>],
        key: &str,
        region: &S<String>,
        seen: &mut HashMap<String, String>,
        known: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for code in codes {
            let c = code.get_ref();
            if !known(c) {
                let what = if key.ends_with("countries") {
                    "must be an ISO 3166-1 alpha-2 country code in capitals, e.g. \"DE\""
                } else {
                    "must be a continent code: AF AN AS EU NA OC SA"
                };
                self.err(code, key, format!("unknown code {c:?}: {what}"));
            } else if let Some(other) = seen.insert(c.clone(), region.get_ref().clone()) {
                self.err(code, key, format!("{c} is also in region {other}"));
            } else {
                out.push(c.clone());
            }
        }
        out
    }

    pub(super) fn coordinates(&mut self, value: &S<Vec<f64>>, key: &str) -> Option<(f64, f64)> {
        match value.get_ref().as_slice() {
            &[lat, lon] if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => Some((lat, lon)),
            _ => {
                self.err(value, key, "must be [latitude, longitude] in degrees: -90 to 90 and -180 to 180");
                None
            }
        }
    }
}

/// "1GiB", "512MiB", "64KiB", "100MB", "4096": a size in bytes.
fn bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.parse::<u64>().ok().filter(|n| *n > 0)?.checked_mul(scale)
}
