//! The etcd store: admin states and registrations as keys under a prefix, shared by
//! every steerdns node (key layout and values in the README).
//!
//! Two tasks. The follower reads the whole prefix, reports it as a snapshot and
//! watches from the next revision; when etcd goes away it reports the store down and
//! starts over once it answers again (and after a compaction). The writer makes each
//! write of the owner as its own request, so a slow one holds up no other.

use super::{Change, Event, Lease, Membership, SharedVerdict, Store, StoreError, WRITES_IN_FLIGHT, Write, WriteId};
use crate::api::{AdminState, RegistrationRequest, StateRequest};
use crate::config::EtcdConfig;
use crate::config::service_name;
use crate::health::ProbeKey;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, KeyValue, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use hickory_proto::rr::Name;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::timeout;

/// How long one request to etcd may take before the store counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the copy of what etcd holds is written, when it changed.
const COPY_EVERY: Duration = Duration::from_secs(2);
/// Retry delays after losing etcd: from the first to the longest.
const RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Reads the TLS and password files (an unreadable one stops the start) and returns
/// the store, whose task the owner spawns.
pub fn start(config: &EtcdConfig, membership: Option<Membership>) -> Result<Store, StoreError> {
    let options = options(config)?;
    let (writes, writes_rx) = mpsc::channel(WRITES_IN_FLIGHT);
    let (events_tx, events) = mpsc::channel(1024);
    let keys = Keys { prefix: config.prefix.clone(), me: membership.as_ref().map(|m| m.identity.clone()) };
    let endpoints = config.endpoints.clone();
    let reread = Arc::new(Notify::new());
    let first = super::copy::read(&config.copy);
    let copy = super::copy::Copy::new(config.copy.clone());
    let (lease_tx, lease_rx) = watch::channel(None);
    let member = membership.map(|m| Member { membership: m, lease: lease_tx, joined_once: false });
    let mut follower = Follower { keys: keys.clone(), events: events_tx.clone(), reread: reread.clone(), copy, member };
    let task = async move {
        let (client_tx, client_rx) = watch::channel(None);
        tokio::spawn(writer(writes_rx, client_rx, lease_rx, keys, events_tx));
        follower.run(endpoints, options, client_tx).await;
    };
    Ok(Store { backend: "etcd", writes, first, events, reread, task: Box::pin(task) })
}

fn options(config: &EtcdConfig) -> Result<ConnectOptions, StoreError> {
    let read =
        |path: &std::path::PathBuf| std::fs::read(path).map_err(|source| StoreError::Io { path: path.clone(), source });
    let mut options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), REQUEST_TIMEOUT);
    if let (Some(user), Some(file)) = (&config.username, &config.password_file) {
        let password = String::from_utf8_lossy(&read(file)?).trim_end().to_string();
        // etcd's tokens expire (--auth-token-ttl); a request that finds its token
        // expired logs in again
        options = options.with_user(user, password).with_auto_token_refresh(true);
    }
    if config.ca_file.is_some() || config.cert_file.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &config.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

/// Reads the prefix and follows it, for the owner.
struct Follower {
    /// What etcd holds, kept in a file for a start without etcd.
    copy: super::copy::Copy,
    keys: Keys,
    events: mpsc::Sender<Event>,
    reread: Arc<Notify>,
    /// This node's membership (shared health), when it has one.
    member: Option<Member>,
}

/// This node as a member of the shared health (SPEC §10): `nodes/<identity>` on a
/// lease of its own, its heartbeat written into it.
struct Member {
    membership: Membership,
    /// The node lease, for the writer (verdicts go on it); None while there is none.
    lease: watch::Sender<Option<i64>>,
    joined_once: bool,
}

impl Member {
    /// Makes `nodes/<identity>` on a live lease. A key held by another lease is waited
    /// for one lease TTL and a second (a node restarted after kill -9 finds its old key
    /// until that lease ends); held longer, another node has this identity: the
    /// process stops.
    async fn join(&mut self, client: &mut Client, keys: &Keys) -> Result<(), etcd_client::Error> {
        let key = keys.node(&self.membership.identity);
        let ttl = self.membership.lease_ttl.as_secs().max(2) as i64;
        let deadline = tokio::time::Instant::now() + self.membership.lease_ttl + Duration::from_secs(1);
        loop {
            let held = *self.lease.borrow();
            let lease = match held {
                Some(lease) if client.lease_time_to_live(lease, None).await?.ttl() > 0 => lease,
                _ => client.lease_grant(ttl, None).await?.id(),
            };
            self.lease.send_replace(Some(lease));
            let put = TxnOp::put(key.as_str(), heartbeat(), Some(PutOptions::new().with_lease(lease)));
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([put.clone()])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let response = client.txn(txn).await?;
            let held_by = response.op_responses().into_iter().find_map(|r| match r {
                etcd_client::TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.lease()),
                _ => None,
            });
            match held_by {
                None if response.succeeded() => break,
                Some(holder) if holder == lease => {
                    client.put(key.as_str(), heartbeat(), Some(PutOptions::new().with_lease(lease))).await?;
                    break;
                }
                _ if tokio::time::Instant::now() < deadline => {
                    if !self.joined_once {
                        tracing::info!("shared health: {key} is held; waiting for its lease to end");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                _ => {
                    let line = format!(
                        "steerdns: another node holds the identity {:?} in etcd ({key}); give each node its own server.identity; exiting",
                        self.membership.identity
                    );
                    tracing::error!("{line}");
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
                    std::process::exit(1);
                }
            }
        }
        if !self.joined_once {
            tracing::info!("shared health: joined as {key}");
        }
        self.joined_once = true;
        Ok(())
    }

    /// Keeps the lease alive and writes the heartbeat.
    async fn beat(&self, client: &mut Client, keys: &Keys) -> Result<(), String> {
        let held = *self.lease.borrow();
        let Some(lease) = held else { return Err("no node lease".into()) };
        let (mut keeper, mut stream) =
            client.lease_keep_alive(lease).await.map_err(|e| format!("keeping the node lease: {}", brief(&e)))?;
        keeper.keep_alive().await.map_err(|e| format!("keeping the node lease: {}", brief(&e)))?;
        match stream.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {}
            _ => return Err("the node lease has ended".into()),
        }
        let key = keys.node(&self.membership.identity);
        client
            .put(key, heartbeat(), Some(PutOptions::new().with_lease(lease)))
            .await
            .map_err(|e| format!("writing the heartbeat: {}", brief(&e)))?;
        Ok(())
    }
}

/// A node key's value: its heartbeat, Unix seconds.
fn heartbeat() -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    json(&NodeValue { heartbeat: now.as_secs_f64() })
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeValue {
    heartbeat: f64,
}

/// A verdict key's value: whose verdict on which key (the key names them too).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictValue {
    node: String,
    check: String,
    address: IpAddr,
    verdict: SharedVerdict,
}

impl Follower {
    /// Connects, then follows the prefix until the owner stops listening; reports the
    /// store down and retries whenever etcd cannot be reached.
    async fn run(&mut self, endpoints: Vec<String>, options: ConnectOptions, client_tx: watch::Sender<Option<Client>>) {
        let events = &self.events.clone();
        let mut delay = RETRY.0;
        let mut client: Option<Client> = None;
        loop {
            let result = match &client {
                Some(c) => self.session(c.clone(), &mut delay).await,
                // connecting sends no request unless it must log in
                None => match timeout(REQUEST_TIMEOUT, Client::connect(&endpoints, Some(options.clone()))).await {
                    Ok(Ok(c)) => {
                        client_tx.send_replace(Some(c.clone()));
                        client = Some(c);
                        continue;
                    }
                    Ok(Err(e)) => Err(format!("cannot connect to etcd: {}", brief(&e))),
                    Err(_) => Err("cannot connect to etcd: timed out".into()),
                },
            };
            let Err(reason) = result else { return };
            // the delay is back at its first value only after a successful read: one
            // warning per outage, not one per retry
            if delay == RETRY.0 {
                tracing::warn!("store unavailable: {reason}; serving the last known state, retrying");
            } else {
                tracing::debug!("store still unavailable: {reason}");
            }
            if events.send(Event::Down(reason)).await.is_err() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY.1);
        }
    }

    /// Reads the prefix and watches it from there; reads again after a compaction or
    /// when the owner asks. Returns Ok when the owner has stopped, Err when etcd failed.
    async fn session(&mut self, mut client: Client, delay: &mut Duration) -> Result<(), String> {
        let (keys, events) = (&self.keys.clone(), &self.events.clone());
        let mut save = tokio::time::interval(COPY_EVERY);
        let beat_every = self.member.as_ref().map_or(Duration::from_secs(3600), |m| m.membership.heartbeat);
        let mut beat = tokio::time::interval(beat_every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(member) = &mut self.member {
                timeout(2 * REQUEST_TIMEOUT, member.join(&mut client, keys))
                    .await
                    .map_err(|_| "joining the shared health timed out".to_string())?
                    .map_err(|e| format!("joining the shared health: {}", brief(&e)))?;
            }
            let read =
                timeout(REQUEST_TIMEOUT, client.get(keys.prefix.as_str(), Some(GetOptions::new().with_prefix())))
                    .await
                    .map_err(|_| "reading the prefix timed out".to_string())?
                    .map_err(|e| format!("reading the prefix: {}", brief(&e)))?;
            let revision = read.header().map_or(0, |h| h.revision());
            let changes: Vec<Change> = read.kvs().iter().filter_map(|kv| keys.parse(kv, false)).collect();
            self.copy.replace(&changes);
            self.copy.save();
            if events.send(Event::Snapshot { revision, changes }).await.is_err() {
                return Ok(());
            }
            tracing::info!("store: read {} keys under {} at revision {revision}", read.kvs().len(), keys.prefix);
            *delay = RETRY.0;
            let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
            let mut stream = timeout(REQUEST_TIMEOUT, client.watch(keys.prefix.as_str(), Some(options)))
                .await
                .map_err(|_| "starting the watch timed out".to_string())?
                .map_err(|e| format!("starting the watch: {}", brief(&e)))?;
            loop {
                let message = tokio::select! {
                    _ = events.closed() => return Ok(()),
                    _ = self.reread.notified() => break,
                    _ = save.tick() => {
                        self.copy.save();
                        continue;
                    }
                    _ = beat.tick(), if self.member.is_some() => {
                        // a slow heartbeat is logged and tried again; only a lease that
                        // has ended (or a failed request) starts the session over
                        let member = self.member.as_ref().expect("checked");
                        match timeout(REQUEST_TIMEOUT, member.beat(&mut client, keys)).await {
                            Ok(result) => result?,
                            Err(_) => tracing::debug!("shared health: a heartbeat took over {REQUEST_TIMEOUT:?}"),
                        }
                        continue;
                    }
                    message = stream.message() => message,
                };
                let response =
                    message.map_err(|e| format!("the watch failed: {}", brief(&e)))?.ok_or("the watch ended")?;
                if response.canceled() {
                    if response.compact_revision() > 0 {
                        tracing::info!("store: the watch fell behind a compaction; reading the prefix again");
                        break;
                    }
                    return Err(format!("the watch was cancelled: {}", response.cancel_reason()));
                }
                let changes: Vec<Change> = response
                    .events()
                    .iter()
                    .filter_map(|e| keys.parse(e.kv()?, e.event_type() == EventType::Delete))
                    .collect();
                let revision = response.header().map_or(0, |h| h.revision());
                self.copy.apply(&changes);
                if !changes.is_empty() && events.send(Event::Changes { revision, changes }).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Makes each write as its own task; answers at once while no client exists yet.
async fn writer(
    mut writes: mpsc::Receiver<(WriteId, Write)>,
    client: watch::Receiver<Option<Client>>,
    lease: watch::Receiver<Option<i64>>,
    keys: Keys,
    events: mpsc::Sender<Event>,
) {
    while let Some((id, write)) = writes.recv().await {
        let Some(client) = client.borrow().clone() else {
            let _ = events.send(Event::Failed { id, reason: "not connected to etcd yet".into() }).await;
            continue;
        };
        let (keys, events, lease) = (keys.clone(), events.clone(), *lease.borrow());
        tokio::spawn(async move {
            let report = match timeout(2 * REQUEST_TIMEOUT, apply(client, &keys, write, lease)).await {
                Ok(Ok((revision, changes))) => Event::Written { id, revision, changes },
                Ok(Err(e)) => Event::Failed { id, reason: format!("etcd: {}", brief(&e)) },
                Err(_) => Event::Failed { id, reason: "etcd did not answer in time".into() },
            };
            let _ = events.send(report).await;
        });
    }
}

/// Makes one write; returns its revision and the changes it made.
async fn apply(
    mut client: Client,
    keys: &Keys,
    write: Write,
    node_lease: Option<i64>,
) -> Result<(i64, Vec<Change>), etcd_client::Error> {
    let revision = |header: Option<&etcd_client::ResponseHeader>| header.map_or(0, |h| h.revision());
    match write {
        Write::State { service, address, state } => {
            let key = keys.state(&service, address);
            let at = if state == AdminState::Auto {
                revision(client.delete(key, None).await?.header())
            } else {
                revision(client.put(key, json(&StateRequest { state }), None).await?.header())
            };
            Ok((at, vec![Change::State { service, address, state }]))
        }
        Write::Register { service, request, replaces } => register(&mut client, keys, service, request, replaces).await,
        // opening a keep-alive stream sends the first keep-alive: that is the renewal
        Write::Renew { service, request, lease } => match client.lease_keep_alive(lease).await {
            Ok(_) => Ok((0, Vec::new())),
            // the lease has expired (and the watch has not told yet), or the key was put
            // without one: the backend is still here, so register afresh
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => {
                register(&mut client, keys, service, request, None).await
            }
            Err(e) => Err(e),
        },
        Write::Deregister { service, address, lease } => {
            let at = revision(client.delete(keys.registration(&service, address), None).await?.header());
            if let Some(lease) = lease {
                let _ = client.lease_revoke(lease).await;
            }
            Ok((at, vec![Change::Registration { service, address, lease: None }]))
        }
        Write::Verdict { key, verdict } => {
            let (Some(lease), Some(node)) = (node_lease, keys.me.clone()) else {
                return Err(etcd_client::Error::InvalidArgs("not a member of the shared health yet".into()));
            };
            let value = VerdictValue { node: node.clone(), check: key.check.clone(), address: key.address, verdict };
            let put = client.put(keys.verdict(&node, &key), json(&value), Some(PutOptions::new().with_lease(lease)));
            let at = revision(put.await?.header());
            Ok((at, vec![Change::Verdict { key, node, verdict: Some(verdict) }]))
        }
    }
}

async fn register(
    client: &mut Client,
    keys: &Keys,
    service: Name,
    request: RegistrationRequest,
    replaces: Option<i64>,
) -> Result<(i64, Vec<Change>), etcd_client::Error> {
    let ttl = i64::try_from(request.ttl_seconds).unwrap_or(i64::MAX);
    let lease = client.lease_grant(ttl, None).await?.id();
    let key = keys.registration(&service, request.address);
    let put = client.put(key, json(&request), Some(PutOptions::new().with_lease(lease))).await?;
    if let Some(old) = replaces {
        // the key has moved to the new lease, so revoking the old one deletes nothing
        let _ = client.lease_revoke(old).await;
    }
    let address = request.address;
    let at = put.header().map_or(0, |h| h.revision());
    let lease = Lease { request, id: lease, expires_at: None };
    Ok((at, vec![Change::Registration { service, address, lease: Some(lease) }]))
}

/// An etcd error in one line: what failed and its root cause (a gRPC status prints
/// its whole chain in debug form).
fn brief(error: &etcd_client::Error) -> String {
    let (what, mut cause): (String, Option<&dyn std::error::Error>) = match error {
        etcd_client::Error::GRpcStatus(status) => (status.message().to_string(), std::error::Error::source(status)),
        other => (other.to_string(), None),
    };
    while let Some(deeper) = cause.and_then(|c| c.source()) {
        cause = Some(deeper);
    }
    match cause {
        Some(root) => format!("{what}: {root}"),
        None => what,
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Option<&[u8]>) -> Result<Option<T>, String> {
    let parse =
        |v: &[u8]| serde_json::from_slice(v).map_err(|e| format!("value {:?}: {e}", String::from_utf8_lossy(v)));
    value.map(parse).transpose()
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data serializes")
}

/// The key layout: `{prefix}admin/{service}/{address}`,
/// `{prefix}registrations/{service}/{address}`, and for shared health
/// `{prefix}nodes/{identity}` and `{prefix}verdicts/{identity}/{address}/{check}`.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    /// This node's identity, when it shares health.
    me: Option<String>,
}

impl Keys {
    fn node(&self, identity: &str) -> String {
        format!("{}nodes/{identity}", self.prefix)
    }

    fn verdict(&self, node: &str, key: &ProbeKey) -> String {
        format!("{}verdicts/{node}/{}/{}", self.prefix, key.address, key.check)
    }

    fn state(&self, service: &Name, address: IpAddr) -> String {
        format!("{}admin/{service}/{address}", self.prefix)
    }

    fn registration(&self, service: &Name, address: IpAddr) -> String {
        format!("{}registrations/{service}/{address}", self.prefix)
    }

    /// The change a key-value pair stands for; a key or value that does not parse is
    /// skipped with a warning.
    fn parse(&self, kv: &KeyValue, deleted: bool) -> Option<Change> {
        let key = String::from_utf8_lossy(kv.key());
        match self.change(&key, (!deleted).then(|| kv.value()), kv.lease()) {
            Ok(change) => Some(change),
            Err(reason) => {
                tracing::warn!("store: skipping key {key:?}: {reason}");
                let verdict = key.strip_prefix(self.prefix.as_str()).is_some_and(|k| k.starts_with("verdicts/"));
                verdict.then_some(Change::UnreadableVerdict)
            }
        }
    }

    fn change(&self, key: &str, value: Option<&[u8]>, lease: i64) -> Result<Change, String> {
        let rest = key.strip_prefix(self.prefix.as_str()).ok_or("outside the prefix")?;
        if let Some(identity) = rest.strip_prefix("nodes/") {
            let heartbeat = decode::<NodeValue>(value)?.map(|v| v.heartbeat);
            return Ok(Change::Member { identity: identity.to_string(), heartbeat });
        }
        if let Some(rest) = rest.strip_prefix("verdicts/") {
            return match decode::<VerdictValue>(value)? {
                Some(v) => {
                    let probe = ProbeKey { check: v.check, address: v.address };
                    if self.verdict(&v.node, &probe) != key {
                        return Err(format!("its value names another key ({})", self.verdict(&v.node, &probe)));
                    }
                    Ok(Change::Verdict { key: probe, node: v.node, verdict: Some(v.verdict) })
                }
                // deleted: the key alone says whose and which (identities hold no '/')
                None => {
                    let (node, rest) = rest.split_once('/').ok_or("not verdicts/NODE/ADDRESS/CHECK")?;
                    let (address, check) = rest.split_once('/').ok_or("not verdicts/NODE/ADDRESS/CHECK")?;
                    let address: IpAddr = address.parse().map_err(|_| format!("{address:?} is not an IP address"))?;
                    let probe = ProbeKey { check: check.to_string(), address };
                    Ok(Change::Verdict { key: probe, node: node.to_string(), verdict: None })
                }
            };
        }
        let (kind, rest) = rest.split_once('/').ok_or("not KIND/SERVICE/ADDRESS")?;
        let (service, address) = rest.rsplit_once('/').ok_or("not KIND/SERVICE/ADDRESS")?;
        let service = service_name(service).ok_or_else(|| format!("{service:?} is not a domain name"))?;
        let address: IpAddr = address.parse().map_err(|_| format!("{address:?} is not an IP address"))?;
        match kind {
            "admin" => {
                let state = decode::<StateRequest>(value)?.map_or(AdminState::Auto, |r| r.state);
                Ok(Change::State { service, address, state })
            }
            "registrations" => match decode::<RegistrationRequest>(value)? {
                Some(request) if request.address != address => Err(format!("its value names {}", request.address)),
                request => {
                    let lease = request.map(|request| Lease { request, id: lease, expires_at: None });
                    Ok(Change::Registration { service, address, lease })
                }
            },
            _ => Err(format!("unknown kind {kind:?} (admin, registrations, nodes or verdicts)")),
        }
    }
}
