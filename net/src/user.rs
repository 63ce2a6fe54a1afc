//! `-netdev user`: libslirp's user-mode network stack, as QEMU's user networking.
//!
//! The guest sees a gateway (10.0.2.2 by default) that NATs its TCP and UDP through the
//! host's own sockets, a DHCP server handing out 10.0.2.15 onwards, a DNS forwarder at
//! 10.0.2.3, and IPv6 (fec0::/64) alike; `hostfwd=` rules forward host ports to the guest.
//! Everything runs on the backend thread: libslirp's sockets and timers are polled there.

mod slirp;

use std::cell::RefCell;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use crate::options::{FwdProtocol, HostFwd, UserOptions};
use crate::queue::RxQueue;
use crate::sys::PollSet;
use crate::worker::Driver;
use crate::{NetError, Stats};

pub(crate) struct UserDriver {
    slirp: slirp::Slirp,
    stats: Arc<Stats>,
}

impl UserDriver {
    pub(crate) fn open(opts: &UserOptions, queue: RxQueue, stats: Arc<Stats>) -> Result<Self, NetError> {
        let mut slirp = slirp::Slirp::new(opts, queue)?;
        for fwd in &opts.hostfwd {
            let udp = fwd.protocol == FwdProtocol::Udp;
            if slirp.add_hostfwd(udp, fwd.host, fwd.guest).is_err() {
                return Err(hostfwd_error(fwd));
            }
        }
        Ok(UserDriver { slirp, stats })
    }
}

/// libslirp reports only that a forward failed: bind the host address ourselves to learn
/// why (nearly always: the port is in use).
fn hostfwd_error(fwd: &HostFwd) -> NetError {
    let probe = match fwd.protocol {
        FwdProtocol::Tcp => TcpListener::bind(fwd.host).map(drop),
        FwdProtocol::Udp => UdpSocket::bind(fwd.host).map(drop),
    };
    let source = probe.err().unwrap_or_else(|| io::Error::other("libslirp could not set up the forward"));
    NetError::Hostfwd { rule: fwd.to_string(), port: fwd.host.port(), source }
}

impl Driver for UserDriver {
    fn queue(&self) -> &RefCell<RxQueue> {
        self.slirp.queue()
    }

    fn transmit(&mut self, frame: &[u8]) {
        self.slirp.input(frame);
        Stats::bump(&self.stats.tx_frames);
    }

    fn prepare(&mut self, polls: &mut PollSet, receive: bool) -> Option<Duration> {
        self.slirp.fill(polls, receive)
    }

    fn dispatch(&mut self, polls: &PollSet) {
        self.slirp.poll(polls, false);
    }
}
