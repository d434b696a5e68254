//! The `steerdns` binary as a user runs it: `check` and `serve` with SIGTERM.

use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_steerdns");

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn check_accepts_the_quickstart() {
    let out = Command::new(BIN).args(["check", "--config"]).arg(examples().join("quickstart.toml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_takes_a_bare_file_name_in_the_working_directory() {
    let dir = quickstart_dir();
    let out = Command::new(BIN).args(["check", "--config", "c.toml"]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_prints_every_error_with_its_location_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nudp_workers = 0\n\n[[services]]\nname = \"x.example.\"\nttl = -1\n").unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:2:15: server.udp_workers"), "{stderr}");
    assert!(stderr.contains("bad.toml:6:7: services[0].ttl"), "{stderr}");
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a broken config never starts a server");
}

#[test]
fn serve_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.example.zone"), ZONE).unwrap();
    let config = quickstart_config().edit("127.0.0.1:5353\"]", "127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"");
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path().join("c.toml"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        if let Some(rest) = line.split("serving DNS on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let r = udp_exchange(addr, &query("static.lb.example.", RecordType::A)).unwrap();
    assert_eq!(addresses(&r), ["127.0.0.80"]);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
}

#[test]
fn check_passes_the_reference_quietly_and_an_etcd_store_needs_its_feature() {
    let out = Command::new(BIN).args(["check", "--config"]).arg(examples().join("reference.toml")).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "every key of the reference is built: {stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etcd.toml");
    std::fs::write(&path, "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n").unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "etcd") {
        assert!(out.status.success(), "{stderr}");
    } else {
        assert!(!out.status.success());
        assert!(stderr.contains("etcd.toml:2:11: store.backend:") && stderr.contains("--features etcd"), "{stderr}");
    }
}

/// Runs the binary with `args` and its stdout a pipe whose reader is already gone.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BIN).args(args).stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

#[test]
fn commands_whose_output_pipe_closes_exit_quietly_with_0() {
    let s = TestServer::start(&quickstart_config());
    for args in [
        vec!["status", "--json", "--admin", &s.admin],
        vec!["status", "--admin", &s.admin],
        vec!["explain", "www.lb.example.", "--json", "--admin", &s.admin],
    ] {
        let out = with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    let out = with_closed_stdout(&["check", "--config", examples().join("quickstart.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn admin_takes_host_port_and_is_a_global_option_and_the_config_has_a_default() {
    let s = TestServer::start(&quickstart_config());
    let host_port = s.admin.trim_start_matches("http://");
    // before the subcommand, as HOST:PORT, and from the environment
    for (args, env) in
        [(vec!["--admin", host_port, "status", "--json"], None), (vec!["status", "--json"], Some(host_port))]
    {
        let mut command = Command::new(BIN);
        command.args(&args).env_remove("STEERDNS_ADMIN");
        if let Some(admin) = env {
            command.env("STEERDNS_ADMIN", admin);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"services\""), "{args:?}");
    }
    // -c, STEERDNS_CONFIG, and the packaged path when neither is given
    let quickstart = examples().join("quickstart.toml");
    let out = Command::new(BIN).args(["check", "-c"]).arg(&quickstart).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).arg("check").env("STEERDNS_CONFIG", &quickstart).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).arg("check").env_remove("STEERDNS_CONFIG").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("/etc/steerdns/steerdns.toml"), "{stderr}");
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with("steerdns 0.") && version.contains("commit ") && version.contains("features: "),
        "{version}"
    );
}

#[test]
fn state_refuses_an_address_that_is_no_target_unless_forced_and_warns_on_the_last_one() {
    let config =
        format!("{}\n[[services]]\nname = \"one.lb.example.\"\ntargets = [\"127.0.42.1\"]\n", quickstart_config());
    let s = TestServer::start(&config);
    let state = |args: &[&str]| {
        let out = Command::new(BIN).arg("state").args(args).args(["--admin", &s.admin]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, _, stderr) = state(&["one.lb.example.", "127.0.42.9", "drain"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no target of one.lb.example.") && stderr.contains("127.0.42.1"), "{stderr}");
    let (_, reply) = http(&s.admin, "GET", "/v1/status", None, None);
    assert!(!reply.contains("127.0.42.9"), "nothing was stored: {reply}");
    let (code, stdout, stderr) = state(&["one.lb.example.", "127.0.42.9", "drain", "--force"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("127.0.42.9: drain"), "{stdout}");
    let (code, _, stderr) = state(&["one.lb.example", "127.0.42.1", "drain"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning") && stderr.contains("last target"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_a_line_and_every_reload_is_logged_with_who_asked() {
    let dir = quickstart_dir();
    let config = std::fs::read_to_string(dir.path().join("c.toml")).unwrap();
    std::fs::write(dir.path().join("c.toml"), format!("[log]\nformat = \"json\"\n\n{config}")).unwrap();
    let p = Process::start(dir.path(), &[]);
    // a good reload through the API, then a broken config through SIGHUP
    assert_eq!(http(&p.admin, "POST", "/v1/reload", None, None).0, 200);
    std::fs::write(
        dir.path().join("c.toml"),
        format!("[log]\nformat = \"json\"\n\n{config}\n[[services]]\nttl = -1\n"),
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &p.server.0.id().to_string()]).status().unwrap();
    eventually("the failed reload to be logged", || p.logged("failed, the running config is kept"));
    let lines = p.lines.lock().unwrap().clone();
    let events: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let message = |e: &serde_json::Value| e["message"].as_str().unwrap_or_default().to_string();
    let start = events.iter().find(|e| message(e) == "steerdns starting").expect("a start-up summary");
    assert!(start["version"].as_str().unwrap().contains("commit"), "{start}");
    assert!(start["zones"].as_str().unwrap().contains("lb.example. (serial "), "{start}");
    assert!(start["services"].as_u64().unwrap() >= 1 && start["targets"].as_u64().unwrap() >= 1, "{start}");
    let reloaded = events.iter().find(|e| message(e).starts_with("reloaded ")).expect("the good reload");
    assert!(reloaded["via"].as_str().unwrap().starts_with("POST /v1/reload from 127.0.0.1"), "{reloaded}");
    let failed = events.iter().find(|e| message(e).contains("failed, the running config is kept")).unwrap();
    assert_eq!((failed["via"].as_str(), failed["level"].as_str()), (Some("SIGHUP"), Some("ERROR")), "{failed}");
    // the errors, one line: every error of the config in the one event
    assert!(message(failed).contains("services[3]: missing field `name`"), "{failed}");
}

#[test]
fn text_logs_have_no_colour_off_a_terminal_and_steerdns_log_sets_the_level() {
    let dir = quickstart_dir();
    let p = Process::start(dir.path(), &[]);
    let lines = p.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("steerdns starting")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains('\x1b')), "colour codes in a pipe: {lines:?}");
    drop(p);
    // warn and above only: the addresses go unlogged, so the admin port is fixed here
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = std::fs::read_to_string(dir.path().join("c.toml")).unwrap();
    let config = config.replace("admin_listen = \"127.0.0.1:0\"", &format!("admin_listen = \"127.0.0.1:{port}\""));
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let (mut server, stderr) = Process::child(dir.path(), &[("STEERDNS_LOG", "warn")]);
    let admin = format!("http://127.0.0.1:{port}");
    eventually("the server to be ready", || try_http(&admin, "GET", "/healthz", None, None).is_ok_and(|r| r.0 == 200));
    let _ = server.0.kill();
    let said: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
    assert!(said.iter().all(|l| !l.contains(" INFO ")), "{said:?}");
}

#[test]
fn systemd_hears_ready_when_healthz_turns_200_a_watchdog_beat_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = quickstart_dir();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    let p = Process::starting(dir.path(), &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut heard: Vec<String> = Vec::new();
    let listen_for = |what: &str, heard: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut buf = [0u8; 512];
        while std::time::Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                heard.push(String::from_utf8_lossy(&buf[..n]).to_string());
                if heard.last().is_some_and(|m| m.lines().any(|l| l == what)) {
                    return;
                }
            }
        }
        panic!("no {what} in {heard:?}");
    };
    listen_for("READY=1", &mut heard);
    // READY comes with the server's readiness: /healthz already says 200
    assert_eq!(http(&p.admin, "GET", "/healthz", None, None).0, 200);
    listen_for("WATCHDOG=1", &mut heard);
    Command::new("kill").args(["-TERM", &p.server.0.id().to_string()]).status().unwrap();
    listen_for("STOPPING=1", &mut heard);
    assert_eq!(heard.iter().filter(|m| m.contains("READY=1")).count(), 1, "{heard:?}");
}

#[test]
fn the_file_store_goes_to_state_directory_and_an_old_file_beside_the_config_is_used_with_a_warning() {
    let dir = quickstart_dir();
    let state_dir = dir.path().join("var-lib-steerdns");
    std::fs::create_dir(&state_dir).unwrap();
    let env = [("STATE_DIRECTORY", state_dir.to_str().unwrap())];
    let p = Process::start(dir.path(), &env);
    let body = r#"{"state": "drain"}"#;
    let (code, reply) =
        http(&p.admin, "PUT", "/v1/services/www.lb.example./targets/127.0.0.10/state", Some(body), None);
    assert_eq!(code, 200, "{reply}");
    // the snapshot, or the journal it starts with (PATH.journal)
    let files = ["steerdns-state.json", "steerdns-state.json.journal"];
    eventually("the state file in $STATE_DIRECTORY", || files.iter().any(|f| state_dir.join(f).exists()));
    assert!(!dir.path().join("state").exists(), "nothing beside the config");
    drop(p);
    // a state file beside the config, none in $STATE_DIRECTORY: it is used, with a warning
    std::fs::create_dir(dir.path().join("state")).unwrap();
    for file in files.iter().filter(|f| state_dir.join(f).exists()) {
        std::fs::rename(state_dir.join(file), dir.path().join("state").join(file)).unwrap();
    }
    let p = Process::start(dir.path(), &env);
    assert!(p.logged("move it to"), "{:?}", p.lines.lock().unwrap());
    let (_, status) = http(&p.admin, "GET", "/v1/status", None, None);
    assert!(status.contains("\"drain\""), "the old file's state is kept: {status}");
}

/// A tmux session running a command, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        Tmux::sized(name, command, 60)
    }

    fn sized(name: &str, command: &str, rows: u16) -> Tmux {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x", "120", "-y", &rows.to_string(), command])
            .status()
            .expect("tmux (CI installs it: .ci/run)");
        assert!(status.success());
        Tmux(name.to_string())
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

#[test]
fn the_dashboard_outlives_a_server_restart_and_shows_drains() {
    let dir = quickstart_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = std::fs::read_to_string(dir.path().join("c.toml")).unwrap();
    let config = config.replace("admin_listen = \"127.0.0.1:0\"", &format!("admin_listen = \"127.0.0.1:{port}\""));
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let p = Process::start(dir.path(), &[]);
    let tmux = Tmux::start(&format!("steerdns-dash-{port}"), &format!("{BIN} status --watch --admin 127.0.0.1:{port}"));
    let mut screen = String::new();
    let shows = |what: &str, screen: &mut String| {
        eventually(what, || {
            *screen = tmux.screen();
            screen.contains(what)
        });
    };
    shows("www.lb.example.", &mut screen);
    assert!(screen.contains("steerdns ") && screen.contains("store file up"), "{screen}");
    let body = r#"{"state": "drain"}"#;
    let path = "/v1/services/www.lb.example./targets/127.0.0.10/state";
    assert_eq!(http(&p.admin, "PUT", path, Some(body), None).0, 200);
    shows("1 drained", &mut screen);
    // the server goes away: the last picture stays under the error
    drop(p);
    shows("unreachable", &mut screen);
    assert!(screen.contains("www.lb.example."), "the last picture: {screen}");
    // it comes back: the dashboard shows it again, the drain kept in the store
    let _p = Process::start(dir.path(), &[]);
    eventually("the dashboard to recover", || {
        screen = tmux.screen();
        !screen.contains("unreachable") && screen.contains("1 drained")
    });
}

#[test]
fn failing_open_is_logged_once_as_it_starts_and_once_as_it_ends() {
    use crate::backend::{Backend, Mode};
    let backend = Backend::http("127.0.43.1", 0, Mode::Status(200, "OK"));
    let dir = quickstart_dir();
    let config = std::fs::read_to_string(dir.path().join("c.toml")).unwrap();
    let config = format!(
        "{config}\n[checks.fo]\nport = {}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\n\
         [[services]]\nname = \"fo.lb.example.\"\npolicy = \"healthy\"\ncheck = \"fo\"\ntargets = [\"127.0.43.1\"]\n",
        backend.addr.port()
    );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let p = Process::start(dir.path(), &[]);
    let count = |what: &str| p.lines.lock().unwrap().iter().filter(|l| l.contains(what)).count();
    backend.set(Mode::Down);
    eventually("fail-open to be logged", || count("failing open: every candidate is down") == 1);
    let line = p.lines.lock().unwrap().iter().find(|l| l.contains("failing open:")).cloned().unwrap();
    assert!(line.contains("fo.lb.example.") && line.contains("127.0.43.1") && line.contains("WARN"), "{line}");
    backend.set(Mode::Status(200, "OK"));
    eventually("its end to be logged", || count("no longer failing open") == 1);
    // the status was rebuilt on every probe meanwhile: still one line each
    assert_eq!((count("failing open: every"), count("no longer failing open")), (1, 1));
}

#[test]
fn an_https_admin_api_is_reached_with_ca_file_and_refused_without() {
    // a CA of the operator's, and the admin API's certificate from it
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let config = quickstart_config()
        .edit("[server]", "[server]\nadmin_tls_cert_file = \"admin.pem\"\nadmin_tls_key_file = \"admin.key\"");
    let files = [("lb.example.zone", ZONE), ("admin.pem", &cert.pem()), ("admin.key", &key.serialize_pem())];
    let s = TestServer::with_files(&config, &files);
    let ca_file = s.dir().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let port = s.admin.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");
    let out =
        Command::new(BIN).args(["status", "--json", "--admin", &url, "--ca-file"]).arg(&ca_file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("www.lb.example."));
    let out = Command::new(BIN).args(["status", "--json", "--admin", &url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cannot reach"), "an unknown issuer is refused: {stderr}");
}

#[test]
fn the_dashboard_fits_a_short_terminal_without_scrolling() {
    let s = TestServer::start(&quickstart_config());
    let port = s.admin.rsplit(':').next().unwrap().to_string();
    let tmux = Tmux::sized(&format!("steerdns-short-{port}"), &format!("{BIN} status --watch --admin {}", s.admin), 15);
    let mut screen = String::new();
    eventually("the cut picture", || {
        screen = tmux.screen();
        screen.contains("more lines")
    });
    // the header stays on top, and nothing scrolled past the window
    assert!(screen.lines().next().is_some_and(|l| l.starts_with("steerdns ")), "{screen}");
    assert!(screen.lines().count() <= 15, "{screen}");
}

#[test]
fn status_shows_a_gslb_service_answered_per_region() {
    let config = format!(
        "{}\n[geo]\ndefault_region = \"eu\"\n\n[regions.eu]\nnetworks = [\"127.10.0.0/16\"]\n\n\
         [regions.us]\nnetworks = [\"127.20.0.0/16\"]\n\n[checks.none]\nkind = \"none\"\n\n\
         [[services]]\nname = \"g.lb.example.\"\npolicy = \"gslb\"\ncheck = \"none\"\ntargets = [\n\
         {{ address = \"127.0.44.1\", region = \"eu\" }},\n{{ address = \"127.0.44.2\", region = \"us\" }},\n\
         {{ address = \"127.0.44.3\", region = \"us\" }},\n]\n",
        quickstart_config()
    );
    let s = TestServer::start(&config);
    let out = Command::new(BIN).args(["status", "--json", "--admin", &s.admin]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = status["services"].as_array().unwrap().iter().find(|s| s["name"] == "g.lb.example.").unwrap();
    assert_eq!(g["answered_by_region"], serde_json::json!({"eu": 1, "us": 2}), "{g}");
    let out = Command::new(BIN).args(["status", "--admin", &s.admin]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("g.lb.example.  gslb round-robin") && text.contains("(by region: eu 1, us 2)"), "{text}");
    // other policies carry no per-region counts
    let www = status["services"].as_array().unwrap().iter().find(|s| s["name"] == "www.lb.example.").unwrap();
    assert!(www.get("answered_by_region").is_none(), "{www}");
}

#[test]
fn the_dashboard_shows_a_backend_death_and_the_fail_open_it_brings() {
    use crate::backend::{Backend, Mode};
    let backend = Backend::http("127.0.45.1", 0, Mode::Status(200, "OK"));
    let config = format!(
        "{}\n[checks.dash]\nport = {}\ninterval = \"100ms\"\ntimeout = \"80ms\"\nfall = 1\nrise = 1\n\n\
         [[services]]\nname = \"dead.lb.example.\"\npolicy = \"healthy\"\ncheck = \"dash\"\ntargets = [\"127.0.45.1\"]\n",
        quickstart_config(),
        backend.addr.port()
    );
    let s = TestServer::start(&config);
    let port = s.admin.rsplit(':').next().unwrap().to_string();
    let tmux = Tmux::start(&format!("steerdns-dead-{port}"), &format!("{BIN} status --watch --admin {}", s.admin));
    let mut screen = String::new();
    eventually("the service up on the dashboard", || {
        screen = tmux.screen();
        screen.lines().any(|l| l.contains("127.0.45.1") && l.contains(" up "))
    });
    assert!(!screen.contains("FAILING OPEN"), "{screen}");
    backend.set(Mode::Down);
    eventually("the death and the fail-open on the dashboard", || {
        screen = tmux.screen();
        screen.lines().any(|l| l.contains("127.0.45.1") && l.contains(" down "))
            && screen.lines().any(|l| l.starts_with("FAILING OPEN") && l.contains("dead.lb.example."))
    });
}
