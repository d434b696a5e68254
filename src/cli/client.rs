//! The admin API's clients: `status` (a table, `--watch`, `--json`), `state`, `reload`.
//! They talk HTTP only.

use crate::api::{AdminState, ErrorBody, Explanation, RegistrationRequest, StateRequest, Status, TargetStatus};
use anyhow::{Context, bail};
use comfy_table::{Cell, Color, Table, presets};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

/// Where the admin API is, and its token: options of every command (SPEC §3).
#[derive(Debug, clap::Args)]
pub struct Admin {
    /// The admin API, as a URL (http:// or https://) or HOST:PORT; `register` takes
    /// several and renews through the first that answers.
    #[arg(
        long = "admin",
        global = true,
        env = "STEERDNS_ADMIN",
        default_value = "http://127.0.0.1:8053",
        value_name = "URL"
    )]
    pub urls: Vec<String>,
    /// The admin API's bearer token (for changes, and for every call when the server
    /// sets admin_token_file).
    #[arg(long, global = true, env = "STEERDNS_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// A file whose first line is the token, instead of --token.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,
    /// For an https:// admin URL: the PEM certificate (or CA) to trust beside the
    /// system's, e.g. the admin API's own self-signed admin_tls_cert_file.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// The admin API to call: its URLs with their scheme, the token, and a certificate
/// to trust.
#[derive(Debug)]
pub struct Api {
    pub urls: Vec<String>,
    pub token: Option<String>,
    pub ca: Option<reqwest::Certificate>,
}

impl Admin {
    /// The URLs as given (HOST:PORT made http://HOST:PORT) and the token, read from its
    /// file when --token-file names one.
    pub fn resolve(&self) -> anyhow::Result<Api> {
        let urls = self
            .urls
            .iter()
            .map(|u| if u.contains("://") { u.trim_end_matches('/').to_string() } else { format!("http://{u}") })
            .collect();
        let token = match &self.token_file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("--token-file {}: cannot read it", file.display()))?;
                Some(text.lines().next().unwrap_or_default().trim().to_string())
            }
            None => self.token.clone(),
        };
        let ca = match &self.ca_file {
            Some(file) => {
                let pem =
                    std::fs::read(file).with_context(|| format!("--ca-file {}: cannot read it", file.display()))?;
                let certificate = reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("--ca-file {}: not a PEM certificate", file.display()))?;
                Some(certificate)
            }
            None => None,
        };
        Ok(Api { urls, token, ca })
    }
}

impl Api {
    fn url(&self) -> &str {
        self.urls.first().map_or("http://127.0.0.1:8053", String::as_str)
    }

    /// An HTTP client for the admin API: no proxy, `timeout`, the --ca-file trusted.
    fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().no_proxy().timeout(timeout);
        if let Some(ca) = &self.ca {
            builder = builder.add_root_certificate(ca.clone());
        }
        Ok(builder.build()?)
    }
}

/// Writes `text` to stdout; a closed pipe (`steerdns status | head`) ends the process
/// quietly, with status 0 (SPEC §3).
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("steerdns: cannot write the output: {e}");
        std::process::exit(1);
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    Auto,
    Drain,
    Up,
    Down,
}

/// Sends one request; an unreachable server is one clear line.
fn call(
    admin: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<&impl serde::Serialize>,
) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let url = format!("{}{path}", admin.url());
    crate::health::install_crypto_provider();
    runtime.block_on(async {
        let client = admin.client(Duration::from_secs(10))?;
        let mut request = client.request(method, &url);
        if let Some(token) = &admin.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the steerdns admin API at {}: {}", admin.url(), short(&e)))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            let error: Option<ErrorBody> = serde_json::from_str(&text).ok();
            match error {
                Some(e) if e.errors.is_empty() => bail!("{status}: {}", e.error),
                Some(e) => bail!("{status}: {}\n{}", e.error, e.errors.join("\n")),
                None => bail!("{status}: {text}"),
            }
        }
        Ok(text)
    })
}

/// The innermost cause: "Connection refused (os error 111)", not reqwest's whole chain.
fn short(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Sets a target's admin state. An address that is no target of the service is
/// refused unless `force` (the API keeps a state for a target yet to come, so a typo
/// would be kept silently); taking out the last target answered is done, with a
/// warning.
pub fn state(admin: &Api, service: &str, address: &str, state: StateArg, force: bool) -> anyhow::Result<()> {
    let state = match state {
        StateArg::Auto => AdminState::Auto,
        StateArg::Drain => AdminState::Drain,
        StateArg::Up => AdminState::Up,
        StateArg::Down => AdminState::Down,
    };
    let ip: std::net::IpAddr = address.parse().with_context(|| format!("{address:?} is not an IP address"))?;
    let status: Status = serde_json::from_str(&call(admin, reqwest::Method::GET, "/v1/status", None::<&()>)?)
        .context("the status document")?;
    let wanted = service.trim_end_matches('.').to_ascii_lowercase();
    let known = status.services.iter().find(|s| s.name.trim_end_matches('.').eq_ignore_ascii_case(&wanted));
    if let Some(known) = known {
        let canonical = |a: std::net::IpAddr| a.to_canonical();
        let target = known.targets.iter().find(|t| canonical(t.address) == canonical(ip));
        if target.is_none() && !force {
            let targets: Vec<String> = known.targets.iter().map(|t| t.address.to_string()).collect();
            bail!(
                "{address} is no target of {} (its targets: {}); --force keeps the state for a target yet to come",
                known.name,
                if targets.is_empty() { "none".into() } else { targets.join(", ") }
            );
        }
        let answered: Vec<_> = known.targets.iter().filter(|t| t.answered).collect();
        if matches!(state, AdminState::Drain | AdminState::Down)
            && answered.len() == 1
            && target.is_some_and(|t| t.answered)
        {
            eprintln!(
                "steerdns state: warning: {address} is the last target {} answers; its clients get what fail-open or \
                 the policy gives them next",
                known.name
            );
        }
    }
    let path = format!("/v1/services/{service}/targets/{address}/state");
    call(admin, reqwest::Method::PUT, &path, Some(&StateRequest { state }))?;
    emit(&format!("{service} {address}: {state}\n"));
    Ok(())
}

pub fn reload(admin: &Api) -> anyhow::Result<()> {
    call(admin, reqwest::Method::POST, "/v1/reload", None::<&()>)?;
    emit("reloaded\n");
    Ok(())
}

/// The status once, or with `watch` redrawn every second until Ctrl-C: a server that
/// cannot be reached (restarting, say) leaves its last picture on the screen under
/// the error, and the dashboard keeps asking.
pub fn status(admin: &Api, watch: bool, json: bool) -> anyhow::Result<()> {
    let colour = std::io::stdout().is_terminal();
    let mut last: Option<(Status, SystemTime)> = None;
    loop {
        let fetched = call(admin, reqwest::Method::GET, "/v1/status", None::<&()>);
        let text = match fetched {
            Ok(text) => text,
            Err(e) if watch => {
                let since = last.as_ref().map_or("-".to_string(), |(_, at)| format!("{} ago", ago(unix(*at))));
                let banner = format!("{} unreachable: {e:#}; retrying (last picture: {since})", admin.url());
                let banner = if colour { format!("\x1b[1;31m{banner}\x1b[0m") } else { banner };
                let picture = last.as_ref().map(|(s, _)| render(s, false)).unwrap_or_default();
                // the old picture greyed out
                let picture = if colour { format!("\x1b[2m{picture}\x1b[0m") } else { picture };
                emit(&format!("\x1b[2J\x1b[H{banner}\n\n{picture}"));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(e) => return Err(e),
        };
        if json {
            emit(&format!("{text}\n"));
        } else {
            let status: Status = serde_json::from_str(&text).context("the status document")?;
            // with --watch: clear the screen and go home, then redraw in place
            let home = if watch { "\x1b[2J\x1b[H" } else { "" };
            let header = header(&status, admin.url(), colour);
            let picture = format!("{header}{}", render(&status, colour));
            let picture = if watch && colour { fit_height(&picture) } else { picture };
            emit(&format!("{home}{picture}"));
            last = Some((status, SystemTime::now()));
        }
        if !watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A redrawn picture cut to the terminal's height, so that it never scrolls: the
/// header (and any FAILING OPEN line) stays on top, and the last line says what is
/// left out.
fn fit_height(picture: &str) -> String {
    let Ok((_, rows)) = crossterm::terminal::size() else { return picture.to_string() };
    let lines: Vec<&str> = picture.lines().collect();
    let rows = usize::from(rows).max(3);
    if lines.len() < rows {
        return picture.to_string();
    }
    let kept = rows - 2;
    let mut out = lines[..kept].join("\n");
    out.push_str(&format!("\n… {} more lines: a taller terminal, or `steerdns status | less`\n", lines.len() - kept));
    out
}

/// The dashboard's first lines: which server, when, and whether anything is failing.
fn header(status: &Status, url: &str, colour: bool) -> String {
    let now = humantime::format_rfc3339_seconds(SystemTime::now());
    let store = if status.store.up { "up" } else { "DOWN" };
    let failing: Vec<&str> = status.services.iter().filter(|s| s.failing_open).map(|s| s.name.as_str()).collect();
    let mut out = format!(
        "steerdns {} {} at {url}  {now}  store {} {store}\n",
        status.identity, status.version, status.store.backend
    );
    if !failing.is_empty() {
        let line = format!("FAILING OPEN (every candidate down, all answered): {}", failing.join(", "));
        out.push_str(&if colour { format!("\x1b[1;31m{line}\x1b[0m\n") } else { format!("{line}\n") });
    }
    out.push('\n');
    out
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// "config", or a registration's lease as far as it is known (short: the table fits
/// 80 columns).
fn origin(origin: &str, expires_at: Option<f64>) -> String {
    match expires_at {
        Some(at) => format!("lease {}", ago(2.0 * now() - at)),
        // a lease renewed through another steerdns node: etcd knows its expiry
        None if origin == "registration" => "lease (etcd)".into(),
        None => origin.to_string(),
    }
}

/// The status as a person reads it: a line per service, a table of its targets.
pub fn render(status: &Status, colour: bool) -> String {
    let mut out = String::new();
    if !status.store.up {
        let why = status.store.error.as_deref().unwrap_or("unknown");
        let known = match status.store.copy_saved_at {
            Some(at) => format!("its copy saved {} ago", ago(at)),
            None => "the last known state".into(),
        };
        out.push_str(&format!(
            "store {} unavailable ({why}): answering from {known}; changes are refused\n\n",
            status.store.backend
        ));
    }
    for service in &status.services {
        let drained = service.targets.iter().filter(|t| t.admin == AdminState::Drain).count();
        let mut line = format!(
            "{}  {} {}  check {}  answering {} of {}",
            service.name,
            service.policy,
            service.order,
            service.check.as_deref().unwrap_or("-"),
            service.answered,
            service.targets.len()
        );
        if !service.answered_by_region.is_empty() {
            let regions: Vec<String> = service.answered_by_region.iter().map(|(r, n)| format!("{r} {n}")).collect();
            line.push_str(&format!(" (by region: {})", regions.join(", ")));
        }
        if drained > 0 {
            line.push_str(&format!(", {drained} drained"));
        }
        if let Some(pattern) = &service.template {
            line.push_str(&format!(", made by template {pattern}"));
        }
        if service.failing_open {
            let failing = "  FAILING OPEN";
            line.push_str(&if colour { format!("\x1b[1;31m{failing}\x1b[0m") } else { failing.into() });
        }
        out.push_str(&format!("{line}\n"));
        let mut table = Table::new();
        table.load_preset(presets::UTF8_BORDERS_ONLY);
        // the terminal's width, or 80 columns in a pipe: long cells wrap
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        if !colour {
            table.force_no_tty();
            table.set_width(80);
        }
        // columns that would say nothing for this service are left out, so that a
        // table fits 80 columns
        let region = service.targets.iter().any(|t| t.region.is_some());
        let failure = service.targets.iter().any(|t| t.last_failure.is_some());
        let reported = service.targets.iter().any(|t| t.reported.is_some());
        let keep = |column: &str| match column {
            "region" => region,
            "last failure" => failure,
            "report" => reported,
            _ => true,
        };
        let columns = [
            "target",
            "origin",
            "region",
            "health",
            "admin",
            "report",
            "ans",
            "latency",
            "p/f",
            "changed",
            "last failure",
        ];
        table.set_header(columns.iter().filter(|c| keep(c)).copied().collect::<Vec<_>>());
        for t in &service.targets {
            let cells = row(t, colour).into_iter().zip(columns).filter(|(_, c)| keep(c)).map(|(cell, _)| cell);
            table.add_row(cells.collect::<Vec<_>>());
        }
        out.push_str(&format!("{table}\n\n"));
    }
    if !status.unmatched_states.is_empty() {
        out.push_str("stored states that match no target:\n");
        for s in &status.unmatched_states {
            out.push_str(&format!("  {} {}: {}\n", s.service, s.address, s.state));
        }
    }
    out
}

fn row(t: &TargetStatus, colour: bool) -> Vec<Cell> {
    let health = Cell::new(&t.health);
    let health = match (colour, t.health.as_str()) {
        (true, "up") => health.fg(Color::Green),
        (true, "down") => health.fg(Color::Red),
        (true, _) => health.fg(Color::Yellow),
        (false, _) => health,
    };
    let latency = t.last_probe.as_ref().map_or("-".into(), |p| format!("{:.1} ms", p.latency_ms));
    let changed = t.last_change.as_ref().map_or("-".into(), |c| format!("{} ago ({} → {})", ago(c.at), c.from, c.to));
    let origin = origin(&t.origin, t.expires_at);
    let admin = Cell::new(t.admin);
    let admin = match (colour, t.admin) {
        (true, AdminState::Drain) => admin.fg(Color::Yellow),
        (true, AdminState::Down) => admin.fg(Color::Red),
        (true, AdminState::Up) => admin.fg(Color::Cyan),
        _ => admin,
    };
    vec![
        Cell::new(t.address),
        Cell::new(origin),
        Cell::new(t.region.as_deref().unwrap_or("-")),
        health,
        admin,
        Cell::new(match &t.reported {
            Some(r) => format!("{r} (weight {})", t.effective_weight),
            None => "-".into(),
        }),
        Cell::new(if t.answered { "yes" } else { "no" }),
        Cell::new(latency),
        Cell::new(format!("{}/{}", t.passes, t.fails)),
        Cell::new(changed),
        Cell::new(t.last_failure.as_deref().unwrap_or("-")),
    ]
}

fn now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// How long ago `at` (Unix seconds) was, briefly.
fn ago(at: f64) -> String {
    let seconds = (now() - at).max(0.0) as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{}s", seconds / 60, seconds % 60),
        _ => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
    }
}

pub fn explain(
    admin: &Api,
    name: &str,
    qtype: &str,
    client: Option<&str>,
    source: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let mut query = format!("/v1/explain?name={}&type={}", encode(name), encode(qtype));
    if let Some(c) = client {
        query.push_str(&format!("&client={}", encode(c)));
    }
    if let Some(s) = source {
        query.push_str(&format!("&source={}", encode(s)));
    }
    let text = call(admin, reqwest::Method::GET, &query, None::<&()>)?;
    if json {
        emit(&format!("{text}\n"));
    } else {
        let explanation: Explanation = serde_json::from_str(&text).context("the explanation")?;
        emit(&render_explanation(&explanation));
    }
    Ok(())
}

/// Percent-encodes a query value (names, addresses and prefixes need little).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An explanation as a person reads it: indented, stage by stage.
pub fn render_explanation(e: &Explanation) -> String {
    let mut out = format!("{} {}", e.name, e.qtype);
    if let Some(subnet) = &e.client_subnet {
        out.push_str(&format!(" for client subnet {subnet}"));
    }
    if let Some(source) = e.source {
        out.push_str(&format!(" (query from {source})"));
    }
    out.push('\n');
    for step in &e.steps {
        out.push_str(&format!("  {step}\n"));
    }
    if let Some(s) = &e.service {
        out.push_str(&format!("service {}: policy {}, order {}, {}\n", s.name, s.policy, s.order, s.family));
        if let Some(address) = s.client_address {
            out.push_str(&format!("  client address {address}\n"));
        }
        if let Some(r) = &s.region {
            out.push_str(&format!("  region {}, decided by {} (block /{})\n", r.name, r.decided_by, r.scope));
        }
        out.push_str("  candidates:\n");
        for c in &s.candidates {
            let address = c.address.map_or("-".into(), |a| a.to_string());
            let health = c.health.as_deref().unwrap_or(if c.healthy { "healthy" } else { "down" });
            let since = c.since.map_or(String::new(), |at| format!(" for {}", ago(at)));
            let failure = c.last_failure.as_ref().map_or(String::new(), |f| format!(", last failure: {f}"));
            let origin = c.origin.as_deref().map_or(String::new(), |o| format!(", {}", origin(o, c.expires_at)));
            let weight = match &c.reported {
                Some(r) => format!("{} (reports {r}: {})", c.weight, c.effective_weight),
                None => c.weight.to_string(),
            };
            let probers: Vec<String> = c
                .probers
                .iter()
                .map(|p| {
                    let counted = if p.counted { "" } else { " (not counted)" };
                    format!("{} {}{counted}", p.node, p.verdict.as_deref().unwrap_or("nothing published"))
                })
                .collect();
            let probers =
                if probers.is_empty() { String::new() } else { format!("\n      probers: {}", probers.join("; ")) };
            out.push_str(&format!(
                "    {address:<16} {health}{since}, admin {}, region {}, weight {weight}, priority {}{origin}{failure}{probers}\n      → {}\n",
                c.admin.as_deref().unwrap_or("auto"),
                c.region.as_deref().unwrap_or("-"),
                c.priority,
                c.why
            ));
        }
        out.push_str("  policy:\n");
        for step in &s.policy_steps {
            out.push_str(&format!("    {step}\n"));
        }
        out.push_str(&format!("  order: {}\n  cap: max_answers {}\n", s.order_note, s.max_answers));
        out.push_str(&format!("  TTL {}{}\n", s.ttl, s.ttl_note.as_ref().map_or(String::new(), |n| format!(" ({n})"))));
    }
    let a = &e.answer;
    out.push_str(&format!("answer: {}{}", a.rcode, if a.authoritative { ", authoritative" } else { "" }));
    if let Some(scope) = a.ecs_scope {
        out.push_str(&format!(", ECS scope /{scope}"));
    }
    out.push('\n');
    for record in &a.records {
        out.push_str(&format!("  {record}\n"));
    }
    out
}

/// `steerdns register`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// The service to join.
    pub service: String,
    /// This backend's address.
    pub address: std::net::IpAddr,
    /// The lease; renewed at a third of it.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The region this backend serves (gslb).
    #[arg(long)]
    pub region: Option<String>,
    /// Its weight, 0–1000 (weighted and sticky orders).
    #[arg(long)]
    pub weight: Option<u32>,
    /// Its priority group (failover; lower first).
    #[arg(long)]
    pub priority: Option<u8>,
    /// Probe this address instead of the registered one.
    #[arg(long)]
    pub check_address: Option<std::net::IpAddr>,
    /// How long to wait after deregistering (default: the service's TTL, so resolver
    /// caches drain first).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub linger: Option<Duration>,
}

/// An answer from one admin API: the reply, a refusal that will not change (exit), or
/// no answer (try the next, retry later).
enum Outcome<T> {
    Done(T),
    Refused(String),
    Unreachable(String),
}

pub fn register(args: &RegisterArgs, api: &Api) -> anyhow::Result<()> {
    crate::health::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_registration(args, api))
}

async fn run_registration(args: &RegisterArgs, api: &Api) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let client = api.client(Duration::from_secs(5))?;
    let body = RegistrationRequest {
        address: args.address,
        ttl_seconds: args.ttl.as_secs().max(1),
        region: args.region.clone(),
        weight: args.weight,
        priority: args.priority,
        check_address: args.check_address,
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut service_ttl = None;
    let mut unreachable = false;
    loop {
        let wait = match post_first(&client, args, api, &body).await {
            Outcome::Done(reply) => {
                if service_ttl.is_none() {
                    emit(&format!(
                        "registered {} in {}: a lease of {}, renewed every {}; the service's TTL is {} s\n",
                        args.address,
                        args.service,
                        humantime::format_duration(args.ttl),
                        humantime::format_duration(args.ttl / 3),
                        reply.service_ttl
                    ));
                }
                if unreachable {
                    eprintln!("steerdns register: the admin API answers again; registered");
                    unreachable = false;
                }
                service_ttl = Some(reply.service_ttl);
                args.ttl / 3
            }
            Outcome::Refused(e) => bail!("{e}"),
            Outcome::Unreachable(e) => {
                if !unreachable {
                    eprintln!("steerdns register: no admin API answers ({e}); retrying until one does");
                    unreachable = true;
                }
                (args.ttl / 3).min(Duration::from_secs(1))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    deregister(&client, args, api).await;
    let linger = args.linger.unwrap_or(Duration::from_secs(u64::from(service_ttl.unwrap_or(30))));
    tokio::time::sleep(linger).await;
    Ok(())
}

async fn post_first(
    client: &reqwest::Client,
    args: &RegisterArgs,
    api: &Api,
    body: &RegistrationRequest,
) -> Outcome<crate::api::RegistrationReply> {
    let mut last = String::new();
    for admin in &api.urls {
        let url = format!("{admin}/v1/services/{}/registrations", args.service);
        let mut request = client.post(&url).json(body);
        if let Some(token) = &api.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(reply) => return Outcome::Done(reply),
                Err(e) => last = format!("{admin}: {e}"),
            },
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let error = serde_json::from_str::<ErrorBody>(&text).map_or(text, |e| e.error);
                return Outcome::Refused(format!("{admin}: {status}: {error}"));
            }
            Ok(r) => last = format!("{admin}: {}", r.status()),
            Err(e) => last = format!("{admin}: {}", short(&e)),
        }
    }
    Outcome::Unreachable(last)
}

async fn deregister(client: &reqwest::Client, args: &RegisterArgs, api: &Api) {
    for admin in &api.urls {
        let url = format!("{admin}/v1/services/{}/registrations/{}", args.service, args.address);
        let mut request = client.delete(&url);
        if let Some(token) = &api.token {
            request = request.bearer_auth(token);
        }
        if request.send().await.is_ok_and(|r| r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND) {
            return;
        }
    }
    eprintln!("steerdns register: could not deregister {}; its lease will expire", args.address);
}
