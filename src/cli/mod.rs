//! The `steerdns` command line: `serve` and `check` here, the admin API's clients
//! (`status`, `state`, `reload`) in `client`.

mod client;

use crate::app::App;
use crate::config::{LogConfig, LogFormat};
use crate::loaded::{self, Loaded};
use crate::server::Listeners;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// `--version`: the version, the commit and the cargo features built in.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STEERDNS_COMMIT"),
    ", features: ",
    env!("STEERDNS_FEATURES"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "steerdns", version = VERSION, about = "Authoritative DNS load balancer")]
pub struct Cli {
    #[command(flatten)]
    pub admin: client::Admin,
    #[command(subcommand)]
    pub command: Command,
}

/// The config file: `-c`/`--config`, else `STEERDNS_CONFIG`, else the packaged path.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(
        short = 'c',
        long,
        env = "STEERDNS_CONFIG",
        default_value = "/etc/steerdns/steerdns.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server in the foreground; SIGTERM stops it.
    Serve(ConfigArg),
    /// Validate the config and every file it names; exit 0, or print every error and exit 1.
    Check(ConfigArg),
    /// Show every service and target with its health and admin state.
    Status {
        /// Redraw every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Print the API's JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Set a target's admin state (kept across restarts).
    State {
        /// The service's name.
        service: String,
        /// The target's address.
        address: String,
        /// auto: health decides; drain: out of the answers; up, down: whatever the probes say.
        state: client::StateArg,
        /// Set it even when the address is no target of the service (yet).
        #[arg(long)]
        force: bool,
    },
    /// Why a client gets the answer it gets: every stage, from zone to TTL.
    Explain {
        /// The name asked.
        name: String,
        /// The query type.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// The client subnet, sent as ECS (IP or IP/LEN).
        #[arg(long)]
        client: Option<String>,
        /// The query's source address (default 127.0.0.1).
        #[arg(long)]
        source: Option<String>,
        /// Print the API's JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Announce a target: register, renew at a third of the TTL, and on SIGTERM or
    /// Ctrl-C deregister, wait --linger (default: the service's TTL) and exit.
    Register(client::RegisterArgs),
    /// Re-read the config and every file it names; on errors the running config stays.
    Reload,
    /// DNSSEC keys: make one, print the DS records to give the parent zone.
    #[command(subcommand)]
    Dnssec(DnssecCommand),
    /// Write the man page (steerdns.1) and the bash, zsh and fish completions into DIR
    /// (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Where to write them.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DnssecCommand {
    /// Make a signing key for ZONE in BIND's key-file format (K<zone>+<alg>+<tag>.key
    /// and .private) and print its DS record.
    Keygen {
        /// The zone, e.g. lb.example.
        zone: String,
        /// The key's algorithm.
        #[arg(long, value_enum, default_value = "ecdsap256")]
        algorithm: KeyAlgorithm,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the DS record (SHA-256) of every key of every signed zone in the config.
    Ds(ConfigArg),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256 (algorithm 13).
    Ecdsap256,
    /// Ed25519 (algorithm 15).
    Ed25519,
}

/// `dnssec keygen` and `dnssec ds`.
fn dnssec(command: DnssecCommand) -> anyhow::Result<()> {
    match command {
        DnssecCommand::Keygen { zone, algorithm, dir } => {
            let absolute = if zone.ends_with('.') { zone.clone() } else { format!("{zone}.") };
            let origin = hickory_proto::rr::Name::from_ascii(&absolute)
                .map_err(|e| anyhow::anyhow!("{zone}: not a domain name: {e}"))?
                .to_lowercase();
            let algorithm = match algorithm {
                KeyAlgorithm::Ecdsap256 => crate::dnssec::ECDSAP256,
                KeyAlgorithm::Ed25519 => crate::dnssec::ED25519,
            };
            let key = crate::dnssec::generate(&origin, algorithm, &dir).map_err(anyhow::Error::msg)?;
            eprintln!("wrote {} and its .key", key.file.display());
            client::emit(&format!("{}\n", key.ds_text(&origin)));
        }
        DnssecCommand::Ds(ConfigArg { config }) => {
            let loaded = load(&config)?;
            let mut out = String::new();
            for zone in loaded.zones.iter() {
                for key in zone.keys().map(|k| &k.keys[..]).unwrap_or_default() {
                    out.push_str(&key.ds_text(zone.origin()));
                    out.push('\n');
                }
            }
            if out.is_empty() {
                anyhow::bail!("{}: no zone has dnssec_keys", config.display());
            }
            client::emit(&out);
        }
    }
    Ok(())
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets logging up from its config's [log]; the other commands log as text
    let _logging = (!matches!(cli.command, Command::Serve(_))).then(|| init_tracing(&LogConfig::default()));
    let api = cli.admin.resolve();
    let result = match cli.command {
        Command::Check(ConfigArg { config }) => check(&config),
        Command::Serve(ConfigArg { config }) => serve(&config),
        Command::Status { watch, json } => api.and_then(|a| client::status(&a, watch, json)),
        Command::State { service, address, state, force } => {
            api.and_then(|a| client::state(&a, &service, &address, state, force))
        }
        Command::Reload => api.and_then(|a| client::reload(&a)),
        Command::GenerateDocs { dir } => generate_docs(&dir),
        Command::Dnssec(command) => dnssec(command),
        Command::Register(args) => api.and_then(|a| client::register(&args, &a)),
        Command::Explain { name, qtype, client: subnet, source, json } => {
            api.and_then(|a| client::explain(&a, &name, &qtype, subnet.as_deref(), source.as_deref(), json))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr as `log` says (SPEC §2 `[log]`; `STEERDNS_LOG` overrides the level)
/// through a lossy, non-blocking writer: logging never blocks a task or panics (a
/// closed or full stderr loses lines, counted in `steerdns_log_lines_dropped_total`).
/// Colour on a terminal only; one line an event. Keep the guard: dropping it flushes.
fn init_tracing(log: &LogConfig) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEERDNS_LOG")
        .unwrap_or_else(|_| format!("{},hickory_proto=warn", log.level).into());
    let (writer, guard) =
        tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(true).finish(Quiet(std::io::stderr()));
    crate::metrics::count_log_drops(writer.error_counter());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match log.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    guard
}

/// A writer whose errors are dropped: a log line that cannot be written is lost, and
/// nothing downstream of it fails. A message that spans lines (a reload's list of
/// errors) is kept on one: its inner line breaks are written as `\n`.
struct Quiet<W>(W);

impl<W: std::io::Write> std::io::Write for Quiet<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let flattened;
        let out = if line.contains(&b'\n') {
            let mut one = Vec::with_capacity(bytes.len() + 16);
            for &b in line {
                if b == b'\n' { one.extend_from_slice(b"\\n") } else { one.push(b) }
            }
            one.push(b'\n');
            flattened = one;
            &flattened[..]
        } else {
            bytes
        };
        if self.0.write_all(out).is_err() {
            crate::metrics::LOG_LINES_UNWRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// The man page and the shell completions, from the command line's own definition.
fn generate_docs(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    std::fs::write(dir.join("steerdns.1"), page)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "steerdns", dir)?;
    }
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<Loaded> {
    let loaded = loaded::load(path)
        .map_err(|errors| anyhow::anyhow!("{errors}\n{} error(s); nothing started", errors.0.len()))?;
    Ok(loaded)
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let loaded = load(path)?;
    for warning in loaded.config.warnings() {
        eprintln!("{}: warning: {warning}", path.display());
    }
    client::emit(&format!(
        "{}: ok ({} zone(s), {} service(s))\n",
        path.display(),
        loaded.config.zones.len(),
        loaded.config.services.len()
    ));
    Ok(())
}

fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    crate::supervise::install_panic_hook();
    crate::sys::one_heap_arena();
    let loaded = load(path)?;
    let _logging = init_tracing(&loaded.config.log);
    let server = &loaded.config.server;
    let listeners = Listeners::bind(&server.listen, server.udp_workers)?
        .with_tls(&server.tls_listen)?
        .with_admin(server.admin_listen)?;
    for warning in loaded.config.warnings() {
        tracing::warn!("{warning}");
    }
    let admin = listeners.admin_addr();
    let scheme = if server.admin_tls.is_some() { "https" } else { "http" };
    tracing::info!(
        version = VERSION,
        config = %path.display(),
        zones = %loaded.zones.summary(),
        services = loaded.config.services.len(),
        targets = loaded.config.services.iter().map(|s| s.targets.len()).sum::<usize>(),
        store = match &loaded.config.store {
            crate::config::StoreConfig::Memory => "memory".to_string(),
            crate::config::StoreConfig::File { path } => format!("file {}", path.display()),
            crate::config::StoreConfig::Etcd(etcd) => format!("etcd {}", etcd.endpoints.join(",")),
        },
        "steerdns starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let path = path.to_path_buf();
    let served = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let app = App::new(loaded)?.exit_on_hang();
        // the handlers are in place before the addresses are logged: a SIGTERM sent on
        // seeing them stops the server cleanly (a spawned task may not have run yet)
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (signal(SignalKind::terminate())?, signal(SignalKind::hangup())?);
        tokio::spawn(signals(shutdown.clone(), app.handle(), path, handlers));
        if let Some(admin) = admin {
            tracing::info!("admin API on {scheme}://{admin}");
        }
        for address in listeners.local_addrs() {
            tracing::info!("serving DNS on {address} (UDP and TCP)");
        }
        for address in listeners.tls_addrs() {
            tracing::info!("serving DNS over TLS on {address}");
        }
        app.run(listeners, shutdown).await?;
        anyhow::Ok(())
    });
    // run() has kept to shutdown_timeout; a task that never yields (a hung owner) must
    // not hold the exit
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    served
}

/// SIGHUP reloads; SIGTERM or Ctrl-C cancels `shutdown`.
async fn signals(
    shutdown: CancellationToken,
    state: crate::state::StateHandle,
    path: PathBuf,
    (mut term, mut hangup): (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
) {
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => drop(state.reload_file(&path, "SIGHUP").await),
        }
    }
    shutdown.cancel();
}
