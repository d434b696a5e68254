//! The etcd store: admin states and registrations as keys under a prefix, shared by
//! every steerdns node (key layout and values in the README).
//!
//! Two tasks. The follower reads the whole prefix, reports it as a snapshot and
//! watches from the next revision; when etcd goes away it reports the store down and
//! starts over once it answers again (and after a compaction). The writer makes each
//! write of the owner as its own request, so a slow one holds up no other.

use super::{Change, Event, Lease, Store, StoreError, WRITES_IN_FLIGHT, Write, WriteId};
use crate::api::{AdminState, RegistrationRequest, StateRequest};
use crate::config::EtcdConfig;
use crate::config::service_name;
use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, KeyValue, PutOptions, TlsOptions,
    WatchOptions,
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
pub fn start(config: &EtcdConfig) -> Result<Store, StoreError> {
    let options = options(config)?;
    let (writes, writes_rx) = mpsc::channel(WRITES_IN_FLIGHT);
    let (events_tx, events) = mpsc::channel(1024);
    let keys = Keys { prefix: config.prefix.clone() };
    let endpoints = config.endpoints.clone();
    let reread = Arc::new(Notify::new());
    let first = super::copy::read(&config.copy);
    let copy = super::copy::Copy::new(config.copy.clone());
    let mut follower = Follower { keys: keys.clone(), events: events_tx.clone(), reread: reread.clone(), copy };
    let task = async move {
        let (client_tx, client_rx) = watch::channel(None);
        tokio::spawn(writer(writes_rx, client_rx, keys, events_tx));
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
        loop {
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
    keys: Keys,
    events: mpsc::Sender<Event>,
) {
    while let Some((id, write)) = writes.recv().await {
        let Some(client) = client.borrow().clone() else {
            let _ = events.send(Event::Failed { id, reason: "not connected to etcd yet".into() }).await;
            continue;
        };
        let (keys, events) = (keys.clone(), events.clone());
        tokio::spawn(async move {
            let report = match timeout(2 * REQUEST_TIMEOUT, apply(client, &keys, write)).await {
                Ok(Ok((revision, changes))) => Event::Written { id, revision, changes },
                Ok(Err(e)) => Event::Failed { id, reason: format!("etcd: {}", brief(&e)) },
                Err(_) => Event::Failed { id, reason: "etcd did not answer in time".into() },
            };
            let _ = events.send(report).await;
        });
    }
}

/// Makes one write; returns its revision and the changes it made.
async fn apply(mut client: Client, keys: &Keys, write: Write) -> Result<(i64, Vec<Change>), etcd_client::Error> {
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

/// The key layout: `{prefix}admin/{service}/{address}` and
/// `{prefix}registrations/{service}/{address}`.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
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
        self.change(&key, (!deleted).then(|| kv.value()), kv.lease())
            .map_err(|reason| tracing::warn!("store: skipping key {key:?}: {reason}"))
            .ok()
    }

    fn change(&self, key: &str, value: Option<&[u8]>, lease: i64) -> Result<Change, String> {
        let rest = key.strip_prefix(self.prefix.as_str()).ok_or("outside the prefix")?;
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
            _ => Err(format!("unknown kind {kind:?} (admin or registrations)")),
        }
    }
}
