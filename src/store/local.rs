//! The local store: admin states and leased registrations in memory, and, for the
//! `file` backend, in one JSON file rewritten whole after each burst of writes.
//!
//! [`Document`] is the pure part (time is an argument); the task around it batches
//! writes, saves, expires leases on its own clock, and stops expiring while the file
//! cannot be written, until it has been writable again for a lease's TTL.

use super::file::{Entry, Files};
use super::{Change, Event, Lease, Store, StoreError, Stored, WRITES_IN_FLIGHT, Write, WriteId};
use crate::api::{AdminState, RegistrationRequest, StoredRegistration, StoredState};
use crate::config::service_name;
use hickory_proto::rr::Name;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
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

/// Which of a key's two values: its admin state, or its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Admin,
    Lease,
}

/// A value a write changed, to journal.
type Touched = (Kind, Key);

impl Undo {
    fn touched(&self) -> Touched {
        match self {
            Undo::Admin(key, _) => (Kind::Admin, key.clone()),
            Undo::Lease(key, _) => (Kind::Lease, key.clone()),
        }
    }
}

/// The key a change touches; None for what a local store never holds (shared health).
fn touched(change: &Change) -> Option<Touched> {
    match change {
        Change::State { service, address, .. } => Some((Kind::Admin, (service.clone(), *address))),
        Change::Registration { service, address, .. } => Some((Kind::Lease, (service.clone(), *address))),
        Change::Member { .. } | Change::Verdict { .. } | Change::UnreadableVerdict => None,
    }
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
            // shared health needs etcd (the config says so): nothing to keep
            Write::Verdict { .. } => return (0, Vec::new(), undo),
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

    /// A key's value as the journal keeps it.
    fn entry(&self, (kind, key): &Touched) -> Entry {
        let (service, address) = (key.0.to_string(), key.1);
        match kind {
            Kind::Admin => {
                let state = self.admin.get(key).copied().unwrap_or(AdminState::Auto);
                Entry::State(StoredState { service, address, state })
            }
            Kind::Lease => match self.leases.get(key) {
                Some(held) => Entry::Registration(stored_registration(&key.0, held)),
                None => Entry::Deregistered { service, address },
            },
        }
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
        let admin_states = super::stored_states(self.admin.iter());
        let registrations = self.leases.iter().map(|((service, _), held)| stored_registration(service, held)).collect();
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
            // files before ttl_seconds was kept: the lease left is the TTL
            let ttl = match r.ttl_seconds {
                0 => expires.duration_since(now).unwrap_or_default().as_secs(),
                ttl => ttl,
            };
            let address = r.address;
            let request = super::stored_request(r, ttl);
            document.next_lease += 1;
            document.leases.insert((service, address), Held { request, id: document.next_lease, expires });
        }
        Ok(document)
    }
}

fn stored_registration(service: &Name, held: &Held) -> StoredRegistration {
    super::stored_registration(service, &held.request, unix(held.expires))
}

fn registration(service: &Name, address: IpAddr, held: Option<&Held>) -> Change {
    let lease = held.map(|h| Lease { request: h.request.clone(), id: h.id, expires_at: Some(unix(h.expires)) });
    Change::Registration { service: service.clone(), address, lease }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Opens the file store at `path`: its snapshot and journal, checked.
pub fn open(path: &Path) -> Result<Store, StoreError> {
    let (stored, files) = Files::read(path)?;
    let document = Document::from_stored(stored, SystemTime::now())
        .map_err(|reason| StoreError::Corrupt { path: path.to_path_buf(), reason })?;
    Ok(start(Some(files), document))
}

/// Starts the local store over `document`, kept in `files` when there are some.
pub fn start(files: Option<Files>, document: Document) -> Store {
    let (writes, writes_rx) = mpsc::channel(WRITES_IN_FLIGHT);
    let (events_tx, events) = mpsc::channel(1024);
    let reread = Arc::new(Notify::new());
    let backend = if files.is_some() { "file" } else { "memory" };
    let (revision, changes) = document.snapshot();
    let first = Some(Event::Snapshot { revision, changes });
    let local = Local { files, document, down: None, unsaved: BTreeSet::new() };
    let task = local.run(writes_rx, events_tx, reread.clone());
    Store { backend, writes, first, events, reread, task: Box::pin(task) }
}

struct Local {
    files: Option<Files>,
    document: Document,
    /// Why the file cannot be written, while it cannot.
    down: Option<String>,
    /// Leases renewed but not saved yet (saved on the next tick).
    unsaved: BTreeSet<Touched>,
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
        let keys: BTreeSet<Touched> = undo.iter().map(Undo::touched).collect();
        if !changed && self.down.is_none() {
            // renewals only: saved on the next tick
            self.unsaved.extend(keys);
            return written;
        }
        match self.save(keys, now) {
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
        if !self.unsaved.is_empty() || self.down.is_some() {
            match self.save(BTreeSet::new(), now) {
                Ok(r) => reports = r,
                Err(reason) => return vec![Event::Down(reason)],
            }
        }
        if self.down.is_some() {
            return reports;
        }
        let due: Vec<(Key, Held)> = self
            .document
            .leases
            .iter()
            .filter(|(_, h)| h.expires <= now)
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        if due.is_empty() {
            return reports;
        }
        let changes = self.document.expire(now);
        let keys = changes.iter().filter_map(touched).collect();
        if let Err(reason) = self.save(keys, now) {
            // leases are kept until their end can be written
            self.document.leases.extend(due);
            return vec![Event::Down(reason)];
        }
        reports.push(Event::Changes { revision: self.document.revision, changes });
        reports
    }

    /// Writes `keys` (and the renewals not saved yet) to the journal; after an outage,
    /// extends every lease by its TTL, writes a whole snapshot, and reports the store
    /// up with a snapshot.
    fn save(&mut self, mut keys: BTreeSet<Touched>, now: SystemTime) -> Result<Vec<Event>, String> {
        let recovering = self.down.is_some();
        if recovering {
            self.document.extend(now);
        }
        if let Some(files) = &mut self.files {
            keys.append(&mut self.unsaved);
            let entries: Vec<Entry> = keys.iter().map(|k| self.document.entry(k)).collect();
            let saved = if recovering {
                files.compact(&self.document.to_stored())
            } else {
                files.append(&entries).map(|full| {
                    if full && let Err(e) = files.compact(&self.document.to_stored()) {
                        // the journal holds everything: compaction waits for the next save
                        tracing::warn!("store: cannot compact {}: {e}", files.path().display());
                    }
                })
            };
            if let Err(e) = saved {
                self.unsaved.extend(keys);
                let reason = format!("{}: {e}", files.path().display());
                if self.down.is_none() {
                    tracing::error!("store unavailable: {reason}; changes are refused until it can be written");
                }
                self.down = Some(reason.clone());
                return Err(reason);
            }
        }
        if !recovering {
            return Ok(Vec::new());
        }
        tracing::info!("store: the state file can be written again");
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

    fn local(path: &Path) -> Local {
        let (stored, files) = Files::read(path).unwrap();
        let document = Document::from_stored(stored, at(0)).unwrap();
        Local { files: Some(files), document, down: None, unsaved: BTreeSet::new() }
    }

    fn registration(address: &str, ttl: u64) -> Write {
        Write::Register { service: www(), request: request(address, ttl), replaces: None }
    }

    fn drain(address: &str) -> Write {
        Write::State { service: www(), address: address.parse().unwrap(), state: AdminState::Drain }
    }

    #[test]
    fn a_burst_is_saved_once_and_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/s.json");
        let mut l = local(&path);
        let burst = vec![
            (1, drain("127.0.0.1")),
            (2, Write::Register { service: www(), request: request("127.0.0.20", 30), replaces: None }),
        ];
        let reports = l.batch(burst, at(1));
        assert!(matches!(&reports[..], [Event::Written { id: 1, .. }, Event::Written { id: 2, .. }]), "{reports:?}");
        let journal = std::fs::read_to_string(dir.path().join("state/s.json.journal")).unwrap();
        assert_eq!(journal.lines().count(), 2, "{journal}");
        let again = local(&path);
        assert_eq!((again.document.admin, again.document.leases.len()), (l.document.admin.clone(), 1));
    }

    #[test]
    fn renewals_are_saved_on_the_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut l = local(&path);
        l.batch(vec![(1, registration("127.0.0.20", 30))], at(0));
        let id = l.document.leases.values().next().unwrap().id;
        let renew = Write::Renew { service: www(), request: request("127.0.0.20", 30), lease: id };
        l.batch(vec![(2, renew)], at(20));
        assert_eq!(std::fs::read_to_string(dir.path().join("s.json.journal")).unwrap().lines().count(), 1);
        l.tick(at(21));
        assert_eq!(local(&path).document.leases.values().next().unwrap().expires, at(50), "the renewal was saved");
    }

    #[test]
    fn a_failed_save_takes_the_burst_back_and_the_tick_brings_the_store_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut l = local(&path);
        // the journal cannot be opened for appending
        std::fs::create_dir(dir.path().join("s.json.journal")).unwrap();
        let reports = l.batch(vec![(7, drain("127.0.0.1"))], at(1));
        assert!(matches!(&reports[..], [Event::Down(_), Event::Failed { id: 7, .. }]), "{reports:?}");
        assert!(l.document.admin.is_empty(), "taken back");
        assert!(matches!(&l.tick(at(2))[..], [Event::Down(_)]));
        std::fs::remove_dir(dir.path().join("s.json.journal")).unwrap();
        let reports = l.tick(at(3));
        assert!(matches!(&reports[..], [Event::Snapshot { .. }]), "{reports:?}");
        assert!(l.down.is_none());
        let reports = l.batch(vec![(8, drain("127.0.0.1"))], at(4));
        assert!(matches!(&reports[..], [Event::Written { id: 8, .. }]), "{reports:?}");
    }

    #[test]
    fn a_lease_ends_only_once_its_end_can_be_written_and_a_ttl_after_the_outage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut l = local(&path);
        l.batch(vec![(1, registration("127.0.0.20", 3))], at(0));
        // a restart reads the lease back; then the journal cannot be opened for appending
        let mut l = local(&path);
        std::fs::remove_file(dir.path().join("s.json.journal")).unwrap();
        std::fs::create_dir(dir.path().join("s.json.journal")).unwrap();
        assert!(matches!(&l.tick(at(5))[..], [Event::Down(_)]));
        assert_eq!(l.document.leases.len(), 1, "kept while its end cannot be written");
        std::fs::remove_dir(dir.path().join("s.json.journal")).unwrap();
        assert!(matches!(&l.tick(at(6))[..], [Event::Snapshot { .. }]));
        assert!(l.tick(at(8)).is_empty(), "a TTL from the store's return");
        assert!(matches!(&l.tick(at(9))[..], [Event::Changes { .. }]));
    }

    #[test]
    fn expired_leases_are_saved_as_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let mut l = local(&path);
        l.batch(vec![(1, registration("127.0.0.20", 3))], at(0));
        let reports = l.tick(at(5));
        assert!(matches!(&reports[..], [Event::Changes { .. }]), "{reports:?}");
        assert!(local(&path).document.leases.is_empty());
    }
}
