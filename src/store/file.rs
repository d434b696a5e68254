//! The `file` store on disk: a snapshot (`PATH`, one JSON document written to a fresh
//! temporary file, fsynced, renamed, and the directory fsynced) and a journal
//! (`PATH.journal`, one JSON line per changed key, appended and fsynced once per burst
//! of writes). When the journal outgrows the snapshot, the snapshot is written anew
//! and the journal emptied, so the bytes written grow linearly with the changes made
//! instead of with the changes times the state's size.

use super::{StoreError, Stored};
use crate::api::{StoredRegistration, StoredState};
use crate::config::service_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The journal is compacted once it is larger than the snapshot and this.
const MIN_COMPACTION: u64 = 1 << 20;

/// One journal line: a key's new value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entry {
    /// An admin state (`auto`: deleted).
    State(StoredState),
    Registration(StoredRegistration),
    /// A registration that ended.
    Deregistered {
        service: String,
        address: IpAddr,
    },
}

/// The snapshot and its journal.
#[derive(Debug)]
pub struct Files {
    path: PathBuf,
    journal: Option<File>,
    journal_len: u64,
    snapshot_len: u64,
}

impl Files {
    fn journal_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".journal");
        path.with_file_name(name)
    }

    /// Reads the snapshot and replays the journal over it; a missing file is an
    /// empty store, and its directory is made. A last journal line cut short (a crash
    /// while appending) is dropped; any other line that does not parse is corruption.
    pub fn read(path: &Path) -> Result<(Stored, Files), StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut stored: Stored = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored { version: 1, ..Stored::default() },
            Err(e) => return Err(io(e)),
        };
        let snapshot_len = std::fs::metadata(path).map_or(0, |m| m.len());
        let journal = Self::journal_path(path);
        let text = match std::fs::read_to_string(&journal) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(StoreError::Io { path: journal, source }),
        };
        replay(&mut stored, &text)
            .map_err(|reason| StoreError::Corrupt { path: journal.clone(), reason: reason.to_string() })?;
        let files = Files { path: path.to_path_buf(), journal: None, journal_len: text.len() as u64, snapshot_len };
        Ok((stored, files))
    }

    /// Appends `entries` and fsyncs them; on failure the journal is cut back to what
    /// it held, so a half-written line never stays. True when it is time to compact.
    pub fn append(&mut self, entries: &[Entry]) -> std::io::Result<bool> {
        let mut bytes = Vec::new();
        for entry in entries {
            serde_json::to_writer(&mut bytes, entry).expect("plain data serializes");
            bytes.push(b'\n');
        }
        let path = Self::journal_path(&self.path);
        let file = match &mut self.journal {
            Some(file) => file,
            None => self.journal.insert(OpenOptions::new().create(true).append(true).open(&path)?),
        };
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = file.set_len(self.journal_len);
            self.journal = None;
            return Err(e);
        }
        self.journal_len += bytes.len() as u64;
        Ok(self.journal_len > self.snapshot_len.max(MIN_COMPACTION))
    }

    /// Writes `stored` as the new snapshot, then empties the journal.
    pub fn compact(&mut self, stored: &Stored) -> std::io::Result<()> {
        self.snapshot_len = write(&self.path, stored)?;
        let path = Self::journal_path(&self.path);
        let journal = OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
        journal.sync_all()?;
        self.journal = None;
        self.journal_len = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Applies the journal's lines to `stored`.
fn replay(stored: &mut Stored, text: &str) -> Result<(), String> {
    let key = |service: &str, address: IpAddr| (service_name(service).map(|n| n.to_string()), address);
    let mut states: BTreeMap<_, StoredState> =
        stored.admin_states.drain(..).map(|s| (key(&s.service, s.address), s)).collect();
    let mut registrations: BTreeMap<_, StoredRegistration> =
        stored.registrations.drain(..).map(|r| (key(&r.service, r.address), r)).collect();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let entry = match serde_json::from_str::<Entry>(line.trim_end()) {
            Ok(entry) => entry,
            // a crash while appending leaves the last line without its newline
            Err(_) if i + 1 == lines.len() && !line.ends_with('\n') => {
                tracing::warn!("store: dropping the journal's last line, cut short: {line:?}");
                break;
            }
            Err(e) => return Err(format!("journal line {}: {e}", i + 1)),
        };
        match entry {
            Entry::State(s) => drop(states.insert(key(&s.service, s.address), s)),
            Entry::Registration(r) => drop(registrations.insert(key(&r.service, r.address), r)),
            Entry::Deregistered { service, address } => drop(registrations.remove(&key(&service, address))),
        }
    }
    stored.admin_states = states.into_values().collect();
    stored.registrations = registrations.into_values().collect();
    Ok(())
}

/// Writes `stored` to a fresh temporary file beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory; the bytes written.
pub(super) fn write<T: Serialize>(path: &Path, stored: &T) -> std::io::Result<u64> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map_or("state".into(), |n| n.to_string_lossy());
    write_via(path, &path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id())), stored)
}

/// [`write`] through `temporary`, which is created anew (never through a link planted
/// there) and removed when any step fails.
fn write_via<T: Serialize>(path: &Path, temporary: &Path, stored: &T) -> std::io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        OpenOptions::new().write(true).create_new(true).custom_flags(nix::libc::O_NOFOLLOW).open(temporary)?;
    let bytes = serde_json::to_vec_pretty(stored).expect("plain data serializes");
    let written = file.write_all(&bytes).and_then(|()| file.sync_all()).and_then(|()| std::fs::rename(temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(temporary);
    }
    written?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all())?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AdminState;

    fn state(address: &str, state: AdminState) -> Entry {
        Entry::State(StoredState { service: "www.lb.example.".into(), address: address.parse().unwrap(), state })
    }

    #[test]
    fn the_journal_replays_over_the_snapshot_and_compaction_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/s.json");
        let (stored, mut files) = Files::read(&path).unwrap();
        assert!(stored.admin_states.is_empty());
        files.append(&[state("127.0.0.1", AdminState::Drain), state("127.0.0.2", AdminState::Down)]).unwrap();
        files.append(&[state("127.0.0.2", AdminState::Up)]).unwrap();
        let (stored, mut files) = Files::read(&path).unwrap();
        let states: Vec<_> = stored.admin_states.iter().map(|s| (s.address.to_string(), s.state)).collect();
        assert_eq!(states, [("127.0.0.1".into(), AdminState::Drain), ("127.0.0.2".into(), AdminState::Up)]);
        files.compact(&stored).unwrap();
        assert_eq!(std::fs::metadata(Files::journal_path(&path)).unwrap().len(), 0);
        assert_eq!(Files::read(&path).unwrap().0, stored);
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "the snapshot and the journal, no temporary file: {names:?}");
    }

    #[test]
    fn a_last_line_cut_short_is_dropped_and_any_other_bad_line_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let journal = Files::journal_path(&path);
        let good = serde_json::to_string(&state("127.0.0.1", AdminState::Drain)).unwrap();
        std::fs::write(&journal, format!("{good}\n{{\"state\": {{\"serv")).unwrap();
        assert_eq!(Files::read(&path).unwrap().0.admin_states.len(), 1);
        std::fs::write(&journal, format!("{{\"bogus\": 1}}\n{good}\n")).unwrap();
        let e = Files::read(&path).unwrap_err().to_string();
        assert!(e.contains("s.json.journal") && e.contains("journal line 1") && e.contains("move it aside"), "{e}");
    }

    #[test]
    fn the_journal_asks_for_compaction_once_it_outgrows_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut files) = Files::read(&dir.path().join("s.json")).unwrap();
        let entry = state("127.0.0.1", AdminState::Drain);
        let line = serde_json::to_string(&entry).unwrap().len() as u64 + 1;
        let lines = MIN_COMPACTION / line;
        let entries = vec![entry; lines as usize];
        assert!(!files.append(&entries).unwrap());
        assert!(files.append(&entries[..2]).unwrap());
    }

    #[test]
    fn a_planted_link_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, temporary) = (dir.path().join("s.json"), dir.path().join(".s.json.tmp"));
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, &temporary).unwrap();
        let e = write_via(&path, &temporary, &Stored::default()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!path.exists());
        std::fs::remove_file(&temporary).unwrap();
        write_via(&path, &temporary, &Stored::default()).unwrap();
        assert!(path.exists() && !temporary.exists());
    }

    #[test]
    fn a_corrupt_file_is_never_overwritten_and_says_how_to_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = Files::read(&path).unwrap_err().to_string();
        assert!(e.contains("s.json") && e.contains("move it aside"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    }
}
