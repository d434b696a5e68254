//! Reading zone files and checking them, and the services, against SPEC §2.

use super::{Zone, Zones};
use crate::config::{Config, ConfigError, ConfigErrors};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use std::path::{Path, PathBuf};

/// A problem in a zone file, or between a zone and a service.
pub type ZoneError = ConfigError;

const DNSSEC_TYPES: [RecordType; 5] =
    [RecordType::DNSKEY, RecordType::RRSIG, RecordType::NSEC, RecordType::NSEC3, RecordType::NSEC3PARAM];

/// Types that would clash with a computed answer at a service name.
const SERVICE_CLASHES: [RecordType; 5] =
    [RecordType::A, RecordType::AAAA, RecordType::CNAME, RecordType::NS, RecordType::DNAME];

/// Reads every zone of `config` and checks the services against them.
pub fn load_zones(config: &Config) -> Result<Zones, ConfigErrors> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    let mut failed = Vec::new();
    // a bare file name's directory is the working directory ("" would resolve nowhere)
    let config_dir = config.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for zone in &config.zones {
        let read =
            check_files(&zone.file, config_dir, zone.max_bytes).and_then(|()| read_zone(&zone.origin, &zone.file));
        match read {
            Ok(records) => parsed.push((zone.origin.clone(), records)),
            Err(mut e) => {
                errors.append(&mut e);
                failed.push(&zone.origin);
            }
        }
    }
    // index once, without services, to check each service against its zone's data;
    // the services' names are added to their zones after
    let mut zones = Zones::new(parsed.into_iter().map(|(origin, records)| Zone::new(origin, records, &[])).collect());
    // services of a zone that did not load are not checked: its own error says why
    for service in config.services.iter().filter(|s| !failed.iter().any(|o| o.zone_of(&s.name))) {
        if let Err(message) = check_service(&zones, &service.name) {
            errors.push(ConfigError {
                file: config.file.clone(),
                line: service.at.0,
                column: service.at.1,
                key: format!("service {}", service.name),
                message,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    for service in &config.services {
        if let Some(zone) = zones.find_mut(&service.name) {
            zone.add_names(std::slice::from_ref(&service.name));
        }
    }
    zones.precompile();
    Ok(zones)
}

fn check_service(zones: &Zones, name: &Name) -> Result<(), String> {
    let zone = zones.find(name).ok_or("lies in no configured zone (add a [[zones]] that holds it)")?;
    if let Some(cut) = zone.cut_above(name) {
        return Err(format!("lies at or below the delegation {cut} in zone {}", zone.origin()));
    }
    for rtype in SERVICE_CLASHES {
        if zone.rrset(name, rtype).is_some() {
            return Err(format!(
                "zone {} has {rtype} records at this name; remove them (steerdns computes this name's answers)",
                zone.origin()
            ));
        }
    }
    Ok(())
}

/// Checks a zone file and every file it $INCLUDEs, before the parser reads them: each
/// a regular file, the included ones under the config's directory, all of them
/// together at most `limit` bytes (so a reload can never read /dev/zero).
fn check_files(file: &Path, config_dir: &Path, limit: u64) -> Result<(), Vec<ZoneError>> {
    let error = |at: &Path, line: usize, message: String| {
        vec![ZoneError { file: at.to_path_buf(), line, column: 0, key: "$INCLUDE".into(), message }]
    };
    let root = config_dir.canonicalize().map_err(|e| error(config_dir, 0, format!("cannot resolve: {e}")))?;
    let mut total = 0u64;
    let mut pending = vec![(file.to_path_buf(), None::<(PathBuf, usize)>, 0)];
    while let Some((path, from, depth)) = pending.pop() {
        let (at, line) = from.clone().unwrap_or_else(|| (path.clone(), 0));
        let meta = std::fs::metadata(&path).map_err(|e| error(&at, line, format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(error(&at, line, format!("{} is not a regular file", path.display())));
        }
        if from.is_some() && !path.canonicalize().is_ok_and(|p| p.starts_with(&root)) {
            let message = format!("{} lies outside the config's directory {}", path.display(), root.display());
            return Err(error(&at, line, message));
        }
        total += meta.len();
        if total > limit {
            let message = format!("the zone with its $INCLUDEs is over max_zone_bytes ({limit} bytes)");
            return Err(error(&at, line, message));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| error(&path, 0, format!("cannot read: {e}")))?;
        for (i, l) in text.lines().enumerate() {
            let mut words = l.split_whitespace();
            if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("$INCLUDE")) {
                continue;
            }
            if depth >= 8 {
                return Err(error(&path, i + 1, "$INCLUDEs nest deeper than 8".into()));
            }
            let Some(name) = words.next() else { continue };
            let included = path.parent().unwrap_or(Path::new(".")).join(name.trim_matches('"'));
            pending.push((included, Some((path.clone(), i + 1)), depth + 1));
        }
    }
    Ok(())
}

/// An error of the zone file at `path`, about `owner` (its line found later, if ever).
fn zone_error(path: &Path, owner: &str, message: String) -> ZoneError {
    ZoneError { file: path.to_path_buf(), line: 0, column: 0, key: owner.to_string(), message }
}

fn read_zone(origin: &Name, path: &Path) -> Result<Vec<Record>, Vec<ZoneError>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![zone_error(path, &origin.to_string(), format!("cannot read the zone file: {e}"))])?;
    parse_zone(origin, path, &text)
}

/// Parses and checks zone text (what `path` holds, for errors and $INCLUDEs, which
/// the caller has checked).
pub fn parse_zone(origin: &Name, path: &Path, text: &str) -> Result<Vec<Record>, Vec<ZoneError>> {
    let error = |owner: &str, message: String| zone_error(path, owner, message);
    let (_, sets) = Parser::new(text, Some(path.to_path_buf()), Some(origin.clone())).parse().map_err(|e| {
        let mut e = error(&origin.to_string(), format!("cannot parse the zone file: {e}"));
        e.line = failing_line(text, origin, path, &e.message);
        vec![e]
    })?;
    // taken, not cloned: one copy of the zone at a time; in the parser's order, by
    // owner name and then type
    let records: Vec<Record> = sets.into_values().flat_map(|s| s.into_parts().records).collect();
    let mut errors = Vec::new();
    let mut at = |record: &Record, message: String| {
        let mut e = error(&record.name.to_string(), message);
        e.line = owner_line(text, &record.name, origin);
        errors.push(e);
    };
    for record in &records {
        if !origin.zone_of(&record.name) {
            at(record, format!("lies outside the zone {origin}"));
        } else if DNSSEC_TYPES.contains(&record.record_type()) {
            at(record, format!("{} records are not served: steerdns serves unsigned zones", record.record_type()));
        }
    }
    // per owner name (its records lie side by side): how many CNAMEs, and whether
    // anything else; one pass, so a zone of many CNAMEs loads in linear time
    for owner in records.chunk_by(|a, b| a.name == b.name) {
        let cnames = owner.iter().filter(|r| r.record_type() == RecordType::CNAME).count();
        let Some(cname) = owner.iter().find(|r| r.record_type() == RecordType::CNAME) else { continue };
        if cnames < owner.len() {
            at(cname, "a CNAME cannot share its owner name with other records".into());
        }
        if cnames > 1 {
            at(cname, "a name can own only one CNAME".into());
        }
    }
    for rtype in [RecordType::SOA, RecordType::NS] {
        if !records.iter().any(|r| r.name == *origin && r.record_type() == rtype) {
            errors.push(error(&origin.to_string(), format!("the zone needs an {rtype} record at its apex")));
        }
    }
    errors.dedup();
    if errors.is_empty() { Ok(records) } else { Err(errors) }
}

/// The hickory parser reports no line for a record; find the first line whose owner
/// field names it, absolute or relative to the origin (0 when not found).
fn owner_line(text: &str, owner: &Name, origin: &Name) -> usize {
    let full = owner.to_string().to_ascii_lowercase();
    let suffix = format!(".{}", origin.to_string().to_ascii_lowercase());
    let relative = if owner == origin { "@" } else { full.strip_suffix(&suffix).unwrap_or(&full) };
    text.lines()
        .position(|l| {
            let word = l.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
            !l.starts_with(char::is_whitespace) && (word == full || word == relative)
        })
        .map_or(0, |i| i + 1)
}

/// The hickory parser reports no line for syntax errors: find the fewest leading lines
/// that fail with the same message (binary search; only run on failure).
fn failing_line(text: &str, origin: &Name, path: &Path, message: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let fails = |n: usize| {
        let prefix = lines[..n].join("\n");
        Parser::new(prefix.as_str(), Some(path.to_path_buf()), Some(origin.clone()))
            .parse()
            .is_err_and(|e| format!("cannot parse the zone file: {e}") == message)
    };
    let (mut low, mut high) = (1, lines.len());
    if !fails(high) {
        return 0;
    }
    while low < high {
        let mid = (low + high) / 2;
        if fails(mid) { high = mid } else { low = mid + 1 }
    }
    high
}
