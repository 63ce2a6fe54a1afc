//! `-chardev` backends: byte streams between a device (a virtio console port, the monitor)
//! and the host: a file, nothing, or a stream socket (Unix or TCP, listening or connecting).
//!
//! A backend is opened when the machine is created and outlives resets; the device of the
//! current board attaches itself as the [`Frontend`]. Bytes from the host are offered to the
//! frontend on the backend's reader thread, which waits while the frontend has no room
//! ([`Chardev::wake`] resumes it); bytes to the host go through a bounded queue to a writer
//! thread, so a device never blocks on a slow reader (beyond the queue, output is dropped, as
//! a serial line without flow control would lose it).

use crate::config::{ChardevBackend, ChardevConfig, SocketAddress};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Chunks of output waiting for the writer thread.
const OUTPUT_QUEUE: usize = 1024;
/// How long a new client waits for the previous one's hang-up to be noticed (a script that
/// connects once per command reconnects at once) before it is turned away.
const HANDOVER: Duration = Duration::from_millis(500);

/// The device side of a chardev.
pub trait Frontend: Send + Sync {
    /// Bytes from the host; returns how many were taken (0: no room now, the backend waits
    /// for [`Chardev::wake`]).
    fn receive(&self, data: &[u8]) -> usize;
    /// A host program connected (`true`) or went away.
    fn connected(&self, _up: bool) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ChardevError {
    #[error("-chardev {id}: cannot open '{}': {source}", path.display())]
    File { id: String, path: PathBuf, source: std::io::Error },
    #[error("-chardev {id}: cannot listen on {address}: {source}")]
    Listen { id: String, address: String, source: std::io::Error },
    #[error("-chardev {id}: cannot connect to {address}: {source}")]
    Connect { id: String, address: String, source: std::io::Error },
    #[error("-chardev {id}: cannot start its thread: {0}", id = .0)]
    Thread(String, #[source] std::io::Error),
}

/// A connected stream of either family.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(l.accept()?.0),
            Listener::Unix(l, _) => Stream::Unix(l.accept()?.0),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where output goes.
enum Sink {
    Null,
    File(File),
    /// The current socket connection, if any.
    Socket(Option<Stream>),
}

struct State {
    frontend: Option<Arc<dyn Frontend>>,
    /// What a second client of a listening socket reads before it is disconnected.
    busy_message: Vec<u8>,
    connected: bool,
    /// The frontend made room since the reader last looked.
    woken: bool,
}

/// One open `-chardev`.
pub struct Chardev {
    id: String,
    state: Mutex<State>,
    room: Condvar,
    output: SyncSender<Vec<u8>>,
    /// Chunks queued and not yet written (for [`Chardev::drain`]).
    unwritten: Arc<std::sync::atomic::AtomicUsize>,
    sink: Arc<Mutex<Sink>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Chardev {
    /// Opens the backend (creates the file, binds or connects the socket) and starts its
    /// threads. A listening socket accepts one client at a time, as QEMU's `server=on`.
    pub fn open(cfg: &ChardevConfig) -> Result<Arc<Chardev>, ChardevError> {
        let id = cfg.id.clone();
        let (listener, sink) = match &cfg.backend {
            ChardevBackend::Null => (None, Sink::Null),
            ChardevBackend::File(path) => {
                let f = OpenOptions::new().create(true).append(true).open(path);
                let f = f.map_err(|source| ChardevError::File { id: id.clone(), path: path.clone(), source })?;
                (None, Sink::File(f))
            }
            ChardevBackend::Socket { address, server: true } => (Some(listen(&id, address)?), Sink::Socket(None)),
            ChardevBackend::Socket { address, server: false } => (None, Sink::Socket(Some(connect(&id, address)?))),
        };
        let (tx, rx) = sync_channel(OUTPUT_QUEUE);
        let dev = Arc::new(Chardev {
            id: id.clone(),
            // Files and null always take output; sockets once a peer is there.
            state: Mutex::new(State { frontend: None, busy_message: Vec::new(), connected: !matches!(cfg.backend, ChardevBackend::Socket { .. }), woken: false }),
            room: Condvar::new(),
            output: tx,
            unwritten: Arc::default(),
            sink: Arc::new(Mutex::new(sink)),
        });
        let thread = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(format!("chardev-{name}")).spawn(f).map(drop).map_err(|e| ChardevError::Thread(id.clone(), e))
        };
        let sink = dev.sink.clone();
        let unwritten = dev.unwritten.clone();
        thread("out", Box::new(move || write_loop(rx, sink, &unwritten)))?;
        let weak = Arc::downgrade(&dev);
        match listener {
            Some(l) => thread("in", Box::new(move || accept_loop(l, weak)))?,
            None => {
                let stream = match &*lock(&dev.sink) {
                    Sink::Socket(Some(s)) => s.try_clone().ok(),
                    _ => None,
                };
                if let Some(s) = stream {
                    dev.set_connected(true);
                    thread("in", Box::new(move || read_loop(s, &weak)))?;
                }
            }
        }
        Ok(dev)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether a host program is connected (sockets) or output has somewhere to go.
    pub fn is_connected(&self) -> bool {
        lock(&self.state).connected
    }

    /// What a listening socket tells a client that connects while another is served (the
    /// default: a line naming the chardev).
    pub fn set_busy_message(&self, message: Vec<u8>) {
        lock(&self.state).busy_message = message;
    }

    /// Waits up to `limit` for the current client (if any) to be gone; `true` once it is.
    fn wait_for_hang_up(&self, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while self.is_connected() {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Turns away a client: one at a time is served.
    fn turn_away(&self, mut stream: Stream) {
        let message = {
            let s = lock(&self.state);
            if s.busy_message.is_empty() { format!("ferrite: chardev '{}' already has a client\n", self.id).into_bytes() } else { s.busy_message.clone() }
        };
        let _ = stream.write_all(&message);
        stream.shutdown();
    }

    /// The device of the current board; it learns the connection state at once.
    pub fn attach(&self, frontend: Arc<dyn Frontend>) {
        let connected = {
            let mut s = lock(&self.state);
            s.frontend = Some(frontend.clone());
            s.woken = true;
            s.connected
        };
        frontend.connected(connected);
        self.room.notify_all();
    }

    /// Bytes to the host. Never blocks.
    pub fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // A full queue means the host side reads too slowly: drop, as a line without flow
        // control would.
        self.unwritten.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        if self.output.try_send(data.to_vec()).is_err() {
            self.unwritten.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Waits (up to `limit`) until the output queued so far is written, so that what the
    /// guest printed before the machine stopped reaches the host before the process exits.
    pub fn drain(&self, limit: Duration) {
        let start = std::time::Instant::now();
        while self.unwritten.load(std::sync::atomic::Ordering::Acquire) > 0 && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The frontend has room for more input.
    pub fn wake(&self) {
        lock(&self.state).woken = true;
        self.room.notify_all();
    }

    fn set_connected(&self, up: bool) {
        let frontend = {
            let mut s = lock(&self.state);
            s.connected = up;
            s.frontend.clone()
        };
        if let Some(f) = frontend {
            f.connected(up);
        }
    }

    /// Offers `data` to the frontend until all of it is taken (waiting for room) or the
    /// chardev is dropped.
    fn deliver(&self, mut data: &[u8]) {
        while !data.is_empty() {
            let frontend = {
                let mut s = lock(&self.state);
                s.woken = false;
                s.frontend.clone()
            };
            let taken = frontend.map(|f| f.receive(data)).unwrap_or(0);
            data = &data[taken.min(data.len())..];
            if taken == 0 {
                let s = lock(&self.state);
                if !s.woken {
                    // Woken by the frontend; the timeout covers a frontend replaced by a reset.
                    let _ = self.room.wait_timeout(s, Duration::from_millis(100));
                }
            }
        }
    }
}

fn listen(id: &str, address: &SocketAddress) -> Result<Listener, ChardevError> {
    let err = |address: String| move |source| ChardevError::Listen { id: id.to_string(), address, source };
    Ok(match address {
        SocketAddress::Tcp(a) => Listener::Tcp(TcpListener::bind(a).map_err(err(a.clone()))?),
        SocketAddress::Unix(p) => {
            // A stale socket file from an earlier run would make bind fail.
            if std::fs::symlink_metadata(p).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
                let _ = std::fs::remove_file(p);
            }
            Listener::Unix(UnixListener::bind(p).map_err(err(p.display().to_string()))?, p.clone())
        }
    })
}

fn connect(id: &str, address: &SocketAddress) -> Result<Stream, ChardevError> {
    let err = |address: String| move |source| ChardevError::Connect { id: id.to_string(), address, source };
    Ok(match address {
        SocketAddress::Tcp(a) => Stream::Tcp(TcpStream::connect(a).map_err(err(a.clone()))?),
        SocketAddress::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(err(p.display().to_string()))?),
    })
}

fn accept_loop(listener: Listener, dev: std::sync::Weak<Chardev>) {
    while let Ok(stream) = listener.accept() {
        let Some(d) = dev.upgrade() else { return };
        if !d.wait_for_hang_up(HANDOVER) {
            d.turn_away(stream);
            continue;
        }
        let Ok(reader) = stream.try_clone() else { continue };
        *lock(&d.sink) = Sink::Socket(Some(stream));
        d.set_connected(true);
        let weak = dev.clone();
        let served = std::thread::Builder::new().name(format!("chardev-{}-client", d.id)).spawn(move || {
            read_loop(reader, &weak);
            let Some(d) = weak.upgrade() else { return };
            if let Sink::Socket(Some(s)) = std::mem::replace(&mut *lock(&d.sink), Sink::Socket(None)) {
                s.shutdown();
            }
            d.set_connected(false);
        });
        if served.is_err() {
            d.set_connected(false);
        }
    }
}

fn read_loop(mut stream: Stream, dev: &std::sync::Weak<Chardev>) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => match dev.upgrade() {
                Some(d) => d.deliver(&buf[..n]),
                None => return,
            },
        }
    }
}

/// Counts a chunk as written when the writer is done with it.
struct Written<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Written<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn write_loop(chunks: Receiver<Vec<u8>>, sink: Arc<Mutex<Sink>>, unwritten: &std::sync::atomic::AtomicUsize) {
    for chunk in chunks {
        let _done = Written(unwritten);
        let mut s = lock(&sink);
        match &mut *s {
            Sink::Null => {}
            Sink::File(f) => {
                let _ = f.write_all(&chunk);
            }
            // A failed write is a hang-up, which the reader side notices and cleans up.
            Sink::Socket(Some(stream)) => {
                let _ = stream.write_all(&chunk);
            }
            Sink::Socket(None) => {}
        }
    }
}
