//! Raw structs → [`Config`], collecting every error with its location.

use super::error::{Errors, line_column};
use super::raw::*;
use super::*;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use toml::de::{DeTable, DeValue, ValueDeserializer};

const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// ISO 3166-1 alpha-2 codes (officially assigned).
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

pub(super) fn validate(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let root = DeTable::parse(text).map_err(|e| syntax_error(text, file, &e))?;
    let mut v = Validator {
        errors: Errors::new(file, text),
        base: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        text,
        failed: Vec::new(),
    };
    let raw = v.split(root.get_ref());
    let config = v.config(raw, file);
    v.errors.into_result()?;
    Ok(config)
}

fn syntax_error(text: &str, file: &Path, e: &toml::de::Error) -> ConfigErrors {
    let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
    ConfigErrors(vec![ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        key: String::new(),
        message: format!("TOML syntax error: {}", e.message().trim()),
    }])
}

/// The file's sections, each deserialized on its own so that one bad table does not
/// hide the errors of the others.
#[derive(Default)]
struct RawConfig {
    server: RawServer,
    store: RawStore,
    zones: Vec<(RawZone, String)>,
    geo: RawGeo,
    regions: Vec<(S<String>, Option<RawRegion>)>,
    checks: Vec<(S<String>, Option<RawCheck>)>,
    services: Vec<(RawService, String)>,
}

struct Validator<'a> {
    errors: Errors<'a>,
    base: PathBuf,
    text: &'a str,
    /// Sections that failed to deserialize: rules that depend on them are skipped, so
    /// one mistake is reported once.
    failed: Vec<String>,
}

type Value<'i> = toml::Spanned<DeValue<'i>>;

impl<'a> Validator<'a> {
    fn split(&mut self, root: &DeTable<'_>) -> RawConfig {
        let mut raw = RawConfig::default();
        for (key, value) in root {
            match key.get_ref().as_ref() {
                "server" => raw.server = self.section("server", value).unwrap_or_default(),
                "store" => raw.store = self.section("store", value).unwrap_or_default(),
                "geo" => raw.geo = self.section("geo", value).unwrap_or_default(),
                "zones" => raw.zones = self.array("zones", value),
                "services" => raw.services = self.array("services", value),
                "regions" => raw.regions = self.named_tables("regions", value),
                "checks" => raw.checks = self.named_tables("checks", value),
                other => self.errors.at(
                    key.span(),
                    other,
                    "unknown key; allowed: server, store, zones, geo, regions, checks, services",
                ),
            }
        }
        raw
    }

    fn section<T: DeserializeOwned>(&mut self, key: &str, value: &Value<'_>) -> Option<T> {
        T::deserialize(ValueDeserializer::from(value.clone()))
            .map_err(|e| {
                self.errors.serde(key, &e, value.span());
                self.failed.push(key.to_string());
            })
            .ok()
    }

    /// `[[key]]` arrays of tables; each element with its key path.
    fn array<T: DeserializeOwned>(&mut self, key: &str, value: &Value<'_>) -> Vec<(T, String)> {
        let Some(items) = value.get_ref().as_array() else {
            self.errors.at(value.span(), key, "must be an array of tables ([[{key}]])");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{key}[{i}]");
            if let Some(t) = self.section(&path, item) {
                out.push((t, path));
            }
        }
        out
    }

    /// `[key.NAME]` tables; each with its name, and None where it did not deserialize
    /// (its name still counts for references, so one mistake is reported once).
    fn named_tables<T: DeserializeOwned>(&mut self, key: &str, value: &Value<'_>) -> Vec<(S<String>, Option<T>)> {
        let Some(table) = value.get_ref().as_table() else {
            self.errors.at(value.span(), key, format!("must be a table of tables ([{key}.NAME])"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, item) in table {
            let path = format!("{key}.{}", name.get_ref());
            let table = self.section(&path, item);
            out.push((S::new(name.span(), name.get_ref().to_string()), table));
        }
        out
    }

    fn err<T>(&mut self, value: &S<T>, key: &str, message: impl Into<String>) {
        self.errors.at(value.span(), key, message);
    }

    fn location(&self, span: Range<usize>) -> (usize, usize) {
        line_column(self.text, span.start)
    }

    fn path(&self, value: &S<String>) -> PathBuf {
        self.base.join(value.get_ref())
    }

    fn config(&mut self, raw: RawConfig, file: &Path) -> Config {
        let server = self.server(raw.server);
        let store = self.store(raw.store);
        let zones = self.zones(raw.zones);
        let regions = self.regions(raw.regions);
        let check_names: Vec<String> = raw.checks.iter().map(|(n, _)| n.get_ref().clone()).collect();
        let checks = self.checks(raw.checks);
        let services = self.services(raw.services, &regions, &check_names);
        let geo = self.geo(raw.geo, &regions, &services);
        Config { file: file.to_path_buf(), server, store, zones, geo, regions, checks, services }
    }

    fn server(&mut self, raw: RawServer) -> ServerConfig {
        let mut listen = Vec::new();
        match &raw.listen {
            Some(list) if list.get_ref().is_empty() => {
                self.err(list, "server.listen", "must list at least one address")
            }
            Some(list) => {
                for item in list.get_ref() {
                    match item.get_ref().parse::<SocketAddr>() {
                        Ok(addr) if listen.contains(&addr) => self.err(item, "server.listen", "is listed twice"),
                        Ok(addr) => listen.push(addr),
                        Err(_) => {
                            self.err(item, "server.listen", "must be IP:PORT, e.g. \"127.0.0.1:53\" or \"[::1]:53\"")
                        }
                    }
                }
            }
            None => listen.push(SocketAddr::from(([127, 0, 0, 1], 5353))),
        }
        let admin_listen = match &raw.admin_listen {
            Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
                self.err(s, "server.admin_listen", "must be IP:PORT, e.g. \"127.0.0.1:8053\"");
                SocketAddr::from(([127, 0, 0, 1], 8053))
            }),
            None => SocketAddr::from(([127, 0, 0, 1], 8053)),
        };
        let admin_token = raw.admin_token_file.as_ref().and_then(|f| self.token(f, "server.admin_token_file"));
        if admin_token.is_none() && raw.admin_token_file.is_none() && !admin_listen.ip().is_loopback() {
            let span = raw.admin_listen.as_ref().map(S::span).unwrap_or(0..0);
            self.errors.at(
                span,
                "server.admin_listen",
                "is not a loopback address, so server.admin_token_file is required",
            );
        }
        let registration_token =
            raw.registration_token_file.as_ref().and_then(|f| self.token(f, "server.registration_token_file"));
        let identity = match raw.identity {
            Some(s) if s.get_ref().is_empty() || s.get_ref().len() > 255 => {
                self.err(&s, "server.identity", "must be 1 to 255 bytes");
                String::new()
            }
            Some(s) => s.into_inner(),
            None => host_name(),
        };
        let udp_workers = match raw.udp_workers {
            Some(n) => self.int(&n, "server.udp_workers", 1, 1024) as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let tcp_idle_timeout =
            self.duration(raw.tcp_idle_timeout.as_ref(), "server.tcp_idle_timeout", Duration::from_secs(10));
        let shutdown_timeout =
            self.duration(raw.shutdown_timeout.as_ref(), "server.shutdown_timeout", Duration::from_secs(5));
        let startup_wait = raw.startup_wait.as_ref().and_then(|value| {
            let parsed = humantime::parse_duration(value.get_ref());
            parsed
                .map_err(|_| {
                    self.err(value, "server.startup_wait", "must be a duration with a unit, e.g. \"3s\" (\"0s\": off)")
                })
                .ok()
        });
        ServerConfig {
            listen,
            admin_listen,
            admin_token,
            registration_token,
            identity,
            udp_workers,
            tcp_idle_timeout,
            shutdown_timeout,
            startup_wait,
        }
    }

    /// Reads a token file: one token, surrounding whitespace trimmed, not empty.
    fn token(&mut self, file: &S<String>, key: &str) -> Option<String> {
        let path = self.path(file);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => {
                self.err(file, key, format!("{} is empty", path.display()));
                None
            }
            Ok(text) => Some(text.trim().to_string()),
            Err(e) => {
                self.err(file, key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    fn store(&mut self, raw: RawStore) -> StoreConfig {
        let backend = raw.backend.as_ref().map_or("file", |b| b.get_ref().as_str()).to_string();
        if let Some(b) = raw.backend.as_ref().filter(|b| b.get_ref() == "etcd" && !cfg!(feature = "etcd")) {
            self.err(
                b,
                "store.backend",
                "this steerdns was built without the etcd store; build it with `--features etcd`",
            );
        }
        let etcd_only: [(&str, Option<Range<usize>>); 7] = [
            ("endpoints", raw.endpoints.as_ref().map(S::span)),
            ("prefix", raw.prefix.as_ref().map(S::span)),
            ("ca_file", raw.ca_file.as_ref().map(S::span)),
            ("cert_file", raw.cert_file.as_ref().map(S::span)),
            ("key_file", raw.key_file.as_ref().map(S::span)),
            ("username", raw.username.as_ref().map(S::span)),
            ("password_file", raw.password_file.as_ref().map(S::span)),
        ];
        if matches!(backend.as_str(), "memory" | "file") {
            for (key, span) in etcd_only {
                if let Some(span) = span {
                    self.errors.at(span, format!("store.{key}"), "is only for backend = \"etcd\"");
                }
            }
        }
        if backend == "memory"
            && let Some(p) = &raw.path
        {
            self.err(p, "store.path", "is only for backend = \"file\" or \"etcd\" (its copy of the last snapshot)");
        }
        match backend.as_str() {
            "memory" => StoreConfig::Memory,
            "file" => StoreConfig::File {
                path: raw.path.as_ref().map_or_else(|| self.base.join("state/steerdns-state.json"), |p| self.path(p)),
            },
            "etcd" => StoreConfig::Etcd(self.etcd(raw)),
            _ => {
                let b = raw.backend.as_ref().expect("only a given backend can be unknown");
                self.err(b, "store.backend", "must be \"file\", \"memory\" or \"etcd\"");
                StoreConfig::Memory
            }
        }
    }

    fn etcd(&mut self, raw: RawStore) -> EtcdConfig {
        let endpoints: Vec<String> = match &raw.endpoints {
            Some(list) if !list.get_ref().is_empty() => list.get_ref().iter().map(|e| e.get_ref().clone()).collect(),
            Some(list) => {
                self.err(list, "store.endpoints", "must list at least one endpoint");
                Vec::new()
            }
            None => {
                let span = raw.backend.as_ref().map(S::span).unwrap_or(0..0);
                self.errors.at(span, "store.endpoints", "is required for backend = \"etcd\"");
                Vec::new()
            }
        };
        if let Some(list) = &raw.endpoints {
            for e in list.get_ref() {
                if !(e.get_ref().starts_with("http://") || e.get_ref().starts_with("https://")) {
                    self.err(e, "store.endpoints", "must be a URL such as \"http://127.0.0.1:2379\"");
                }
            }
        }
        let prefix = raw.prefix.as_ref().map_or("/steerdns/".to_string(), |p| p.get_ref().clone());
        if let Some(p) = raw.prefix.as_ref().filter(|p| !p.get_ref().ends_with('/')) {
            self.err(p, "store.prefix", "must end with \"/\" (so that it is a directory of keys: \"/steerdns/\")");
        }
        let pairs = [
            (("cert_file", &raw.cert_file), ("key_file", &raw.key_file)),
            (("username", &raw.username), ("password_file", &raw.password_file)),
        ];
        for ((a, first), (b, second)) in pairs {
            match (first, second) {
                (Some(given), None) => self.err(given, &format!("store.{a}"), format!("needs store.{b} too")),
                (None, Some(given)) => self.err(given, &format!("store.{b}"), format!("needs store.{a} too")),
                _ => {}
            }
        }
        EtcdConfig {
            endpoints,
            prefix,
            ca_file: raw.ca_file.as_ref().map(|p| self.path(p)),
            cert_file: raw.cert_file.as_ref().map(|p| self.path(p)),
            key_file: raw.key_file.as_ref().map(|p| self.path(p)),
            username: raw.username.map(S::into_inner),
            password_file: raw.password_file.as_ref().map(|p| self.path(p)),
            copy: raw.path.as_ref().map_or_else(|| self.base.join("state/steerdns-etcd-copy.json"), |p| self.path(p)),
        }
    }

    fn zones(&mut self, raw: Vec<(RawZone, String)>) -> Vec<ZoneConfig> {
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
                    DEFAULT_MAX_ZONE_BYTES
                }),
                None => DEFAULT_MAX_ZONE_BYTES,
            };
            zones.push(ZoneConfig { origin, file: self.path(&zone.file), at, max_bytes });
        }
        zones
    }

    /// A domain name, made fully qualified and lower-case.
    fn name(&mut self, value: &S<String>, key: &str) -> Option<Name> {
        match Name::from_ascii(value.get_ref()) {
            Ok(name) if !value.get_ref().is_empty() => {
                let mut name = name.to_lowercase();
                name.set_fqdn(true);
                Some(name)
            }
            _ => {
                self.err(value, key, "must be a domain name, e.g. \"lb.example.com.\"");
                None
            }
        }
    }

    fn geo(&mut self, raw: RawGeo, regions: &BTreeMap<String, Region>, services: &[Service]) -> GeoConfig {
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

    fn errors_file(&self) -> PathBuf {
        self.errors.file().to_path_buf()
    }

    fn regions(&mut self, raw: Vec<(S<String>, Option<RawRegion>)>) -> BTreeMap<String, Region> {
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

    fn network(&mut self, value: &S<String>, key: &str) -> Option<IpNet> {
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
    fn places(
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

    fn coordinates(&mut self, value: &S<Vec<f64>>, key: &str) -> Option<(f64, f64)> {
        match value.get_ref().as_slice() {
            &[lat, lon] if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => Some((lat, lon)),
            _ => {
                self.err(value, key, "must be [latitude, longitude] in degrees: -90 to 90 and -180 to 180");
                None
            }
        }
    }

    fn checks(&mut self, raw: Vec<(S<String>, Option<RawCheck>)>) -> BTreeMap<String, Check> {
        let mut out = BTreeMap::new();
        for (name, check) in raw {
            let Some(check) = check else { continue };
            let key = format!("checks.{}", name.get_ref());
            if let Some(c) = self.check(check, &key) {
                out.insert(name.into_inner(), c);
            }
        }
        out
    }

    fn check(&mut self, raw: RawCheck, key: &str) -> Option<Check> {
        let kind = match raw.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("http") => CheckKind::Http,
            Some("https") => CheckKind::Https,
            Some("tcp") => CheckKind::Tcp,
            Some("none") => CheckKind::None,
            Some(_) => {
                self.err(
                    raw.kind.as_ref().unwrap(),
                    &format!("{key}.kind"),
                    "must be \"http\", \"https\", \"tcp\" or \"none\"",
                );
                return None;
            }
        };
        let port = match (&raw.port, kind) {
            (Some(p), _) => self.int(p, &format!("{key}.port"), 1, 65535) as u16,
            (None, CheckKind::Https) => 443,
            (None, CheckKind::Tcp) => {
                let span = raw.kind.as_ref().map(S::span).unwrap_or(0..0);
                self.errors.at(span, format!("{key}.port"), "is required for kind = \"tcp\"");
                0
            }
            (None, _) => 80,
        };
        let path = raw.path.as_ref().map_or("/".to_string(), |p| p.get_ref().clone());
        if !path.starts_with('/') || path.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
            self.err(raw.path.as_ref().unwrap(), &format!("{key}.path"), "must start with / and hold no spaces");
        }
        let tls_verify = raw.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
        if let Some(v) = &raw.tls_verify
            && kind != CheckKind::Https
        {
            self.err(v, &format!("{key}.tls_verify"), "is only for kind = \"https\"");
        }
        if kind == CheckKind::Https && tls_verify && raw.host.is_none() {
            let span = raw.kind.as_ref().map(S::span).unwrap_or(0..0);
            self.errors.at(
                span,
                format!("{key}.host"),
                "is required for kind = \"https\" with tls_verify (the certificate is checked against it)",
            );
        }
        if let Some(h) = &raw.host
            && (h.get_ref().is_empty() || h.get_ref().chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()))
        {
            self.err(h, &format!("{key}.host"), "must be a host name without spaces");
        }
        let expect_status = match &raw.expect_status {
            Some(list) if list.get_ref().is_empty() => {
                self.err(list, &format!("{key}.expect_status"), "must list at least one status code");
                vec![]
            }
            Some(list) => {
                list.get_ref().iter().map(|s| self.int(s, &format!("{key}.expect_status"), 100, 599) as u16).collect()
            }
            None => vec![200],
        };
        let interval = self.duration(raw.interval.as_ref(), &format!("{key}.interval"), Duration::from_secs(5));
        let timeout = self.duration(raw.timeout.as_ref(), &format!("{key}.timeout"), Duration::from_secs(2));
        if timeout >= interval {
            let span = raw.timeout.as_ref().or(raw.interval.as_ref()).map(S::span).unwrap_or(0..0);
            self.errors.at(
                span,
                format!("{key}.timeout"),
                format!("must be less than interval ({timeout:?} is not below {interval:?})"),
            );
        }
        let rise = raw.rise.as_ref().map_or(2, |r| self.int(r, &format!("{key}.rise"), 1, 100) as u32);
        let fall = raw.fall.as_ref().map_or(3, |f| self.int(f, &format!("{key}.fall"), 1, 100) as u32);
        Some(Check {
            kind,
            port,
            path,
            host: raw.host.map(S::into_inner),
            expect_status,
            expect_body: raw.expect_body.map(S::into_inner),
            tls_verify,
            interval,
            timeout,
            rise,
            fall,
        })
    }

    fn services(
        &mut self,
        raw: Vec<(RawService, String)>,
        regions: &BTreeMap<String, Region>,
        checks: &[String],
    ) -> Vec<Service> {
        let mut out: Vec<Service> = Vec::new();
        for (service, key) in raw {
            let Some(s) = self.service(service, &key, regions, checks) else { continue };
            if out.iter().any(|o| o.name == s.name) {
                let (line, column) = s.at;
                self.errors.list.push(ConfigError {
                    file: self.errors_file(),
                    line,
                    column,
                    key: format!("{key}.name"),
                    message: format!("service {} is configured twice", s.name),
                });
                continue;
            }
            out.push(s);
        }
        out
    }

    fn service(
        &mut self,
        raw: RawService,
        key: &str,
        regions: &BTreeMap<String, Region>,
        checks: &[String],
    ) -> Option<Service> {
        let name = self.name(&raw.name, &format!("{key}.name"));
        let policy = match raw.policy.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("all") => Policy::All,
            Some("healthy") => Policy::Healthy,
            Some("failover") => Policy::Failover,
            Some("gslb") => Policy::Gslb,
            Some(_) => {
                self.err(
                    raw.policy.as_ref().unwrap(),
                    &format!("{key}.policy"),
                    "must be \"all\", \"healthy\", \"failover\" or \"gslb\"",
                );
                Policy::All
            }
        };
        let order = match raw.order.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("round-robin") => Order::RoundRobin,
            Some("weighted") => Order::Weighted,
            Some("sticky") => Order::Sticky,
            Some(_) => {
                self.err(
                    raw.order.as_ref().unwrap(),
                    &format!("{key}.order"),
                    "must be \"round-robin\", \"weighted\" or \"sticky\"",
                );
                Order::RoundRobin
            }
        };
        match &raw.check {
            Some(c) if !checks.contains(c.get_ref()) => {
                self.err(c, &format!("{key}.check"), format!("names no check; known: {}", names(checks.iter())));
            }
            Some(_) => {}
            None if policy != Policy::All => {
                self.err(&raw.name, &format!("{key}.check"), "is required for every policy but \"all\"");
            }
            None => {}
        }
        let ttl = raw.ttl.as_ref().map_or(30, |t| self.int(t, &format!("{key}.ttl"), 0, 86400) as u32);
        let default_answers = if order == Order::RoundRobin { 8 } else { 1 };
        let max_answers = raw
            .max_answers
            .as_ref()
            .map_or(default_answers, |m| self.int(m, &format!("{key}.max_answers"), 1, 64) as usize);
        let when_all_down = match raw.when_all_down.as_ref().map(|w| w.get_ref().as_str()) {
            None | Some("all") => WhenAllDown::All,
            Some("none") => WhenAllDown::None,
            Some(_) => {
                self.err(
                    raw.when_all_down.as_ref().unwrap(),
                    &format!("{key}.when_all_down"),
                    "must be \"all\" or \"none\"",
                );
                WhenAllDown::All
            }
        };
        let max_registrations = raw
            .max_registrations
            .as_ref()
            .map_or(1000, |m| self.int(m, &format!("{key}.max_registrations"), 0, 100_000) as u32);
        let targets = self.targets(&raw.targets, key, policy, regions);
        let at = self.location(raw.name.span());
        Some(Service {
            name: name?,
            policy,
            order,
            check: raw.check.map(S::into_inner),
            ttl,
            max_answers,
            when_all_down,
            max_registrations,
            targets,
            at,
        })
    }

    fn targets(
        &mut self,
        raw: &[S<RawTarget>],
        key: &str,
        policy: Policy,
        regions: &BTreeMap<String, Region>,
    ) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for (i, item) in raw.iter().enumerate() {
            let key = format!("{key}.targets[{i}]");
            let target = match item.get_ref() {
                RawTarget::Address(a) => {
                    let a = S::new(item.span(), a.clone());
                    self.target(&key, &a, None, policy, &item.span(), regions)
                }
                RawTarget::Table(t) => self.target(&key, &t.address, Some(t), policy, &item.span(), regions),
            };
            let Some(target) = target else { continue };
            if out.iter().any(|o| o.address == target.address) {
                self.err(item, &key, format!("{} is listed twice in this service", target.address));
                continue;
            }
            out.push(target);
        }
        out
    }

    fn target(
        &mut self,
        key: &str,
        address: &S<String>,
        table: Option<&RawTargetTable>,
        policy: Policy,
        span: &Range<usize>,
        regions: &BTreeMap<String, Region>,
    ) -> Option<Target> {
        let addr = self.unicast(address, &format!("{key}.address"));
        let mut target = Target { address: addr?, weight: 1, region: None, priority: 1, check_address: None };
        if let Some(t) = table {
            if let Some(w) = &t.weight {
                target.weight = self.int(w, &format!("{key}.weight"), 0, 1000) as u32;
            }
            if let Some(p) = &t.priority {
                target.priority = self.int(p, &format!("{key}.priority"), 1, 255) as u8;
            }
            if let Some(r) = &t.region {
                if regions.contains_key(r.get_ref()) {
                    target.region = Some(r.get_ref().clone());
                } else {
                    self.err(r, &format!("{key}.region"), format!("names no region; known: {}", names(regions.keys())));
                }
            }
            if let Some(c) = &t.check_address {
                target.check_address = self.unicast(c, &format!("{key}.check_address"));
            }
        }
        if policy == Policy::Gslb && table.and_then(|t| t.region.as_ref()).is_none() {
            self.errors.at(
                span.clone(),
                format!("{key}.region"),
                "is required: every target of a gslb service needs a region",
            );
        }
        Some(target)
    }

    /// A unicast address: not unspecified, multicast, broadcast or IPv4-mapped IPv6.
    fn unicast(&mut self, value: &S<String>, key: &str) -> Option<IpAddr> {
        let Ok(addr) = value.get_ref().parse::<IpAddr>() else {
            self.err(value, key, "must be an IPv4 or IPv6 address");
            return None;
        };
        if !is_unicast(&addr) {
            self.err(value, key, format!("{addr} is not a unicast address (unspecified, multicast, broadcast and IPv4-mapped IPv6 are not allowed)"));
            return None;
        }
        Some(addr)
    }

    fn int(&mut self, value: &S<i64>, key: &str, min: i64, max: i64) -> i64 {
        let v = *value.get_ref();
        if (min..=max).contains(&v) {
            v
        } else {
            self.err(value, key, format!("must be {min} to {max}, not {v}"));
            min
        }
    }

    fn duration(&mut self, value: Option<&S<String>>, key: &str, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                self.err(value, key, "must be a positive duration with a unit, e.g. \"250ms\", \"1s\", \"2m\"");
                default
            }
        }
    }
}

/// A zone file with its $INCLUDEs may not be larger, unless its zone says otherwise.
const DEFAULT_MAX_ZONE_BYTES: u64 = 1 << 30;

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

fn names<'n>(keys: impl Iterator<Item = &'n String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() { "(none)".into() } else { list.join(", ") }
}

/// The machine's host name, the default `identity`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .unwrap_or_else(|| "steerdns".to_string())
}
