//! Reading zone files and checking them, and the services, against SPEC §2.

use super::index::Builder;
use super::{Zone, Zones, text};
use crate::config::{Config, ConfigError, ConfigErrors, ZoneConfig};
use crate::dnssec::{self, ZoneKeys};
use hickory_proto::rr::{Name, RecordType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A problem in a zone file, or between a zone and a service.
pub type ZoneError = ConfigError;

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
        let keys = match read_keys(config, zone) {
            Ok(keys) => keys,
            Err(mut e) => {
                errors.append(&mut e);
                failed.push(&zone.origin);
                continue;
            }
        };
        let read = check_files(&zone.file, config_dir, zone.max_bytes)
            .and_then(|()| read_zone(&zone.origin, &zone.file, keys));
        match read {
            Ok(index) => parsed.push(index),
            Err(mut e) => {
                errors.append(&mut e);
                failed.push(&zone.origin);
            }
        }
    }
    // index once, without services, to check each service against its zone's data;
    // the services' names are added to their zones after
    let mut zones = Zones::new(parsed);
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
    for template in config.templates.iter().filter(|t| !failed.iter().any(|o| o.zone_of(&t.parent))) {
        let problem = match zones.find(&template.parent) {
            None => Some("lies in no configured zone (add a [[zones]] that holds it)".to_string()),
            Some(zone) => zone
                .cut_above(&template.parent)
                .map(|cut| format!("lies at or below the delegation {cut} in zone {}", zone.origin())),
        };
        if let Some(message) = problem {
            errors.push(ConfigError {
                file: config.file.clone(),
                line: template.service.at.0,
                column: template.service.at.1,
                key: format!("template {}", template.pattern),
                message,
            });
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    // a template's parent always exists, so that services coming and going below it
    // never flip it, or its neighbours, between NXDOMAIN and NODATA (SPEC §9)
    for template in &config.templates {
        if let Some(zone) = zones.find_mut(&template.parent) {
            zone.add_names(std::slice::from_ref(&template.parent));
        }
    }
    for service in &config.services {
        if let Some(zone) = zones.find_mut(&service.name) {
            zone.add_names(std::slice::from_ref(&service.name));
        }
    }
    Ok(zones)
}

/// Whether `name` may be a service of `zones` (SPEC §2): in a zone, not at or below a
/// cut, with no A, AAAA, CNAME, NS or DNAME of the zone's own; why not.
pub fn check_service(zones: &Zones, name: &Name) -> Result<(), String> {
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
            if depth >= text::MAX_INCLUDE_DEPTH {
                let message = format!("$INCLUDEs nest deeper than {}", text::MAX_INCLUDE_DEPTH);
                return Err(error(&path, i + 1, message));
            }
            let Some(name) = words.next() else { continue };
            let included = path.parent().unwrap_or(Path::new(".")).join(name.trim_matches('"'));
            pending.push((included, Some((path.clone(), i + 1)), depth + 1));
        }
    }
    Ok(())
}

/// The keys of a zone with `dnssec_keys`, or an error naming each key that cannot be
/// used.
fn read_keys(config: &Config, zone: &ZoneConfig) -> Result<Option<Arc<ZoneKeys>>, Vec<ZoneError>> {
    if zone.dnssec_keys.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for file in &zone.dnssec_keys {
        match dnssec::read_key(&file.path, &zone.origin) {
            Ok(key) => keys.push(key),
            Err(message) => errors.push(ConfigError {
                file: config.file.clone(),
                line: file.at.0,
                column: file.at.1,
                key: file.key.clone(),
                message,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(Arc::new(ZoneKeys::new(zone.origin.clone(), keys, zone.dnssec_cds_keys.clone()))))
}

fn read_zone(origin: &Name, path: &Path, keys: Option<Arc<ZoneKeys>>) -> Result<Zone, Vec<ZoneError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ZoneError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: origin.to_string(),
            message: format!("cannot read the zone file: {e}"),
        }]
    })?;
    parse_signed_zone(origin, path, &text, keys)
}

/// Reads and checks zone text (what `path` holds, for errors and $INCLUDEs, which
/// the caller has checked) into its index.
pub fn parse_zone(origin: &Name, path: &Path, text: &str) -> Result<Zone, Vec<ZoneError>> {
    parse_signed_zone(origin, path, text, None)
}

/// [`parse_zone`], the zone signed with `keys` when there are any (SPEC §8).
pub fn parse_signed_zone(
    origin: &Name,
    path: &Path,
    text: &str,
    keys: Option<Arc<ZoneKeys>>,
) -> Result<Zone, Vec<ZoneError>> {
    let mut builder = Builder::new(origin.clone());
    let errors = text::read(origin, path, text, &mut |entry| builder.add(entry));
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(keys) = keys {
        builder.sign_with(keys);
    }
    builder.finish(path)
}
