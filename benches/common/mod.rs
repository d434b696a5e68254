//! Helpers shared by the benchmarks: steerdns runs as its own process (the release
//! binary), measured through /proc; everything is on 127.0.0.0/8.
#![allow(dead_code)] // each benchmark uses some of them

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_steerdns");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn serve(config: &Path) -> Child {
    Command::new(BIN).args(["serve", "--config"]).arg(config).stderr(Stdio::null()).spawn().unwrap()
}

/// The A answer of `name`, or None when no reply came.
pub fn ask(server: SocketAddr, name: &str) -> Option<Vec<String>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    socket.send_to(&q.to_vec().unwrap(), server).ok()?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    Some(
        r.answers.iter().filter_map(|a| if let RData::A(a) = &a.data { Some(a.0.to_string()) } else { None }).collect(),
    )
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    debug_assert_ne!(file, "stat");
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

/// (utime, stime) of a process, in clock ticks.
pub fn user_sys(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<u64> =
        text.rsplit(')').next().unwrap().split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap()).collect();
    (fields[0], fields[1])
}
