//! `-netdev socket`: frames to another emulator over a host socket.
//!
//! - TCP (`listen=`, `connect=`): QEMU's framing, each frame preceded by its length as a
//!   4-byte big-endian number. A listening backend serves one peer at a time and accepts
//!   the next when it goes away; a connecting backend reconnects every second after losing
//!   its peer. Frames from the card while no peer is connected are dropped.
//! - UDP (`mcast=`, `udp=`): one frame per datagram. Multicast loops back on the host, so
//!   several emulators on one machine form a segment; a backend ignores its own datagrams.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::options::{HostPort, SocketOptions};
use crate::queue::RxQueue;
use crate::sys::PollSet;
use crate::worker::Driver;
use crate::{NetError, Stats};

/// The largest frame accepted from a peer (QEMU's NET_BUFSIZE: 64 KiB plus headroom); a
/// longer length prefix means the stream is not QEMU's framing, and the peer is dropped.
pub(crate) const MAX_FRAME: usize = 4096 + 65536;
/// Bytes read from a stream per poll wakeup.
const READ_CHUNK: usize = 64 * 1024;
/// Frames queued for a slow TCP peer beyond this many bytes are dropped.
const MAX_PENDING_OUT: usize = 512 * 1024;
/// How long a connecting backend waits between attempts after losing its peer.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long the first connection (while the backend opens) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Datagrams read per poll wakeup.
const DATAGRAM_BURST: usize = 32;

pub(crate) struct SocketDriver {
    queue: RefCell<RxQueue>,
    stats: Arc<Stats>,
    kind: Kind,
}

enum Kind {
    Stream(Stream),
    Datagram(Datagram),
}

impl SocketDriver {
    pub(crate) fn open(opts: &SocketOptions, queue: RxQueue, stats: Arc<Stats>) -> Result<Self, NetError> {
        let kind = match opts {
            SocketOptions::Listen(hp) => {
                let addr = resolve(hp, Ipv4Addr::UNSPECIFIED)?;
                let listener = TcpListener::bind(addr).map_err(|source| NetError::Listen {
                    addr: hp.to_string(),
                    port: hp.port,
                    source,
                })?;
                listener.set_nonblocking(true).map_err(|source| NetError::Listen {
                    addr: hp.to_string(),
                    port: hp.port,
                    source,
                })?;
                Kind::Stream(Stream { role: Role::Listen(listener), conn: None, listen_idx: None })
            }
            SocketOptions::Connect(hp) => {
                let addr = resolve(hp, Ipv4Addr::LOCALHOST)?;
                let conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                    .and_then(Conn::new)
                    .map_err(|source| NetError::Connect { addr: hp.to_string(), source })?;
                Kind::Stream(Stream {
                    role: Role::Connect { addr, pending: None, retry_at: None },
                    conn: Some(conn),
                    listen_idx: None,
                })
            }
            SocketOptions::Mcast { group, localaddr } => Kind::Datagram(Datagram::multicast(*group, *localaddr)?),
            SocketOptions::Udp { remote, local } => Kind::Datagram(Datagram::unicast(remote, local)?),
        };
        Ok(SocketDriver { queue: RefCell::new(queue), stats, kind })
    }
}

/// The first address `hp` names (IPv4 first); an empty host is `empty`.
fn resolve(hp: &HostPort, empty: Ipv4Addr) -> Result<SocketAddr, NetError> {
    if hp.host.is_empty() {
        return Ok(SocketAddr::from((empty, hp.port)));
    }
    let err = |source| NetError::Resolve { addr: hp.to_string(), source };
    let addrs: Vec<SocketAddr> = (hp.host.as_str(), hp.port).to_socket_addrs().map_err(err)?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::NotFound, "no address found")))
}

impl Driver for SocketDriver {
    fn queue(&self) -> &RefCell<RxQueue> {
        &self.queue
    }

    fn transmit(&mut self, frame: &[u8]) {
        let sent = match &mut self.kind {
            Kind::Stream(s) => s.transmit(frame),
            Kind::Datagram(d) => d.transmit(frame),
        };
        Stats::bump(if sent { &self.stats.tx_frames } else { &self.stats.tx_dropped });
    }

    fn prepare(&mut self, polls: &mut PollSet, receive: bool) -> Option<Duration> {
        match &mut self.kind {
            Kind::Stream(s) => s.prepare(polls, receive, &self.queue),
            Kind::Datagram(d) => {
                if receive {
                    d.rx_idx = Some(polls.add(d.rx.as_fd(), libc::POLLIN));
                }
                None
            }
        }
    }

    fn dispatch(&mut self, polls: &PollSet) {
        match &mut self.kind {
            Kind::Stream(s) => s.dispatch(polls, &self.queue),
            Kind::Datagram(d) => d.dispatch(polls, &self.queue),
        }
    }
}

/// A TCP connection to the peer.
struct Conn {
    stream: TcpStream,
    /// Received bytes not yet parsed into frames: `input[start..]`.
    input: Vec<u8>,
    start: usize,
    /// Framed bytes not yet written.
    output: Vec<u8>,
    /// This iteration's poll index, and whether it waits to read.
    idx: Option<(usize, bool)>,
}

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        // Frames are latency-sensitive packets of their own, not a byte stream to coalesce.
        stream.set_nodelay(true)?;
        Ok(Conn { stream, input: Vec::new(), start: 0, output: Vec::new(), idx: None })
    }

    /// Writes what the socket takes now. Err: the peer is gone.
    fn flush(&mut self) -> io::Result<()> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads one chunk. Ok(false): the peer closed the connection.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        let old = self.input.len();
        self.input.resize(old + READ_CHUNK, 0);
        let r = self.stream.read(&mut self.input[old..]);
        self.input.truncate(old + *r.as_ref().unwrap_or(&0));
        match r {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Offers the complete frames received so far until the card holds back. Err: the peer
    /// does not speak QEMU's framing.
    fn pump(&mut self, queue: &RefCell<RxQueue>) -> Result<(), usize> {
        let mut queue = queue.borrow_mut();
        while !queue.is_holding() {
            let buf = &self.input[self.start..];
            let Some(len) = buf.get(..4) else { break };
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME {
                return Err(len);
            }
            let Some(frame) = buf.get(4..4 + len) else { break };
            if !frame.is_empty() {
                queue.offer(frame);
            }
            self.start += 4 + len;
        }
        Ok(())
    }
}

enum Role {
    Listen(TcpListener),
    Connect {
        addr: SocketAddr,
        /// A connection attempt in progress (non-blocking connect).
        pending: Option<(Socket, Option<usize>)>,
        retry_at: Option<Instant>,
    },
}

struct Stream {
    role: Role,
    conn: Option<Conn>,
    /// This iteration's poll index of the listener.
    listen_idx: Option<usize>,
}

impl Stream {
    fn transmit(&mut self, frame: &[u8]) -> bool {
        let Some(conn) = &mut self.conn else { return false };
        if conn.output.len() + frame.len() > MAX_PENDING_OUT || frame.len() > MAX_FRAME {
            return false;
        }
        conn.output.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        conn.output.extend_from_slice(frame);
        if conn.flush().is_err() {
            self.lost();
            return false;
        }
        true
    }

    /// The peer went away: a listener takes the next one, a connector calls again later.
    fn lost(&mut self) {
        self.conn = None;
        if let Role::Connect { retry_at, .. } = &mut self.role {
            *retry_at = Some(Instant::now() + RECONNECT_DELAY);
        }
    }

    fn prepare(&mut self, polls: &mut PollSet, receive: bool, queue: &RefCell<RxQueue>) -> Option<Duration> {
        if let Some(conn) = &mut self.conn {
            // Frames left over from before the card held back go first.
            if receive {
                if let Err(len) = conn.pump(queue) {
                    self.protocol_error(len);
                    return self.prepare(polls, receive, queue);
                }
            }
            let reading = receive && !queue.borrow().is_holding();
            let mut events = 0;
            if reading {
                events |= libc::POLLIN;
            }
            if !conn.output.is_empty() {
                events |= libc::POLLOUT;
            }
            // Nothing to wait for (held back, nothing to write): leave the socket out, so a
            // hang-up cannot turn the wait into a busy loop; it is seen once reading resumes.
            conn.idx = (events != 0).then(|| (polls.add(conn.stream.as_fd(), events), reading));
            return None;
        }
        match &mut self.role {
            Role::Listen(l) => {
                self.listen_idx = Some(polls.add(l.as_fd(), libc::POLLIN));
                None
            }
            Role::Connect { addr, pending, retry_at } => {
                if let Some((sock, idx)) = pending {
                    *idx = Some(polls.add(sock.as_fd(), libc::POLLOUT));
                    return None;
                }
                let now = Instant::now();
                match retry_at {
                    Some(t) if *t > now => return Some(*t - now),
                    _ => {}
                }
                *retry_at = None;
                match start_connect(*addr) {
                    Ok(sock) => {
                        let idx = polls.add(sock.as_fd(), libc::POLLOUT);
                        *pending = Some((sock, Some(idx)));
                        None
                    }
                    Err(_) => {
                        *retry_at = Some(now + RECONNECT_DELAY);
                        Some(RECONNECT_DELAY)
                    }
                }
            }
        }
    }

    fn protocol_error(&mut self, len: usize) {
        eprintln!(
            "ferrite: socket netdev: the peer sent a {len}-byte frame length (at most {MAX_FRAME}); \
             it does not speak QEMU's socket framing, disconnecting"
        );
        self.lost();
    }

    fn dispatch(&mut self, polls: &PollSet, queue: &RefCell<RxQueue>) {
        if let Some(conn) = &mut self.conn {
            let Some((idx, reading)) = conn.idx.take() else { return };
            let rev = polls.revents(idx);
            if rev == 0 {
                return;
            }
            if rev & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0 && conn.flush().is_err() {
                return self.lost();
            }
            if reading && rev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match conn.fill() {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return self.lost(),
                }
                if let Err(len) = conn.pump(queue) {
                    self.protocol_error(len);
                }
            }
            return;
        }
        match &mut self.role {
            Role::Listen(l) => {
                let Some(idx) = self.listen_idx.take() else { return };
                if polls.revents(idx) & libc::POLLIN != 0 {
                    if let Ok((stream, _)) = l.accept() {
                        self.conn = Conn::new(stream).ok();
                    }
                }
            }
            Role::Connect { pending, retry_at, .. } => {
                let Some((_, Some(idx))) = pending.as_ref() else { return };
                if polls.revents(*idx) == 0 {
                    return;
                }
                let (sock, _) = pending.take().expect("checked above");
                let connected = matches!(sock.take_error(), Ok(None)) && sock.peer_addr().is_ok();
                match connected.then(|| Conn::new(sock.into())) {
                    Some(Ok(conn)) => self.conn = Some(conn),
                    _ => *retry_at = Some(Instant::now() + RECONNECT_DELAY),
                }
            }
        }
    }
}

/// Starts a non-blocking connection to `addr`.
fn start_connect(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => Ok(sock),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(sock),
        Err(e) => Err(e),
    }
}

/// A UDP backend: multicast group or unicast peer.
struct Datagram {
    rx: UdpSocket,
    /// A separate sending socket for multicast (so our own looped-back datagrams can be
    /// told apart by their source port); None: `rx` sends too.
    tx: Option<UdpSocket>,
    dest: SocketAddr,
    /// Multicast: our sending port; datagrams from it and a local address are our own.
    own_port: Option<u16>,
    /// Which source addresses are this host's (cached).
    local: HashMap<IpAddr, bool>,
    rx_idx: Option<usize>,
    buf: Vec<u8>,
}

impl Datagram {
    fn multicast(group: SocketAddrV4, localaddr: Option<Ipv4Addr>) -> Result<Self, NetError> {
        let err = |source| NetError::Multicast { group: group.to_string(), on: localaddr, source };
        let iface = localaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        // Every emulator on the segment binds the same group and port.
        rx.set_reuse_address(true).map_err(err)?;
        rx.bind(&SocketAddr::V4(group).into()).map_err(err)?;
        rx.join_multicast_v4(group.ip(), &iface).map_err(err)?;
        rx.set_nonblocking(true).map_err(err)?;
        let tx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        tx.bind(&SocketAddr::from((iface, 0)).into()).map_err(err)?;
        tx.set_multicast_loop_v4(true).map_err(err)?;
        tx.set_multicast_ttl_v4(1).map_err(err)?;
        if let Some(addr) = localaddr {
            tx.set_multicast_if_v4(&addr).map_err(err)?;
        }
        tx.set_nonblocking(true).map_err(err)?;
        let tx: UdpSocket = tx.into();
        let own_port = tx.local_addr().map_err(err)?.port();
        Ok(Datagram {
            rx: rx.into(),
            tx: Some(tx),
            dest: SocketAddr::V4(group),
            own_port: Some(own_port),
            local: HashMap::new(),
            rx_idx: None,
            buf: vec![0; MAX_FRAME],
        })
    }

    fn unicast(remote: &HostPort, local: &HostPort) -> Result<Self, NetError> {
        let dest = resolve(remote, Ipv4Addr::LOCALHOST)?;
        let bind_err = |source| NetError::Udp { addr: local.to_string(), port: local.port, source };
        let local_addr = resolve(local, Ipv4Addr::UNSPECIFIED)?;
        let rx = UdpSocket::bind(local_addr).map_err(bind_err)?;
        rx.set_nonblocking(true).map_err(bind_err)?;
        Ok(Datagram { rx, tx: None, dest, own_port: None, local: HashMap::new(), rx_idx: None, buf: vec![0; MAX_FRAME] })
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        let sock = self.tx.as_ref().unwrap_or(&self.rx);
        sock.send_to(frame, self.dest).is_ok()
    }

    /// Whether a datagram from `src` is one of our own, looped back by multicast.
    fn is_own(&mut self, src: SocketAddr) -> bool {
        if self.own_port != Some(src.port()) {
            return false;
        }
        if self.local.len() > 64 {
            self.local.clear();
        }
        // An address is this host's if a socket can bind to it.
        *self.local.entry(src.ip()).or_insert_with(|| UdpSocket::bind((src.ip(), 0)).is_ok())
    }

    fn dispatch(&mut self, polls: &PollSet, queue: &RefCell<RxQueue>) {
        let Some(idx) = self.rx_idx.take() else { return };
        if polls.revents(idx) == 0 {
            return;
        }
        for _ in 0..DATAGRAM_BURST {
            let (len, src) = match self.rx.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(_) => return, // WouldBlock, or a transient ICMP error on unicast UDP
            };
            if len == 0 || self.is_own(src) {
                continue;
            }
            let mut queue = queue.borrow_mut();
            queue.offer(&self.buf[..len]);
            if queue.is_holding() {
                return;
            }
        }
    }
}
