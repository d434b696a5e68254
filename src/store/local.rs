//! The local store: admin states and leased registrations in memory, and, for the
//! `file` backend, in one JSON file rewritten whole after each burst of writes.
//!
//! [`Document`] is the pure part (time is an argument); the task around it batches
//! writes, saves, expires leases on its own clock, and stops expiring while the file
//! cannot be written, until it has been writable again for a lease's TTL.

use super::{Change, Event, Lease, Store, StoreError, Stored, WRITES_IN_FLIGHT, Write, WriteId};
use crate::api::{AdminState, RegistrationRequest, StoredRegistration, StoredState};
use crate::config::service_name;
use hickory_proto::rr::Name;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};

/// How often leases are checked and renewals written.
const TICK: Duration = Duration::from_millis(250);
/// How far past now a stored lease may end (the longest TTL, and a day of clock
/// skew); further is a corrupt file.
const LONGEST_LEASE: Duration = Duration::from_secs(2 * 86400);

type Key = (Name, IpAddr);

/// A registration held on a lease.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    request: RegistrationRequest,
    id: i64,
    expires: SystemTime,
}

/// What the local store holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    admin: BTreeMap<Key, AdminState>,
    leases: BTreeMap<Key, Held>,
    /// Counts the changes made, as etcd's revision does.
    revision: i64,
    next_lease: i64,
}

/// How to take a write back when the save fails.
#[derive(Debug)]
enum Undo {
    Admin(Key, Option<AdminState>),
    Lease(Key, Option<Held>),
}

impl Document {
    /// Everything held, as changes.
    pub fn snapshot(&self) -> (i64, Vec<Change>) {
        let states = self.admin.iter().map(|((service, address), state)| Change::State {
            service: service.clone(),
            address: *address,
            state: *state,
        });
        let leases = self.leases.iter().map(|((service, address), held)| registration(service, *address, Some(held)));
        (self.revision, states.chain(leases).collect())
    }

    /// Makes one write at `now`; its revision and changes, and how to take it back.
    fn apply(&mut self, write: Write, now: SystemTime) -> (i64, Vec<Change>, Vec<Undo>) {
        let mut undo = Vec::new();
        let changes = match write {
            Write::State { service, address, state } => {
                let key = (service.clone(), address);
                let before = match state {
                    AdminState::Auto => self.admin.remove(&key),
                    _ => self.admin.insert(key.clone(), state),
                };
                undo.push(Undo::Admin(key, before));
                vec![Change::State { service, address, state }]
            }
            Write::Register { service, request, .. } => vec![self.lease(service, request, now, &mut undo)],
            Write::Renew { service, request, lease } => {
                let key = (service.clone(), request.address);
                match self.leases.get_mut(&key).filter(|h| h.id == lease) {
                    Some(held) => {
                        undo.push(Undo::Lease(key, Some(held.clone())));
                        held.expires = now + Duration::from_secs(held.request.ttl_seconds);
                        return (0, Vec::new(), undo);
                    }
                    // expired meanwhile: the backend is still here, so register afresh
                    None => vec![self.lease(service, request, now, &mut undo)],
                }
            }
            Write::Deregister { service, address, .. } => {
                let key = (service.clone(), address);
                let before = self.leases.remove(&key);
                undo.push(Undo::Lease(key, before));
                vec![Change::Registration { service, address, lease: None }]
            }
        };
        self.revision += 1;
        (self.revision, changes, undo)
    }

    fn lease(&mut self, service: Name, request: RegistrationRequest, now: SystemTime, undo: &mut Vec<Undo>) -> Change {
        self.next_lease += 1;
        let held = Held { expires: now + Duration::from_secs(request.ttl_seconds), id: self.next_lease, request };
        let key = (service.clone(), held.request.address);
        let change = registration(&service, key.1, Some(&held));
        undo.push(Undo::Lease(key.clone(), self.leases.insert(key, held)));
        change
    }

    fn undo(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Admin(key, Some(state)) => drop(self.admin.insert(key, state)),
                Undo::Admin(key, None) => drop(self.admin.remove(&key)),
                Undo::Lease(key, Some(held)) => drop(self.leases.insert(key, held)),
                Undo::Lease(key, None) => drop(self.leases.remove(&key)),
            }
        }
    }

    /// Ends the leases that have expired by `now`.
    pub fn expire(&mut self, now: SystemTime) -> Vec<Change> {
        let expired: Vec<Key> = self.leases.iter().filter(|(_, h)| h.expires <= now).map(|(k, _)| k.clone()).collect();
        for (service, address) in &expired {
            tracing::info!("registration of {address} for {service} expired");
            self.leases.remove(&(service.clone(), *address));
        }
        if !expired.is_empty() {
            self.revision += 1;
        }
        expired.into_iter().map(|(service, address)| Change::Registration { service, address, lease: None }).collect()
    }

    /// After the store was down: no lease ends before a TTL from `now`, so a full disk
    /// never empties a service.
    pub fn extend(&mut self, now: SystemTime) {
        for held in self.leases.values_mut() {
            held.expires = held.expires.max(now + Duration::from_secs(held.request.ttl_seconds));
        }
    }

    /// The file's document.
    pub fn to_stored(&self) -> Stored {
        let admin_states = self
            .admin
            .iter()
            .map(|((service, address), state)| StoredState {
                service: service.to_string(),
                address: *address,
                state: *state,
            })
            .collect();
        let registrations = self
            .leases
            .iter()
            .map(|((service, address), held)| StoredRegistration {
                service: service.to_string(),
                address: *address,
                region: held.request.region.clone(),
                weight: held.request.weight.unwrap_or(1),
                priority: held.request.priority.unwrap_or(1),
                check_address: held.request.check_address,
                expires_at: unix(held.expires),
                ttl_seconds: held.request.ttl_seconds,
            })
            .collect();
        Stored { version: 1, admin_states, registrations }
    }

    /// Checks every entry of a file's document, as the config is checked: a name that
    /// does not parse or a lease beyond the longest TTL makes the file corrupt. Leases
    /// that ended before `now` are dropped.
    pub fn from_stored(stored: Stored, now: SystemTime) -> Result<Document, String> {
        let mut document = Document::default();
        for (i, s) in stored.admin_states.into_iter().enumerate() {
            let service =
                service_name(&s.service).ok_or_else(|| format!("admin_states[{i}].service {:?}", s.service))?;
            if s.state != AdminState::Auto {
                document.admin.insert((service, s.address), s.state);
            }
        }
        for (i, r) in stored.registrations.into_iter().enumerate() {
            let at = |field: &str| format!("registrations[{i}].{field}");
            let service = service_name(&r.service).ok_or_else(|| at("service"))?;
            let seconds = r.expires_at;
            let latest = now + LONGEST_LEASE;
            if !(seconds.is_finite() && seconds >= 0.0 && seconds <= unix(latest)) {
                return Err(format!("{}: {seconds} is not a lease expiry", at("expires_at")));
            }
            let expires = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds);
            if expires <= now {
                continue;
            }
            let request = RegistrationRequest {
                address: r.address,
                // files before ttl_seconds was kept: the lease left is the TTL
                ttl_seconds: match r.ttl_seconds {
                    0 => expires.duration_since(now).unwrap_or_default().as_secs().clamp(3, 86400),
                    ttl => ttl.clamp(3, 86400),
                },
                region: r.region,
                weight: Some(r.weight),
                priority: Some(r.priority),
                check_address: r.check_address,
            };
            document.next_lease += 1;
            document.leases.insert((service, r.address), Held { request, id: document.next_lease, expires });
        }
        Ok(document)
    }
}

fn registration(service: &Name, address: IpAddr, held: Option<&Held>) -> Change {
    let lease = held.map(|h| Lease { request: h.request.clone(), id: h.id, expires_at: Some(unix(h.expires)) });
    Change::Registration { service: service.clone(), address, lease }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Reads the state file; a missing file is an empty store, and its directory is made.
pub fn read(path: &Path) -> Result<Document, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_path_buf(), reason };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let stored: Stored = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Document::default()),
        Err(e) => return Err(io(e)),
    };
    Document::from_stored(stored, SystemTime::now()).map_err(corrupt)
}

/// Writes `stored` to a fresh temporary file beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory.
fn write(path: &Path, stored: &Stored) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map_or("state".into(), |n| n.to_string_lossy());
    write_via(path, &path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id())), stored)
}

/// [`write`] through `temporary`, which is created anew (never through a link planted
/// there) and removed when any step fails.
fn write_via(path: &Path, temporary: &Path, stored: &Stored) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).custom_flags(nix::libc::O_NOFOLLOW).open(temporary)?;
    let written = file
        .write_all(&serde_json::to_vec_pretty(stored).expect("plain data serializes"))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(temporary);
    }
    written?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Starts the local store over `document`, saved to `path` when there is one.
pub fn start(path: Option<PathBuf>, document: Document) -> Store {
    let (writes, writes_rx) = mpsc::channel(WRITES_IN_FLIGHT);
    let (events_tx, events) = mpsc::channel(1024);
    let reread = Arc::new(Notify::new());
    let backend = if path.is_some() { "file" } else { "memory" };
    let (revision, changes) = document.snapshot();
    let first = Some(Event::Snapshot { revision, changes });
    let local = Local { path, document, down: None, dirty: false };
    let task = local.run(writes_rx, events_tx, reread.clone());
    Store { backend, writes, first, events, reread, task: Box::pin(task) }
}

struct Local {
    path: Option<PathBuf>,
    document: Document,
    /// Why the file cannot be written, while it cannot.
    down: Option<String>,
    /// Renewals not saved yet.
    dirty: bool,
}

impl Local {
    async fn run(
        mut self,
        mut writes: mpsc::Receiver<(WriteId, Write)>,
        events: mpsc::Sender<Event>,
        reread: Arc<Notify>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            let reports = tokio::select! {
                _ = events.closed() => return,
                _ = reread.notified() => {
                    let (revision, changes) = self.document.snapshot();
                    vec![Event::Snapshot { revision, changes }]
                }
                _ = tick.tick() => self.tick(SystemTime::now()),
                first = writes.recv() => {
                    let Some(first) = first else { return };
                    crate::supervise::fault_point("store");
                    // a burst of writes costs one save
                    let mut batch = vec![first];
                    while let Ok(more) = writes.try_recv() {
                        batch.push(more);
                    }
                    self.batch(batch, SystemTime::now())
                }
            };
            for report in reports {
                if events.send(report).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Makes a burst of writes with one save; a failed save takes them all back.
    fn batch(&mut self, batch: Vec<(WriteId, Write)>, now: SystemTime) -> Vec<Event> {
        let mut undo = Vec::new();
        let mut written = Vec::with_capacity(batch.len());
        let mut changed = false;
        for (id, write) in batch {
            let (revision, changes, steps) = self.document.apply(write, now);
            changed |= !changes.is_empty();
            undo.extend(steps);
            written.push(Event::Written { id, revision, changes });
        }
        if !changed && self.down.is_none() {
            // renewals only: saved on the next tick
            self.dirty = true;
            return written;
        }
        match self.save(now) {
            Ok(mut reports) => {
                reports.extend(written);
                reports
            }
            Err(reason) => {
                self.document.undo(undo);
                let failed = written.into_iter().filter_map(|w| match w {
                    Event::Written { id, .. } => Some(Event::Failed { id, reason: reason.clone() }),
                    _ => None,
                });
                std::iter::once(Event::Down(reason.clone())).chain(failed).collect()
            }
        }
    }

    /// Saves pending renewals (and retries a failed save), then ends expired leases,
    /// unless the file cannot be written.
    fn tick(&mut self, now: SystemTime) -> Vec<Event> {
        let mut reports = Vec::new();
        if self.dirty || self.down.is_some() {
            match self.save(now) {
                Ok(r) => reports = r,
                Err(reason) => return vec![Event::Down(reason)],
            }
        }
        if self.down.is_some() {
            return reports;
        }
        let before = self.document.clone();
        let changes = self.document.expire(now);
        if changes.is_empty() {
            return reports;
        }
        if let Err(reason) = self.save(now) {
            // leases are kept until their end can be written
            self.document = before;
            return vec![Event::Down(reason)];
        }
        reports.push(Event::Changes { revision: self.document.revision, changes });
        reports
    }

    /// Writes the document; after an outage, extends every lease by its TTL and
    /// reports the store up with a snapshot.
    fn save(&mut self, now: SystemTime) -> Result<Vec<Event>, String> {
        let recovering = self.down.is_some();
        if recovering {
            self.document.extend(now);
        }
        if let Some(path) = &self.path
            && let Err(e) = write(path, &self.document.to_stored())
        {
            let reason = format!("{}: {e}", path.display());
            if self.down.is_none() {
                tracing::error!("store unavailable: {reason}; changes are refused until it can be written");
            }
            self.down = Some(reason.clone());
            return Err(reason);
        }
        self.dirty = false;
        if !recovering {
            return Ok(Vec::new());
        }
        tracing::info!("store: {} can be written again", self.path.as_deref().unwrap_or(Path::new("")).display());
        self.down = None;
        let (revision, changes) = self.document.snapshot();
        Ok(vec![Event::Snapshot { revision, changes }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn www() -> Name {
        service_name("www.lb.example").unwrap()
    }

    fn request(address: &str, ttl: u64) -> RegistrationRequest {
        RegistrationRequest {
            address: address.parse().unwrap(),
            ttl_seconds: ttl,
            region: None,
            weight: None,
            priority: None,
            check_address: None,
        }
    }

    fn register(d: &mut Document, address: &str, ttl: u64, now: SystemTime) -> i64 {
        let (_, changes, _) =
            d.apply(Write::Register { service: www(), request: request(address, ttl), replaces: None }, now);
        match &changes[..] {
            [Change::Registration { lease: Some(lease), .. }] => lease.id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lease_ends_at_its_ttl_and_a_renewal_moves_the_end() {
        let mut d = Document::default();
        let id = register(&mut d, "127.0.0.10", 10, at(0));
        assert!(d.expire(at(9)).is_empty());
        let (revision, changes, _) =
            d.apply(Write::Renew { service: www(), request: request("127.0.0.10", 10), lease: id }, at(9));
        assert_eq!((revision, changes), (0, Vec::new()), "a renewal changes no key");
        assert!(d.expire(at(18)).is_empty());
        let ended = d.expire(at(19));
        assert_eq!(
            ended,
            vec![Change::Registration { service: www(), address: "127.0.0.10".parse().unwrap(), lease: None }]
        );
    }

    #[test]
    fn a_renewal_of_an_expired_lease_registers_afresh() {
        let mut d = Document::default();
        let id = register(&mut d, "127.0.0.10", 3, at(0));
        d.expire(at(5));
        let (_, changes, _) =
            d.apply(Write::Renew { service: www(), request: request("127.0.0.10", 3), lease: id }, at(5));
        assert!(matches!(&changes[..], [Change::Registration { lease: Some(l), .. }] if l.id != id), "{changes:?}");
    }

    #[test]
    fn undo_takes_a_burst_back_whole() {
        let mut d = Document::default();
        register(&mut d, "127.0.0.10", 30, at(0));
        let saved = d.clone();
        let mut undo = Vec::new();
        let writes = [
            Write::State { service: www(), address: "127.0.0.10".parse().unwrap(), state: AdminState::Drain },
            Write::Deregister { service: www(), address: "127.0.0.10".parse().unwrap(), lease: None },
            Write::Register { service: www(), request: request("127.0.0.11", 30), replaces: None },
        ];
        for w in writes {
            undo.extend(d.apply(w, at(1)).2);
        }
        d.undo(undo);
        assert_eq!((d.admin, d.leases), (saved.admin, saved.leases));
    }

    #[test]
    fn after_an_outage_no_lease_ends_before_a_ttl() {
        let mut d = Document::default();
        register(&mut d, "127.0.0.10", 10, at(0));
        d.extend(at(100));
        assert!(d.expire(at(109)).is_empty());
        assert_eq!(d.expire(at(110)).len(), 1);
    }

    #[test]
    fn stored_entries_are_checked_like_the_config() {
        let stored = |expires_at: f64| Stored {
            version: 1,
            admin_states: Vec::new(),
            registrations: vec![StoredRegistration {
                service: "www.lb.example.".into(),
                address: "127.0.0.10".parse().unwrap(),
                region: None,
                weight: 1,
                priority: 1,
                check_address: None,
                expires_at,
                ttl_seconds: 30,
            }],
        };
        let now = at(0);
        for bad in [1e300, f64::NAN, f64::INFINITY, -1.0] {
            let e = Document::from_stored(stored(bad), now).unwrap_err();
            assert!(e.contains("registrations[0].expires_at"), "{e}");
        }
        let expired = Document::from_stored(stored(unix(at(0)) - 1.0), now).unwrap();
        assert!(expired.leases.is_empty());
        let live = Document::from_stored(stored(unix(at(20))), now).unwrap();
        assert_eq!(live.leases.len(), 1);
        let round = Document::from_stored(live.to_stored(), now).unwrap();
        assert_eq!(round.leases, live.leases);
    }

    #[test]
    fn a_file_round_trips_and_its_directory_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/s.json");
        assert_eq!(read(&path).unwrap(), Document::default());
        let mut d = Document::default();
        d.apply(
            Write::State { service: www(), address: "127.0.0.1".parse().unwrap(), state: AdminState::Drain },
            at(0),
        );
        write(&path, &d.to_stored()).unwrap();
        assert_eq!(read(&path).unwrap().admin, d.admin);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
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
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("s.json") && e.contains("move it aside"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    }
}
