//! End to end, e1000 under abuse: the kernel of `guests/e1000.rs` drives ferrite's 82540EM the
//! way no sane driver would (rings and buffers outside RAM, impossible lengths, head and tail
//! beyond the ring, TSO with MSS 0, a receive ring it never empties, thousands of random register
//! writes), checking after every step that the card still answers; then it resets the card,
//! sends one frame and waits for the host's answer on a fresh ring.
//!
//! The card's backend is `-netdev socket,listen=`: a host thread connects to it and floods the
//! card with frames in QEMU's socket framing (a 4-byte big-endian length, then the frame) for
//! the whole run: broadcast frames of random sizes, runts, zero-length and oversized (9000,
//! 65535-byte) ones. It reads what the card sends, and answers the kernel's final frame with
//! [`ack_frame`]. The test checks the kernel's verdict and exit status, that the final frame
//! reached the host, and that ferrite's memory stays bounded (a card or backend that queues
//! frames it cannot deliver, or keeps an endless packet, grows without bound).

mod common;
mod guests;

use guests::e1000::{abuse, ack_frame, DONE_MARKER, ETHERTYPE, HOST_MAC, MAC_ARG, OK_LINE};
use common::rss_kib;
use guests::{boot_watched, exit_status, EXIT_OK};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The whole run; the kernel itself needs a few seconds.
const TIMEOUT: Duration = Duration::from_secs(120);
/// How long the host keeps trying to connect to ferrite's listening socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Ferrite's resident set must stay below this (64 MiB of guest RAM plus the emulator).
const RSS_LIMIT_KIB: u64 = 300 * 1024;
/// How often the RSS is sampled.
const RSS_PERIOD: Duration = Duration::from_millis(100);
/// The host's send buffer: small, so the flood follows what ferrite takes rather than piling up
/// megabytes in the kernel ahead of the ack.
const SEND_BUFFER: libc::c_int = 64 * 1024;
/// The largest frame the card may hand its backend (`FrameSink::send`: "at most 65535 bytes
/// after segmentation offloads").
const MAX_FRAME: usize = 65535;
/// Acks sent for each done frame seen.
const ACKS_PER_DONE: u32 = 3;

/// What the host side saw.
#[derive(Default)]
struct Stats {
    connected: AtomicBool,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    max_in: AtomicUsize,
    done_seen: AtomicU32,
    acks_sent: AtomicU32,
    /// Acks owed to the kernel (the writer sends them ahead of the flood).
    acks_due: AtomicU32,
    stop: AtomicBool,
    errors: Mutex<Vec<String>>,
    /// For shutting the connection down at the end.
    stream: Mutex<Option<TcpStream>>,
}

impl Stats {
    fn error(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }
}

/// xorshift64 (Marsaglia), for frame sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The size of flood frame `n`: mostly 14-1514 bytes, with runts, empty and oversized frames.
fn flood_size(n: u64, rng: &mut Rng) -> usize {
    match n % 64 {
        0 => 0,
        1 => 9000,
        2 => 65535,
        3 => (rng.next() % 14) as usize,
        4 => 1515 + (rng.next() % 8) as usize,
        _ => 14 + (rng.next() % 1501) as usize,
    }
}

fn write_frame(s: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let mut msg = Vec::with_capacity(4 + frame.len());
    msg.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    msg.extend_from_slice(frame);
    s.write_all(&msg)
}

/// Connects (retrying until ferrite listens), then floods the card and sends the acks the
/// reader asks for, until stopped or the connection fails.
fn host_writer(port: u16, stats: Arc<Stats>) -> Option<JoinHandle<()>> {
    let start = Instant::now();
    let mut stream = loop {
        if stats.stop.load(SeqCst) {
            return None;
        }
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if start.elapsed() > CONNECT_TIMEOUT => {
                stats.error(format!("could not connect to ferrite at 127.0.0.1:{port}: {e}"));
                return None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    stats.connected.store(true, SeqCst);
    let _ = stream.set_nodelay(true);
    // SAFETY: setsockopt on a socket we own, with a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &SEND_BUFFER as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt(SO_SNDBUF): {}", std::io::Error::last_os_error());
    *stats.stream.lock().unwrap() = Some(stream.try_clone().unwrap());
    let reader = {
        let stream = stream.try_clone().unwrap();
        let stats = stats.clone();
        std::thread::spawn(move || host_reader(stream, &stats))
    };

    let mut template = vec![0xffu8; 6];
    template.extend_from_slice(&HOST_MAC);
    template.extend_from_slice(&ETHERTYPE.to_be_bytes());
    template.extend((0..65535 - 14).map(|i| (i * 7 + 3) as u8));
    let ack = ack_frame();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut n = 0u64;
    while !stats.stop.load(SeqCst) {
        let due = stats.acks_due.load(SeqCst);
        let frame = if due > 0 {
            stats.acks_due.fetch_sub(1, SeqCst);
            stats.acks_sent.fetch_add(1, SeqCst);
            ack.clone()
        } else if stats.done_seen.load(SeqCst) > 0 {
            // The kernel is waiting for the ack: no more flood ahead of it.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        } else {
            let len = flood_size(n, &mut rng);
            let mut f = template[..len].to_vec();
            if len >= 22 {
                f[14..22].copy_from_slice(&n.to_be_bytes());
            }
            n += 1;
            f
        };
        match write_frame(&mut stream, &frame) {
            Ok(()) => {
                stats.frames_out.fetch_add(1, SeqCst);
                stats.bytes_out.fetch_add(frame.len() as u64, SeqCst);
            }
            Err(e) => {
                if !stats.stop.load(SeqCst) && !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
                    stats.error(format!("writing to ferrite: {e}"));
                }
                break;
            }
        }
    }
    Some(reader)
}

/// Reads the frames the card sends until the connection closes; asks for acks when the
/// kernel's done frame shows up.
fn host_reader(mut stream: TcpStream, stats: &Stats) {
    let mut len = [0u8; 4];
    let mut frame = Vec::new();
    loop {
        if let Err(e) = stream.read_exact(&mut len) {
            if e.kind() != ErrorKind::UnexpectedEof && e.kind() != ErrorKind::ConnectionReset && !stats.stop.load(SeqCst) {
                stats.error(format!("reading from ferrite: {e}"));
            }
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > 16 << 20 {
            stats.error(format!("ferrite sent a frame length of {n} bytes: the stream is corrupt"));
            return;
        }
        frame.resize(n, 0);
        if let Err(e) = stream.read_exact(&mut frame) {
            if !stats.stop.load(SeqCst) {
                stats.error(format!("reading a {n}-byte frame from ferrite: {e}"));
            }
            return;
        }
        stats.frames_in.fetch_add(1, SeqCst);
        stats.bytes_in.fetch_add(n as u64, SeqCst);
        stats.max_in.fetch_max(n, SeqCst);
        if frame.windows(DONE_MARKER.len()).any(|w| w == DONE_MARKER) {
            stats.done_seen.fetch_add(1, SeqCst);
            stats.acks_due.fetch_add(ACKS_PER_DONE, SeqCst);
        }
    }
}

/// A free TCP port on the loopback interface (bound, then released for ferrite to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn e1000_survives_ring_abuse() {
    let kernel = abuse();
    let port = free_port();
    let netdev = format!("socket,id=s0,listen=127.0.0.1:{port}");
    let device = format!("e1000,netdev=s0,mac={MAC_ARG}");
    // boot() adds -m 64 and isa-debug-exit at 0xf4.
    let args = ["-nodefaults", "-netdev", &netdev, "-device", &device];

    let stats = Arc::new(Stats::default());
    let writer = {
        let stats = stats.clone();
        std::thread::spawn(move || host_writer(port, stats))
    };
    let mut peak_kib = 0u64;
    let mut samples = 0u32;
    let mut last: Option<Instant> = None;
    let run = boot_watched("network_abuse", &kernel, &args, TIMEOUT, |pid| {
        if last.is_none_or(|t| t.elapsed() >= RSS_PERIOD) {
            last = Some(Instant::now());
            if let Some((rss, hwm)) = rss_kib(pid) {
                peak_kib = peak_kib.max(rss).max(hwm);
                samples += 1;
            }
        }
    });

    // Ferrite is gone: stop the flood and wait for both host threads.
    stats.stop.store(true, SeqCst);
    if let Some(s) = stats.stream.lock().unwrap().take() {
        let _ = s.shutdown(Shutdown::Both);
    }
    let reader = writer.join().expect("host writer panicked");
    if let Some(r) = reader {
        r.join().expect("host reader panicked");
    }

    let errors = stats.errors.lock().unwrap().clone();
    let summary = format!(
        "host: connected {}, sent {} frames ({} bytes), received {} frames ({} bytes, largest {}), \
         done frames seen {}, acks sent {}; ferrite peak RSS {} MiB over {samples} samples; errors {errors:?}",
        stats.connected.load(SeqCst),
        stats.frames_out.load(SeqCst),
        stats.bytes_out.load(SeqCst),
        stats.frames_in.load(SeqCst),
        stats.bytes_in.load(SeqCst),
        stats.max_in.load(SeqCst),
        stats.done_seen.load(SeqCst),
        stats.acks_sent.load(SeqCst),
        peak_kib / 1024,
    );
    print!("{}", run.serial);
    println!("{summary}");
    let context = format!("{}\n{summary}", run.context);

    assert!(stats.connected.load(SeqCst), "the host never connected to ferrite's socket backend\n{context}");
    assert!(run.serial.contains(OK_LINE), "the kernel did not finish ({OK_LINE} missing)\n{context}");
    assert_eq!(run.status, Some(exit_status(EXIT_OK)), "{context}");
    assert!(stats.done_seen.load(SeqCst) > 0, "the kernel's final frame never reached the host\n{context}");
    assert!(errors.is_empty(), "host-side errors: {errors:?}\n{context}");
    assert!(samples > 0, "no RSS sample taken\n{context}");
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "ferrite's RSS peaked at {} MiB, above {} MiB: something queues without bound\n{context}",
        peak_kib / 1024,
        RSS_LIMIT_KIB / 1024
    );
    assert!(
        stats.max_in.load(SeqCst) <= MAX_FRAME,
        "the card handed its backend a {}-byte frame, more than {MAX_FRAME}\n{context}",
        stats.max_in.load(SeqCst)
    );
}
