//! The byte level of a gdb connection: a non-blocking TCP stream, and a framer that lets only
//! well-formed packets reach the protocol engine.
//!
//! `gdbstub` ends a session on any framing error (a stray byte, a bad checksum, a NAK). The
//! framer in front of it absorbs those as the remote protocol asks: bytes outside a packet are
//! ignored, a packet with a bad checksum is answered with `-` (the client resends it), an
//! over-long packet is answered with an error, and `+`/`-` acknowledgements are consumed here.

use gdbstub::conn::Connection;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Longest packet accepted (and advertised to gdb as PacketSize).
pub(crate) const PACKET_SIZE: usize = 0x4000;
/// How long a write may wait for a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `fd` is readable (or writable) or `timeout` passes. `true` if ready (errors and
/// hang-ups count as ready: the next read reports them).
pub(crate) fn wait_fd(fd: i32, write: bool, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd { fd, events: if write { libc::POLLOUT } else { libc::POLLIN }, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, owned by this frame, for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// The stub's side of the connection: writes are buffered and sent on `flush`.
pub(crate) struct GdbConn {
    stream: TcpStream,
    out: Vec<u8>,
    /// Drop output (replaying negotiation packets into a restarted protocol engine).
    pub mute: bool,
}

impl GdbConn {
    pub fn new(stream: TcpStream) -> Self {
        GdbConn { stream, out: Vec::new(), mute: false }
    }

    /// Sends raw bytes now (framer replies that bypass the protocol engine).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        self.flush_out()
    }

    fn flush_out(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut sent = 0;
        while sent < self.out.len() {
            match Write::write(&mut self.stream, &self.out[sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "gdb client does not read"));
                    }
                    wait_fd(self.stream.as_raw_fd(), true, left);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        Ok(())
    }
}

impl Connection for GdbConn {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        if !self.mute {
            self.out.push(byte);
        }
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if !self.mute {
            self.out.extend_from_slice(buf);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.mute {
            self.out.clear();
            return Ok(());
        }
        self.flush_out()
    }

    fn on_session_start(&mut self) -> io::Result<()> {
        self.stream.set_nodelay(true)
    }
}

/// A unit the framer hands on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete packet with a valid checksum, `$...#xx` as received.
    Packet(Vec<u8>),
    /// The interrupt byte (Ctrl-C).
    Interrupt,
    /// A packet whose checksum did not match: answer `-`.
    BadChecksum,
    /// A packet longer than `PACKET_SIZE`: answer with an error.
    TooLong,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    Body,
    Sum1,
    Sum2,
}

pub(crate) struct Framer {
    state: State,
    buf: Vec<u8>,
    sum: u8,
    overflow: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { state: State::Outside, buf: Vec::new(), sum: 0, overflow: false }
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl Framer {
    pub fn push(&mut self, b: u8) -> Option<Frame> {
        match self.state {
            State::Outside => match b {
                b'$' => {
                    self.state = State::Body;
                    self.buf.clear();
                    self.buf.push(b);
                    self.sum = 0;
                    self.overflow = false;
                    None
                }
                0x03 => Some(Frame::Interrupt),
                // Acknowledgements (and anything else between packets) are consumed here.
                _ => None,
            },
            State::Body => {
                if b == b'#' {
                    self.state = State::Sum1;
                } else if b == b'$' {
                    // A new packet start inside a packet: the first one was cut short.
                    self.buf.clear();
                    self.sum = 0;
                    self.overflow = false;
                } else {
                    self.sum = self.sum.wrapping_add(b);
                }
                self.keep(b);
                None
            }
            State::Sum1 => {
                self.state = State::Sum2;
                self.keep(b);
                None
            }
            State::Sum2 => {
                self.state = State::Outside;
                self.keep(b);
                if self.overflow {
                    return Some(Frame::TooLong);
                }
                let n = self.buf.len();
                let sum = hex(self.buf[n - 2]).zip(hex(b)).map(|(h, l)| h << 4 | l);
                if sum != Some(self.sum) {
                    return Some(Frame::BadChecksum);
                }
                Some(Frame::Packet(std::mem::take(&mut self.buf)))
            }
        }
    }

    fn keep(&mut self, b: u8) {
        if self.buf.len() < PACKET_SIZE {
            self.buf.push(b);
        } else {
            self.overflow = true;
        }
    }
}

/// Reads what the client sent, without blocking. `Ok(0)`: nothing yet; `Err`: the connection
/// is gone (EOF included).
pub(crate) fn read_available(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    match stream.read(buf) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => Ok(n),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<Frame> {
        let mut f = Framer::default();
        input.iter().filter_map(|&b| f.push(b)).collect()
    }

    #[test]
    fn passes_valid_packets_and_interrupts() {
        assert_eq!(frames(b"+$g#67"), vec![Frame::Packet(b"$g#67".to_vec())]);
        assert_eq!(frames(b"\x03"), vec![Frame::Interrupt]);
    }

    #[test]
    fn absorbs_garbage() {
        assert_eq!(frames(b"hello-+\xff"), vec![]);
        assert_eq!(frames(b"$g#00"), vec![Frame::BadChecksum]);
        assert_eq!(frames(b"$g#zz"), vec![Frame::BadChecksum]);
        // A packet restarted mid-way keeps only the second one.
        assert_eq!(frames(b"$m10$g#67"), vec![Frame::Packet(b"$g#67".to_vec())]);
        let mut long = vec![b'$'];
        long.extend(std::iter::repeat_n(b'a', PACKET_SIZE * 2));
        long.extend_from_slice(b"#00$g#67");
        assert_eq!(frames(&long), vec![Frame::TooLong, Frame::Packet(b"$g#67".to_vec())]);
    }
}
