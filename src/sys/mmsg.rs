//! recvmmsg and sendmmsg over headers, addresses and buffers set up once. Measured
//! with callgrind on bench/fastpath.toml,
//! nix's safe wrappers cost about 1,300 instructions per query at low rates, more
//! than answering it: they rebuild every slice and header of the batch per call and
//! copy each address three times. Here a call sets up only the headers it uses.
use nix::libc;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::ptr;

/// Room for one IPv6 packet-info control message (the larger of the two).
const CONTROL: usize = 64;

/// The headers and buffers of one batch of datagrams, received or sent.
pub struct Batch {
    buffers: Vec<Vec<u8>>,
    names: Box<[libc::sockaddr_storage]>,
    iovecs: Box<[libc::iovec]>,
    control: Box<[[u8; CONTROL]]>,
    headers: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers inside the headers are rewritten before every call and
// point only into the Batch itself (or into the caller's replies, for that call).
unsafe impl Send for Batch {}

impl Batch {
    /// `size` datagrams of at most `buffer` bytes each.
    pub fn new(size: usize, buffer: usize) -> Batch {
        assert!(size_of::<libc::in6_pktinfo>() + size_of::<libc::cmsghdr>() + 8 <= CONTROL);
        let mut batch = Batch {
            buffers: vec![vec![0; buffer]; size],
            // SAFETY: sockaddr_storage is plain data, valid when zeroed
            names: (0..size).map(|_| unsafe { zeroed() }).collect(),
            iovecs: (0..size).map(|_| libc::iovec { iov_base: ptr::null_mut(), iov_len: 0 }).collect(),
            control: vec![[0; CONTROL]; size].into(),
            // SAFETY: mmsghdr is plain data (null pointers, zero lengths) when zeroed
            headers: (0..size).map(|_| unsafe { zeroed() }).collect(),
        };
        // each header points at its own buffer, address and control space, once: these
        // heap blocks never grow, shrink or move, whatever becomes of the Batch value
        for i in 0..size {
            batch.iovecs[i] =
                libc::iovec { iov_base: batch.buffers[i].as_mut_ptr().cast(), iov_len: batch.buffers[i].len() };
            let header = &mut batch.headers[i].msg_hdr;
            header.msg_name = (&raw mut batch.names[i]).cast();
            header.msg_iov = &raw mut batch.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = batch.control[i].as_mut_ptr().cast();
        }
        batch
    }

    fn size(&self) -> usize {
        self.buffers.len()
    }

    /// Receives up to `want` datagrams, waiting for the first (up to the socket's read
    /// timeout); how many came. With `pktinfo`, each one's destination address is kept.
    pub fn receive(&mut self, fd: RawFd, want: usize, pktinfo: bool) -> io::Result<usize> {
        let want = want.min(self.size());
        // the kernel rewrites the lengths: only they are set again
        for header in &mut self.headers[..want] {
            header.msg_len = 0;
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = if pktinfo { CONTROL } else { 0 };
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the first `want` headers point at buffers, addresses and control
        // space of this Batch (set in `new`), each as long as the length given, and
        // nothing else touches them during the call
        let n = unsafe {
            libc::recvmmsg(fd, self.headers.as_mut_ptr(), want as libc::c_uint, libc::MSG_WAITFORONE, ptr::null_mut())
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Datagram `i` of the last receive: its bytes, its sender and, with pktinfo, the
    /// local address it was sent to.
    pub fn datagram(&self, i: usize) -> (&[u8], Option<SocketAddr>, Option<IpAddr>) {
        let header = &self.headers[i];
        let len = (header.msg_len as usize).min(self.buffers[i].len());
        let from = socket_addr(&self.names[i], header.msg_hdr.msg_namelen);
        (&self.buffers[i][..len], from, self.destination(i))
    }

    fn destination(&self, i: usize) -> Option<IpAddr> {
        let header = &self.headers[i].msg_hdr;
        if header.msg_controllen == 0 {
            return None;
        }
        // SAFETY: the kernel wrote msg_controllen bytes of control messages into this
        // header's control space; the CMSG macros stay within them
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(header);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                        let info = ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                        return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))));
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                        let info = ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                        return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                    }
                    _ => cmsg = libc::CMSG_NXTHDR(header, cmsg),
                }
            }
        }
        None
    }

    /// Sends each reply to its destination, from `source` when given; how many the
    /// kernel took (at least the first, or an error).
    pub fn send<'r>(
        &mut self,
        fd: RawFd,
        replies: impl IntoIterator<Item = (&'r [u8], SocketAddr)>,
        source: Option<IpAddr>,
    ) -> io::Result<usize> {
        let mut n = 0;
        for (i, (reply, to)) in replies.into_iter().take(self.size()).enumerate() {
            n = i + 1;
            self.iovecs[i] = libc::iovec { iov_base: reply.as_ptr().cast_mut().cast(), iov_len: reply.len() };
            let namelen = write_socket_addr(&mut self.names[i], to);
            let controllen = source.map_or(0, |s| write_pktinfo(&mut self.control[i], s));
            let header = &mut self.headers[i];
            header.msg_len = 0;
            header.msg_hdr.msg_namelen = namelen;
            header.msg_hdr.msg_controllen = controllen;
            header.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the first `n` headers point at this Batch's addresses and control
        // space (set in `new`) and at the callers' replies (just set), which the
        // kernel only reads, all alive for the call
        let sent = unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
    }
}

fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in here (family and length say so)
            let a = unsafe { ptr::read((storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the kernel wrote a sockaddr_in6 here (family and length say so)
            let a = unsafe { ptr::read((storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
        }
        _ => None,
    }
}

fn write_socket_addr(storage: &mut libc::sockaddr_storage, address: SocketAddr) -> libc::socklen_t {
    let to = (storage as *mut libc::sockaddr_storage).cast::<u8>();
    match address {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain data, valid when zeroed
            let mut sin: libc::sockaddr_in = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned
            unsafe { ptr::write(to.cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data, valid when zeroed
            let mut sin6: libc::sockaddr_in6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned
            unsafe { ptr::write(to.cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Writes the packet-info control message that sends from `source`; its length.
fn write_pktinfo(control: &mut [u8; CONTROL], source: IpAddr) -> usize {
    // SAFETY: a scratch header whose control space is `control`, so the CMSG macros
    // compute positions within it; the sizes fit CONTROL (checked in Batch::new)
    unsafe {
        let mut header: libc::msghdr = zeroed();
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = CONTROL;
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        match source {
            IpAddr::V4(a) => {
                let len = size_of::<libc::in_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(a).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(len) as usize
            }
            IpAddr::V6(a) => {
                let len = size_of::<libc::in6_pktinfo>() as u32;
                (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
                let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: a.octets() }, ipi6_ifindex: 0 };
                ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
                libc::CMSG_SPACE(len) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn datagrams_go_out_and_come_back_with_their_addresses() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let clients: Vec<UdpSocket> = (2..5).map(|i| UdpSocket::bind(format!("127.0.0.{i}:0")).unwrap()).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 3], server.local_addr().unwrap()).unwrap();
        }
        let mut batch = Batch::new(8, 512);
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = batch.receive(server.as_raw_fd(), 8, false).unwrap();
            got.extend((0..n).map(|i| {
                let (bytes, from, to) = batch.datagram(i);
                assert_eq!(to, None);
                (bytes.to_vec(), from.unwrap())
            }));
        }
        got.sort();
        for (i, (bytes, from)) in got.iter().enumerate() {
            assert_eq!((bytes.as_slice(), *from), (&[i as u8; 3][..], clients[i].local_addr().unwrap()));
        }
        let replies: Vec<(&[u8], SocketAddr)> = got.iter().map(|(b, f)| (&b[..], *f)).collect();
        assert_eq!(Batch::new(8, 0).send(server.as_raw_fd(), replies, None).unwrap(), 3);
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 16];
            c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let (n, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&[i as u8; 3][..], server.local_addr().unwrap()));
        }
    }
}
