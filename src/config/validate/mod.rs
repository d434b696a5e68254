//! Raw structs → [`Config`], collecting every error with its location: the core here
//! (splitting the file into sections, locations, the value checks they share), each
//! section in a file of its own (`server`: [server] and [store]; `places`: zones,
//! regions and geo; `services`: checks and services).

mod places;
mod server;
mod services;

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
    in_parts(text, file).unwrap_or_else(|| whole(text, file))
}

/// A large file read in parts (see [`Validator::in_parts`]); None when it is small or
/// does not split.
pub(super) fn in_parts(text: &str, file: &Path) -> Option<Result<Config, ConfigErrors>> {
    let mut v = Validator::new(text, file);
    let config = v.in_parts(text, file)?;
    Some(v.errors.into_result().map(|()| config))
}

/// The file parsed whole.
pub(super) fn whole(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let mut v = Validator::new(text, file);
    let root = DeTable::parse(text).map_err(|e| syntax_error(text, file, &e))?;
    let raw = v.split(root.get_ref());
    let config = v.config(raw, file, &[]).expect("no parts to read");
    v.errors.into_result()?;
    Ok(config)
}

/// Files larger than this are parsed in parts (see [`Validator::in_parts`]).
const PART_BYTES: usize = 1 << 20;

/// The byte ranges of a file's `[[services]]` tables (a header line that is exactly
/// that, at the start of a line, to the next header line), in batches of about
/// `PART_BYTES`.
fn service_batches(text: &str) -> Vec<Range<usize>> {
    let mut starts: Vec<(usize, bool)> = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with('[') {
            starts.push((at, line.trim_end() == "[[services]]"));
        }
        at += line.len();
    }
    let mut batches: Vec<Range<usize>> = Vec::new();
    for (i, &(start, is_service)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |s| s.0);
        match batches.last_mut() {
            _ if !is_service => {}
            Some(batch) if batch.end == start && batch.len() < PART_BYTES => batch.end = end,
            _ => batches.push(start..end),
        }
    }
    batches
}

/// `text` at its own offsets with the bytes of `ranges` (whole lines) blanked: one run
/// of spaces each, which the parser takes as one token, where keeping their line
/// breaks would cost a token per line.
fn blanked(text: &str, ranges: &[Range<usize>]) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    for range in ranges {
        bytes[range.clone()].fill(b' ');
    }
    String::from_utf8(bytes).ok()
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
    log: RawLog,
    store: RawStore,
    zones: Vec<(RawZone, String)>,
    geo: RawGeo,
    regions: Vec<(S<String>, Option<RawRegion>)>,
    checks: Vec<(S<String>, Option<RawCheck>)>,
    services: Vec<(RawService, String)>,
    templates: Vec<(RawTemplate, String)>,
    health: RawHealth,
}

struct Validator<'a> {
    errors: Errors<'a>,
    base: PathBuf,
    text: &'a str,
    /// Where each line of `text` starts, for locations in time logarithmic in the
    /// file's length (a config of 100,000 services asks for 100,000 of them).
    line_starts: Vec<usize>,
    /// Sections that failed to deserialize: rules that depend on them are skipped, so
    /// one mistake is reported once.
    failed: Vec<String>,
    /// Warnings found while reading ([`Config::notes`]).
    notes: Vec<String>,
}

type Value<'i> = toml::Spanned<DeValue<'i>>;

impl<'a> Validator<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        Validator {
            errors: Errors::new(file, text),
            base: file.parent().map(Path::to_path_buf).unwrap_or_default(),
            text,
            line_starts: std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect(),
            failed: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn split(&mut self, root: &DeTable<'_>) -> RawConfig {
        let mut raw = RawConfig::default();
        for (key, value) in root {
            match key.get_ref().as_ref() {
                "server" => raw.server = self.section("server", value).unwrap_or_default(),
                "log" => raw.log = self.section("log", value).unwrap_or_default(),
                "store" => raw.store = self.section("store", value).unwrap_or_default(),
                "geo" => raw.geo = self.section("geo", value).unwrap_or_default(),
                "zones" => raw.zones = self.array("zones", value),
                "services" => raw.services = self.array("services", value),
                "templates" => raw.templates = self.array("templates", value),
                "health" => raw.health = self.section("health", value).unwrap_or_default(),
                "regions" => raw.regions = self.named_tables("regions", value),
                "checks" => raw.checks = self.named_tables("checks", value),
                other => self.errors.at(
                    key.span(),
                    other,
                    "unknown key; allowed: server, log, store, zones, geo, regions, checks, services, templates, health",
                ),
            }
        }
        raw
    }

    /// A large file read in parts, each parsed on its own: its `[[services]]` tables in
    /// batches ([`service_batches`]) and everything else as one document, each batch
    /// validated before the next is parsed. The toml crate holds about 23 bytes per
    /// byte of text while it parses (its tokens, events and tables), and a raw service
    /// takes 720 bytes, so a file of 100,000 services read whole would take 350 MB for
    /// a moment, beside the running config during a reload. Each part is parsed at its
    /// own offsets (the rest of the text blanked), so spans and lines are the file's.
    /// None for a small file, or when the parts do not read as the file would whole (a
    /// part that does not parse, or one holding another key): the caller then starts
    /// again on the whole file, which reports any error as it is.
    fn in_parts(&mut self, text: &str, file: &Path) -> Option<Config> {
        if text.len() <= PART_BYTES {
            return None;
        }
        let batches = service_batches(text);
        let rest = blanked(text, &batches)?;
        let root = DeTable::parse(&rest).ok()?;
        if root.get_ref().contains_key("services") {
            return None;
        }
        let raw = self.split(root.get_ref());
        drop(root);
        drop(rest);
        self.config(raw, file, &batches)
    }

    /// The `[[services]]` tables of one batch of [`in_parts`], numbered from `first`
    /// on; None when the batch does not parse or holds another key.
    fn batch(&mut self, batch: &Range<usize>, first: usize) -> Option<(Vec<(RawService, String)>, usize)> {
        let part = blanked(self.text, &[0..batch.start, batch.end..self.text.len()])?;
        let root = DeTable::parse(&part).ok()?;
        let (Some(services), 1) = (root.get_ref().get("services"), root.get_ref().len()) else { return None };
        let count = services.get_ref().as_array().map_or(0, |a| a.len());
        Some((self.array_from("services", services, first), count))
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
        self.array_from(key, value, 0)
    }

    /// The same, the elements numbered from `first` on.
    fn array_from<T: DeserializeOwned>(&mut self, key: &str, value: &Value<'_>, first: usize) -> Vec<(T, String)> {
        let Some(items) = value.get_ref().as_array() else {
            self.errors.at(value.span(), key, "must be an array of tables ([[{key}]])");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{key}[{}]", first + i);
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
        let offset = span.start.min(self.text.len());
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let start = self.line_starts[line - 1];
        (line, self.text.get(start..offset).map_or(0, |t| t.chars().count()) + 1)
    }

    fn path(&self, value: &S<String>) -> PathBuf {
        self.base.join(value.get_ref())
    }

    /// The config of `raw` and of the services in `batches` of the text (see
    /// [`Validator::in_parts`]); None when a batch does not read.
    fn config(&mut self, raw: RawConfig, file: &Path, batches: &[Range<usize>]) -> Option<Config> {
        // etcd keys name the node (nodes/<identity>, verdicts/<identity>/…)
        if let Some(identity) = &raw.server.identity
            && identity.get_ref().contains('/')
            && raw.health.share.as_ref().is_some_and(|s| *s.get_ref())
        {
            self.err(identity, "server.identity", "must hold no '/' with [health] share");
        }
        let server = self.server(raw.server);
        let log = self.log(raw.log);
        let store = self.store(raw.store);
        let zones = self.zones(raw.zones);
        let regions = self.regions(raw.regions);
        let check_names: Vec<String> = raw.checks.iter().map(|(n, _)| n.get_ref().clone()).collect();
        let checks = self.checks(raw.checks);
        let mut services = Default::default();
        let mut numbered = raw.services.len();
        self.services_into(&mut services, raw.services, &regions, &check_names);
        for batch in batches {
            let (more, count) = self.batch(batch, numbered)?;
            numbered += count;
            self.services_into(&mut services, more, &regions, &check_names);
        }
        let services = services.0;
        let templates = self.templates(raw.templates, &regions, &check_names);
        let health = self.health(raw.health, &store);
        let mut checks = checks;
        checks.values_mut().for_each(|c| c.source = health.probe_source);
        let geo = self.geo(raw.geo, &regions, &services);
        let notes = std::mem::take(&mut self.notes);
        Some(Config {
            file: file.to_path_buf(),
            server,
            log,
            store,
            zones,
            geo,
            regions,
            checks,
            services,
            templates,
            health,
            notes,
        })
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

    /// A unicast address: not unspecified, multicast, broadcast or IPv4-mapped IPv6.
    /// One of `T`'s words, or its default when not given; an unknown word is an error
    /// that lists the words.
    fn word<T: Word>(&mut self, value: Option<&S<String>>, key: &str) -> Option<T> {
        let Some(value) = value else { return Some(T::WORDS[0].1) };
        if let Some((_, v)) = T::WORDS.iter().find(|(w, _)| *w == value.get_ref()) {
            return Some(*v);
        }
        let words: Vec<String> = T::WORDS.iter().map(|(w, _)| format!("{w:?}")).collect();
        let (last, rest) = words.split_last().expect("a word at least");
        let list = if rest.is_empty() { last.clone() } else { format!("{} or {last}", rest.join(", ")) };
        self.err(value, key, format!("must be {list}"));
        None
    }

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

fn names<'n>(keys: impl Iterator<Item = &'n String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() { "(none)".into() } else { list.join(", ") }
}
