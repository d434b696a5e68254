//! [server] and [store].

use super::*;

impl Validator<'_> {
    pub(super) fn server(&mut self, raw: RawServer) -> ServerConfig {
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
            None => listen.push(defaults::LISTEN),
        }
        let admin_listen = match &raw.admin_listen {
            Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
                self.err(s, "server.admin_listen", "must be IP:PORT, e.g. \"127.0.0.1:8053\"");
                defaults::ADMIN_LISTEN
            }),
            None => defaults::ADMIN_LISTEN,
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
        let dnssec_signatures_per_second = match raw.dnssec_signatures_per_second {
            Some(n) => self.int(&n, "server.dnssec_signatures_per_second", 1, 10_000_000) as u32,
            None => crate::dnssec::BUDGET_PER_CORE * udp_workers.max(1) as u32,
        };
        let tcp_idle_timeout =
            self.duration(raw.tcp_idle_timeout.as_ref(), "server.tcp_idle_timeout", defaults::TCP_IDLE_TIMEOUT);
        let tcp_max_connections = raw.tcp_max_connections.as_ref().map_or(defaults::TCP_MAX_CONNECTIONS, |n| {
            self.int(n, "server.tcp_max_connections", 1, 1_000_000) as usize
        });
        let tcp_max_connections_per_client =
            raw.tcp_max_connections_per_client.as_ref().map_or(defaults::TCP_MAX_CONNECTIONS_PER_CLIENT, |n| {
                self.int(n, "server.tcp_max_connections_per_client", 1, 1_000_000) as usize
            });
        let shutdown_timeout =
            self.duration(raw.shutdown_timeout.as_ref(), "server.shutdown_timeout", defaults::SHUTDOWN_TIMEOUT);
        let startup_wait = raw.startup_wait.as_ref().and_then(|value| {
            let parsed = humantime::parse_duration(value.get_ref());
            parsed
                .map_err(|_| {
                    self.err(value, "server.startup_wait", "must be a duration with a unit, e.g. \"3s\" (\"0s\": off)")
                })
                .ok()
        });
        let tls_listen = self.addresses(raw.tls_listen.as_ref(), "server.tls_listen");
        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert_file: self.path(cert), key_file: self.path(key) }),
            (Some(given), None) => self.missing(given, "server.tls_cert_file", "server.tls_key_file"),
            (None, Some(given)) => self.missing(given, "server.tls_key_file", "server.tls_cert_file"),
            (None, None) => None,
        };
        if let Some(list) = raw.tls_listen.as_ref().filter(|l| !l.get_ref().is_empty() && tls.is_none()) {
            self.err(list, "server.tls_listen", "needs server.tls_cert_file and server.tls_key_file");
        }
        let rrl = raw.rrl.and_then(|r| self.rrl(r));
        let admin_tls = match (&raw.admin_tls_cert_file, &raw.admin_tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert_file: self.path(cert), key_file: self.path(key) }),
            (Some(given), None) => self.missing(given, "server.admin_tls_cert_file", "server.admin_tls_key_file"),
            (None, Some(given)) => self.missing(given, "server.admin_tls_key_file", "server.admin_tls_cert_file"),
            (None, None) => None,
        };
        let mut admin_hosts = Vec::new();
        for host in raw.admin_hosts.as_ref().map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            let name = host.get_ref().trim_end_matches('.').to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if valid {
                admin_hosts.push(name);
            } else {
                self.err(host, "server.admin_hosts", "must be a host name such as \"steerdns.internal\" (no port)");
            }
        }
        ServerConfig {
            listen,
            admin_listen,
            admin_token,
            registration_token,
            identity,
            udp_workers,
            dnssec_signatures_per_second,
            tcp_idle_timeout,
            tcp_max_connections,
            tcp_max_connections_per_client,
            shutdown_timeout,
            startup_wait,
            tls_listen,
            tls,
            admin_hosts,
            admin_tls,
            rrl,
        }
    }

    fn addresses(&mut self, list: Option<&S<Vec<S<String>>>>, key: &str) -> Vec<SocketAddr> {
        let mut addresses = Vec::new();
        for item in list.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            match item.get_ref().parse::<SocketAddr>() {
                Ok(addr) if addresses.contains(&addr) => self.err(item, key, "is listed twice"),
                Ok(addr) => addresses.push(addr),
                Err(_) => self.err(item, key, "must be IP:PORT, e.g. \"127.0.0.1:853\" or \"[::1]:853\""),
            }
        }
        addresses
    }

    fn missing<T>(&mut self, given: &S<String>, key: &str, other: &str) -> Option<T> {
        self.err(given, key, format!("needs {other} too"));
        None
    }

    fn rrl(&mut self, raw: RawRrl) -> Option<RrlConfig> {
        let int = |v: &mut Self, value: &Option<S<i64>>, key: &str, min: i64, max: i64, default: i64| {
            value.as_ref().map_or(default, |n| v.int(n, &format!("server.rrl.{key}"), min, max))
        };
        let rate = int(self, &raw.responses_per_second, "responses_per_second", 0, 1_000_000, 0) as u32;
        let slip = int(self, &raw.slip, "slip", 0, 10, defaults::RRL_SLIP.into()) as u32;
        let ipv4_prefix = int(self, &raw.ipv4_prefix, "ipv4_prefix", 8, 32, defaults::RRL_IPV4_PREFIX.into()) as u8;
        let ipv6_prefix = int(self, &raw.ipv6_prefix, "ipv6_prefix", 16, 128, defaults::RRL_IPV6_PREFIX.into()) as u8;
        let table_size =
            int(self, &raw.table_size, "table_size", 1_000, 100_000_000, defaults::RRL_TABLE_SIZE as i64) as usize;
        let window = self.duration(raw.window.as_ref(), "server.rrl.window", defaults::RRL_WINDOW);
        if let Some(w) = raw.window.as_ref().filter(|_| window > Duration::from_secs(3600)) {
            self.err(w, "server.rrl.window", "must be at most 1h");
        }
        let exempt = raw
            .exempt
            .as_ref()
            .map(|l| l.get_ref().iter().filter_map(|n| self.network(n, "server.rrl.exempt")).collect())
            .unwrap_or_default();
        (rate > 0).then_some(RrlConfig {
            responses_per_second: rate,
            slip,
            ipv4_prefix,
            ipv6_prefix,
            exempt,
            table_size,
            window,
        })
    }

    /// Reads a token file: one token, surrounding whitespace trimmed, not empty.
    pub(super) fn token(&mut self, file: &S<String>, key: &str) -> Option<String> {
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

    pub(super) fn log(&mut self, raw: RawLog) -> LogConfig {
        let format = self.word(raw.format.as_ref(), "log.format").unwrap_or(LogFormat::Text);
        let level = match &raw.level {
            // a bare word is a level (the filter syntax would take it for a module name)
            Some(level)
                if tracing_subscriber::EnvFilter::try_new(level.get_ref()).is_err()
                    || (!level.get_ref().contains(['=', ','])
                        && !["off", "error", "warn", "info", "debug", "trace"].contains(&level.get_ref().as_str())) =>
            {
                self.err(
                    level,
                    "log.level",
                    "must be a level (error, warn, info, debug, trace) or tracing filter directives",
                );
                LogConfig::default().level
            }
            Some(level) => level.get_ref().clone(),
            None => LogConfig::default().level,
        };
        LogConfig { format, level }
    }

    /// Where a state file goes when `store.path` is not given (SPEC §2): in
    /// `$STATE_DIRECTORY` when systemd sets it (the first, if it lists several), else
    /// `relative` to the config's directory. An old file beside the config, with
    /// none in `$STATE_DIRECTORY` yet, is used where it is, with a warning.
    fn default_state_file(&mut self, relative: &str) -> PathBuf {
        let beside = self.base.join(relative);
        let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) else { return beside };
        let dir = PathBuf::from(dir.to_string_lossy().split(':').next().unwrap_or_default());
        let there = dir.join(Path::new(relative).file_name().unwrap_or_default());
        // the file store starts with its journal (PATH.journal) and no snapshot
        let exists = |p: &Path| p.exists() || PathBuf::from(format!("{}.journal", p.display())).exists();
        if exists(&beside) && !exists(&there) {
            self.notes.push(format!(
                "store: using the old state file {} beside the config; move it to {} ($STATE_DIRECTORY)",
                beside.display(),
                there.display()
            ));
            return beside;
        }
        there
    }

    /// `[health]`: `share` needs the etcd store; `probe_source` works with any.
    pub(super) fn health(&mut self, raw: RawHealth, store: &StoreConfig) -> HealthConfig {
        let defaults = HealthConfig::default();
        let probe_source = raw.probe_source.as_ref().and_then(|a| self.unicast(a, "health.probe_source"));
        let share = raw.share.as_ref().is_some_and(|s| *s.get_ref());
        if let Some(s) = raw.share.as_ref().filter(|_| share && !matches!(store, StoreConfig::Etcd(_))) {
            self.err(
                s,
                "health.share",
                "needs the etcd store ([store] backend = \"etcd\"): nodes share probes through it",
            );
        }
        let probers_per_target = raw
            .probers_per_target
            .as_ref()
            .map_or(defaults.probers_per_target, |p| self.int(p, "health.probers_per_target", 0, 100) as usize);
        let node_lease_ttl =
            self.duration(raw.node_lease_ttl.as_ref(), "health.node_lease_ttl", defaults.node_lease_ttl);
        if let Some(t) = raw.node_lease_ttl.as_ref().filter(|_| !(2..=3600).contains(&node_lease_ttl.as_secs())) {
            self.err(t, "health.node_lease_ttl", "must be 2 s to 1 h (etcd leases count whole seconds)");
        }
        HealthConfig { probe_source, share, probers_per_target, node_lease_ttl }
    }

    pub(super) fn store(&mut self, raw: RawStore) -> StoreConfig {
        let backend = raw.backend.as_ref().map_or(defaults::STORE_BACKEND, |b| b.get_ref().as_str()).to_string();
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
                path: match raw.path.as_ref() {
                    Some(p) => self.path(p),
                    None => self.default_state_file(defaults::STORE_PATH),
                },
            },
            "etcd" => StoreConfig::Etcd(self.etcd(raw)),
            _ => {
                let b = raw.backend.as_ref().expect("only a given backend can be unknown");
                self.err(b, "store.backend", "must be \"file\", \"memory\" or \"etcd\"");
                StoreConfig::Memory
            }
        }
    }

    pub(super) fn etcd(&mut self, raw: RawStore) -> EtcdConfig {
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
        let prefix = raw.prefix.as_ref().map_or(defaults::ETCD_PREFIX.to_string(), |p| p.get_ref().clone());
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
            copy: match raw.path.as_ref() {
                Some(p) => self.path(p),
                None => self.default_state_file(defaults::ETCD_COPY_PATH),
            },
        }
    }
}

/// The machine's host name, the default `identity`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 255)
        .unwrap_or_else(|| "steerdns".to_string())
}
