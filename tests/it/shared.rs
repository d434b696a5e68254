//! Shared health (SPEC §10) with a real etcd and three nodes on loopback, each probing
//! from its own source address (`[health] probe_source`): probes split between nodes,
//! verdicts by majority, a node's keys taken over when it goes, and each node on its
//! own probes while etcd is away.

use crate::backend::{Backend, Mode};
use crate::etcd::Etcd;
use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::collections::BTreeSet;
use std::net::IpAddr;

const NODES: [&str; 3] = ["a", "b", "c"];

/// The source address node `name` probes from.
fn source(name: &str) -> String {
    format!("127.0.90.{}", NODES.iter().position(|n| *n == name).unwrap() + 1)
}

/// A node sharing health through `etcd`: identity `name`, the service s.lb.example.
/// over `targets` probed on `port` every 500 ms, `probers` per key.
fn node(etcd: &Etcd, name: &str, port: u16, targets: &str, probers: usize) -> TestServer {
    TestServer::start(&node_config(etcd, name, port, targets, probers))
}

/// The config of [`node`].
fn node_config(etcd: &Etcd, name: &str, port: u16, targets: &str, probers: usize) -> String {
    format!(
        "{}\n[health]\nshare = true\nprobers_per_target = {probers}\nnode_lease_ttl = \"3s\"\nprobe_source = \"{}\"\n\
         [checks.web]\nport = {port}\ninterval = \"500ms\"\ntimeout = \"300ms\"\nrise = 1\nfall = 1\n\
         [[services]]\nname = \"s.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [{targets}]\n\n{}",
        quickstart_config().edit("identity = \"steerdns-quickstart\"", &format!("identity = \"{name}\"")),
        source(name),
        etcd.store(""),
    )
}

/// Backends on 127.0.`net`.1 to .`count`, one port.
fn backends(net: u8, count: u8) -> Vec<Backend> {
    let first = Backend::http(&format!("127.0.{net}.1"), 0, Mode::Status(200, "OK"));
    let port = first.addr.port();
    let mut all = vec![first];
    all.extend((2..=count).map(|i| Backend::http(&format!("127.0.{net}.{i}"), port, Mode::Status(200, "OK"))));
    all
}

fn targets(backends: &[Backend]) -> String {
    backends.iter().map(|b| format!("\"{}\"", b.addr.ip())).collect::<Vec<_>>().join(", ")
}

/// Every node shares, and sees `live` live members.
fn sharing(nodes: &[&TestServer], live: usize) {
    eventually("every node to share health", || {
        nodes.iter().all(|n| {
            status_of(&n.admin).shared.is_some_and(|s| s.sharing && s.members.iter().filter(|m| m.1).count() == live)
        })
    });
}

/// The counted probers of `address` as node `s` sees them, once each has published.
fn counted(s: &TestServer, address: &str) -> Vec<String> {
    let t = target_status(&s.admin, "s.lb.example.", address);
    t.probers.iter().filter(|p| p.counted && p.verdict.is_some()).map(|p| p.node.clone()).collect()
}

fn answers(s: &TestServer) -> BTreeSet<String> {
    // round-robin over up to 8: two queries see every target
    (0..2).flat_map(|_| addresses(&s.ask("s.lb.example.", RecordType::A))).collect()
}

/// Three nodes, each probing both backends on 127.0.`net`.1 and .2 (probers_per_target
/// 3); the first refuses node a's probes, and a has published it down.
fn broken_path_from_a(etcd: &Etcd, net: u8) -> (Vec<Backend>, Vec<TestServer>) {
    let web = backends(net, 2);
    let nodes: Vec<TestServer> = NODES.iter().map(|n| node(etcd, n, web[0].addr.port(), &targets(&web), 3)).collect();
    sharing(&nodes.iter().collect::<Vec<_>>(), 3);
    web[0].refuse_from(&source("a"));
    let broken = format!("127.0.{net}.1");
    eventually("a to publish its down verdict", || {
        target_status(&nodes[1].admin, "s.lb.example.", &broken)
            .probers
            .iter()
            .any(|p| p.node == "a" && p.verdict.as_deref() == Some("down"))
    });
    (web, nodes)
}

#[test]
fn each_key_is_probed_by_probers_per_target_nodes_whatever_their_number() {
    let Some(etcd) = Etcd::start() else { return };
    let web = backends(91, 6);
    let nodes: Vec<TestServer> = NODES.iter().map(|n| node(&etcd, n, web[0].addr.port(), &targets(&web), 2)).collect();
    let refs: Vec<&TestServer> = nodes.iter().collect();
    sharing(&refs, 3);
    eventually("two published verdicts counted for every key, on every node", || {
        nodes.iter().all(|n| web.iter().all(|b| counted(n, &b.addr.ip().to_string()).len() == 2))
    });
    // the probes of a few intervals, by source: each backend from its two probers only
    web.iter().for_each(|b| drop(b.take_peers()));
    std::thread::sleep(std::time::Duration::from_secs(2));
    for b in &web {
        let from: BTreeSet<IpAddr> = b.take_peers().into_keys().collect();
        let probers: BTreeSet<IpAddr> =
            counted(&nodes[0], &b.addr.ip().to_string()).iter().map(|n| source(n).parse().unwrap()).collect();
        assert_eq!(from, probers, "{}: probed by its two ranked nodes alone", b.addr.ip());
    }
    // every node answers every target
    for n in &nodes {
        assert_eq!(answers(n).len(), 6);
    }
    let metrics = get_ok(&nodes[0].admin, "/metrics");
    assert!(metrics.contains("steerdns_shared_members_live 3"), "{metrics}");
}

#[test]
fn one_nodes_broken_path_keeps_the_backend_and_a_backend_dead_to_all_leaves_all() {
    let Some(etcd) = Etcd::start() else { return };
    let (web, nodes) = broken_path_from_a(&etcd, 92);
    for n in &nodes {
        assert!(answers(n).contains("127.0.92.1"), "one of three says down: still answered everywhere");
        assert_eq!(target_status(&n.admin, "s.lb.example.", "127.0.92.1").health, "up");
    }
    let metrics = get_ok(&nodes[2].admin, "/metrics");
    assert!(metrics.contains("steerdns_shared_disagreements 1"), "{metrics}");
    let explained = get_ok(&nodes[0].admin, "/v1/explain?name=s.lb.example.&type=A");
    assert!(explained.contains("\"node\":\"a\",\"verdict\":\"down\""), "{explained}");
    // dead to every node: it leaves every node's answers
    web[0].set(Mode::Down);
    for n in &nodes {
        eventually("the dead backend to leave every node", || !answers(n).contains("127.0.92.1"));
    }
}

#[test]
fn a_node_killed_with_minus_9_has_its_keys_taken_over() {
    let Some(etcd) = Etcd::start() else { return };
    let web = backends(93, 6);
    let port = web[0].addr.port();
    let nodes: Vec<TestServer> = NODES[..2].iter().map(|n| node(&etcd, n, port, &targets(&web), 1)).collect();
    // c runs as its own process, so that it can be killed with SIGKILL
    let dir = quickstart_dir();
    let config = node_config(&etcd, "c", port, &targets(&web), 1)
        .edit("127.0.0.1:5353\"]", "127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"");
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let c = Process::start(dir.path(), &[]);
    sharing(&nodes.iter().collect::<Vec<_>>(), 3);
    eventually("one published verdict per key", || {
        web.iter().all(|b| counted(&nodes[0], &b.addr.ip().to_string()).len() == 1)
    });
    let of_c: Vec<String> =
        web.iter().map(|b| b.addr.ip().to_string()).filter(|a| counted(&nodes[0], a) == ["c"]).collect();
    assert!(!of_c.is_empty(), "c probes some of six keys (rank by hash; retry with other addresses if not)");
    drop(c); // SIGKILL: its lease and verdicts stay until they time out
    eventually("a and b to count c absent and take its keys over", || {
        of_c.iter().all(|a| counted(&nodes[0], a).first().is_some_and(|n| n != "c"))
    });
    for address in &of_c {
        let backend = web.iter().find(|b| b.addr.ip().to_string() == *address).unwrap();
        drop(backend.take_peers());
        let new = counted(&nodes[0], address)[0].clone();
        eventually("the new prober's probes", || backend.take_peers().contains_key(&source(&new).parse().unwrap()));
    }
    assert!(nodes.iter().all(|n| answers(n).len() == 6));
    // c's node key ends with its lease (3 s): it is no member any more
    eventually("c gone from the members", || {
        status_of(&nodes[0].admin).shared.is_some_and(|s| !s.members.iter().any(|m| m.0 == "c"))
    });
}

#[test]
fn while_etcd_is_away_each_node_decides_by_its_own_probes() {
    let Some(mut etcd) = Etcd::start() else { return };
    let (_web, nodes) = broken_path_from_a(&etcd, 94); // the backends live as long as the test
    assert!(answers(&nodes[0]).contains("127.0.94.1"), "shared: b and c outvote a");
    etcd.kill();
    eventually("a to fall back on its own probe", || !answers(&nodes[0]).contains("127.0.94.1"));
    assert!(answers(&nodes[1]).contains("127.0.94.1") && answers(&nodes[2]).contains("127.0.94.1"));
    etcd.restart();
    eventually("the shared verdicts to take over again on a", || answers(&nodes[0]).contains("127.0.94.1"));
}

#[test]
fn a_second_node_with_the_same_identity_stops_at_start() {
    let Some(etcd) = Etcd::start() else { return };
    let web = backends(95, 1);
    let first = node(&etcd, "a", web[0].addr.port(), &targets(&web), 2);
    sharing(&[&first], 1);
    let dir = quickstart_dir();
    let config = std::fs::read_to_string(dir.path().join("c.toml"))
        .unwrap()
        .edit("identity = \"steerdns-quickstart\"", "identity = \"a\"")
        + &format!(
            "\n[health]\nshare = true\nnode_lease_ttl = \"2s\"\n[checks.web]\nport = {}\n\
             [[services]]\nname = \"s.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.95.1\"]\n\n{}",
            web[0].addr.port(),
            etcd.store("")
        );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let (mut second, stderr) = Process::child(dir.path(), &[]);
    let said = std::io::read_to_string(stderr).unwrap();
    let status = exit_status(&mut second.0);
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("another node holds the identity \"a\""), "{said}");
    assert!(status_of(&first.admin).shared.unwrap().sharing, "the first node goes on");
}

#[test]
fn unreadable_verdicts_and_those_of_strangers_are_ignored_and_counted() {
    let Some(etcd) = Etcd::start() else { return };
    let web = backends(97, 1);
    let a = node(&etcd, "a", web[0].addr.port(), &targets(&web), 2);
    sharing(&[&a], 1);
    let stranger =
        r#"{"node":"ghost","check":"web","address":"127.0.97.1","verdict":{"down":true,"drain":false,"at":1.0}}"#;
    etcd.client(async |mut c| {
        c.put("/steerdns/verdicts/ghost/127.0.97.1/web", stranger, None).await.unwrap();
        c.put("/steerdns/verdicts/a/127.0.97.1/web", "not json", None).await.unwrap();
    });
    eventually("both counted", || get_ok(&a.admin, "/metrics").contains("steerdns_shared_verdicts_ignored_total 2"));
    assert!(answers(&a).contains("127.0.97.1"), "the stranger's down changes nothing");
    assert_eq!(target_status(&a.admin, "s.lb.example.", "127.0.97.1").health, "up");
}
