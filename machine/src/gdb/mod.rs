//! The gdbstub: gdb's remote serial protocol over TCP, built on the `gdbstub` crate.
//!
//! Options (QEMU's): `-s` listens on 127.0.0.1:1234, `-gdb tcp::PORT` on 127.0.0.1:PORT,
//! `-gdb tcp:HOST:PORT` on HOST:PORT; `-S` keeps the CPU stopped until gdb continues it.
//!
//! How it runs: the machine loop ([`run`]) executes the guest in slices and polls the
//! connection between them (Ctrl-C from gdb arrives as a 0x03 byte); while the guest is stopped
//! it waits on the socket (the guest clock stands still meanwhile). One client at a time; when
//! it goes away another may connect. The protocol engine is `gdbstub`'s non-blocking
//! `GdbStubStateMachine`; [`conn`] frames bytes in front of it so malformed input is answered
//! instead of ending the session.
//!
//! Behaviour, as QEMU's:
//! - A new connection stops the guest; every breakpoint and watchpoint of an earlier client is
//!   forgotten.
//! - `detach` removes all breakpoints and lets the guest run; `kill` ends ferrite.
//! - A client that disappears (or disconnects mid-packet) leaves the guest as it was: running
//!   on, or stopped and waiting for the next client; its breakpoints are removed.
//! - Single steps run with interrupts masked (`monitor step-interrupts on` delivers them); a
//!   step on a halted CPU waits for the interrupt that wakes it and stops at its handler.
//! - Breakpoints never modify guest memory: the CPU compares each instruction's linear address
//!   (CS base + RIP) with the list, so they work from the first instruction (the reset vector
//!   or a kernel entry point), before paging, and across mode switches. Watchpoints trap after
//!   the accessing instruction.
//! - Registers: always the amd64 layout plus system registers (see [`arch`]). Memory: by
//!   virtual address through the guest's page tables, or physical with `monitor phys on` (see
//!   [`memory`]). `monitor help` lists the monitor commands.
//! - Each vCPU is a gdb thread.

mod arch;
mod conn;
mod memory;
mod monitor;
mod regs;
mod target;

pub use arch::{FerriteX86, X86Regs, REGS};

use crate::{control, Console, Machine, MachineError, Outcome, Slice, SliceEnd};
use conn::{read_available, wait_fd, Frame, Framer, GdbConn, PACKET_SIZE};
use ferrite_cpu::state::Seg;
use crate::accel::VmExit;
use ferrite_cpu::Watchpoint;
use gdbstub::common::Signal;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::breakpoints::WatchKind as GdbWatchKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// How long the loop waits on the socket while the guest is stopped (it also services the
/// console in between).
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Instructions per vCPU and slice while a debugger may be listening: the connection (Ctrl-C,
/// a new client) is polled between slices.
const GDB_SLICE: u64 = 20_000;

/// What the guest does under the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exec {
    Paused,
    Continue,
    Step,
}

/// The debugger's view of the machine: run state, breakpoints and settings.
pub(crate) struct DebugState {
    pub exec: Exec,
    /// The resume being prepared is a single step (set between gdb's resume actions).
    pub resume_step: bool,
    /// A continue starts with one instruction executed past a breakpoint at RIP.
    pub step_over: bool,
    /// gdb addresses are physical (`monitor phys on`).
    pub phys: bool,
    /// Deliver interrupts during single steps (`monitor step-interrupts on`).
    pub step_irqs: bool,
    pub sw_breakpoints: Vec<u64>,
    pub hw_breakpoints: Vec<u64>,
    pub watchpoints: Vec<(Watchpoint, GdbWatchKind)>,
    /// The vCPU that stopped last or that gdb addressed last (memory, monitor, steps).
    pub current: usize,
}

impl DebugState {
    pub fn new(start_paused: bool) -> Self {
        DebugState {
            exec: if start_paused { Exec::Paused } else { Exec::Continue },
            resume_step: false,
            step_over: false,
            phys: false,
            step_irqs: false,
            sw_breakpoints: Vec::new(),
            hw_breakpoints: Vec::new(),
            watchpoints: Vec::new(),
            current: 0,
        }
    }
}

type Stub = GdbStubStateMachine<'static, Machine, GdbConn>;

/// What came of feeding the protocol engine.
enum Flow {
    Go,
    /// The client detached, killed the machine or saw it exit.
    Disconnected(DisconnectReason),
    /// The connection is gone.
    Closed,
}

/// Packets that set up a session, replayed into a restarted protocol engine:
/// `qSupported`, `Hg`, `Hc`.
const SETUP_PREFIXES: [&[u8]; 3] = [b"$qSupported", b"$Hg", b"$Hc"];

struct Session {
    stub: Option<Stub>,
    /// The read side of the socket (the engine's `GdbConn` writes through a clone).
    stream: TcpStream,
    framer: Framer,
    setup: [Option<Vec<u8>>; 3],
}

/// The listening socket and the current client, if any.
pub struct GdbServer {
    listener: TcpListener,
    addr: SocketAddr,
    session: Option<Session>,
}

fn new_stub(m: &mut Machine, stream: &TcpStream, mute: bool) -> Option<Stub> {
    let mut conn = GdbConn::new(stream.try_clone().ok()?);
    conn.mute = mute;
    GdbStub::builder(conn).packet_buffer_size(PACKET_SIZE).build().ok()?.run_state_machine(m).ok()
}

fn conn_of(stub: &mut Stub) -> &mut GdbConn {
    match stub {
        GdbStubStateMachine::Idle(s) => s.borrow_conn(),
        GdbStubStateMachine::Running(s) => s.borrow_conn(),
        GdbStubStateMachine::CtrlCInterrupt(s) => s.borrow_conn(),
        GdbStubStateMachine::Disconnected(s) => s.borrow_conn(),
    }
}

/// The linear address of the next instruction.
fn linear_pc(m: &Machine, cpu: usize) -> u64 {
    let st = &m.vcpus[cpu].cpu.state;
    let lin = st.seg(Seg::Cs).base.wrapping_add(st.rip);
    if st.long_mode_active() {
        lin
    } else {
        lin & 0xffff_ffff
    }
}

/// Why the CPU stopped with `RunExit::Debug`.
fn debug_stop_reason(m: &mut Machine, cpu: usize) -> MultiThreadStopReason<u64> {
    let tid = target::tid_of(cpu);
    if let Some(hit) = m.vcpus[cpu].cpu.take_watch_hit() {
        let kind = m.debug.watchpoints.iter().find(|(w, _)| *w == hit.watch).map_or(GdbWatchKind::Write, |&(_, k)| k);
        return MultiThreadStopReason::Watch { tid, kind, addr: hit.watch.lin };
    }
    let pc = linear_pc(m, cpu);
    if m.debug.sw_breakpoints.contains(&pc) {
        MultiThreadStopReason::SwBreak(tid)
    } else if m.debug.hw_breakpoints.contains(&pc) {
        MultiThreadStopReason::HwBreak(tid)
    } else {
        MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP }
    }
}

impl Session {
    /// Brings the engine's state and the machine's in line after a transition: a pending
    /// Ctrl-C stops the guest, an idle engine means a stopped guest.
    fn settle(&mut self, m: &mut Machine) -> Flow {
        match self.stub.take() {
            Some(GdbStubStateMachine::CtrlCInterrupt(s)) => {
                m.debug.exec = Exec::Paused;
                let reason = MultiThreadStopReason::SignalWithThread { tid: target::tid_of(m.debug.current), signal: Signal::SIGINT };
                match s.interrupt_handled(m, Some(reason)) {
                    Ok(next) => {
                        self.stub = Some(next);
                        self.settle(m)
                    }
                    Err(_) => Flow::Closed,
                }
            }
            Some(GdbStubStateMachine::Disconnected(s)) => {
                let reason = s.get_reason();
                self.stub = Some(GdbStubStateMachine::Disconnected(s));
                Flow::Disconnected(reason)
            }
            Some(GdbStubStateMachine::Idle(s)) => {
                m.debug.exec = Exec::Paused;
                self.stub = Some(GdbStubStateMachine::Idle(s));
                Flow::Go
            }
            Some(running) => {
                self.stub = Some(running);
                Flow::Go
            }
            None => Flow::Closed,
        }
    }

    /// Feeds bytes to the engine. `restart`: a protocol error restarts the engine (else it
    /// ends the session: used while replaying into a restarted one).
    fn feed(&mut self, m: &mut Machine, bytes: &[u8], restart: bool) -> Flow {
        for &b in bytes {
            let res = match self.stub.take() {
                Some(GdbStubStateMachine::Idle(s)) => s.incoming_data(m, b),
                Some(GdbStubStateMachine::Running(s)) => s.incoming_data(m, b),
                other => {
                    self.stub = other;
                    match self.settle(m) {
                        Flow::Go => continue,
                        flow => return flow,
                    }
                }
            };
            match res {
                Ok(next) => self.stub = Some(next),
                Err(e) if e.is_connection_error() || !restart => return Flow::Closed,
                Err(_) => return self.restart(m),
            }
            match self.settle(m) {
                Flow::Go => {}
                flow => return flow,
            }
        }
        Flow::Go
    }

    /// A fresh protocol engine after `gdbstub` rejected a packet: the session's negotiation is
    /// replayed silently, the rejected packet is answered with an error, and the guest stops
    /// (a new engine starts out stopped).
    fn restart(&mut self, m: &mut Machine) -> Flow {
        m.debug.exec = Exec::Paused;
        let Some(stub) = new_stub(m, &self.stream, true) else { return Flow::Closed };
        self.stub = Some(stub);
        for p in self.setup.clone().into_iter().flatten() {
            if !matches!(self.feed(m, &p, false), Flow::Go) {
                return Flow::Closed;
            }
        }
        let Some(stub) = self.stub.as_mut() else { return Flow::Closed };
        let conn = conn_of(stub);
        conn.mute = false;
        // The failed engine's acknowledgement was buffered and lost with it: send both.
        match conn.send_raw(b"+$E01#a6") {
            Ok(()) => self.settle(m),
            Err(_) => Flow::Closed,
        }
    }

    fn handle_frame(&mut self, m: &mut Machine, frame: Frame) -> Flow {
        match frame {
            Frame::Packet(p) => {
                if let Some(i) = SETUP_PREFIXES.iter().position(|pre| p.starts_with(pre)) {
                    self.setup[i] = Some(p.clone());
                }
                self.feed(m, &p, true)
            }
            Frame::Interrupt => self.feed(m, &[0x03], true),
            Frame::BadChecksum => self.send_raw(b"-"),
            Frame::TooLong => self.send_raw(b"+$E01#a6"),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Flow {
        match self.stub.as_mut().map(|s| conn_of(s).send_raw(bytes)) {
            Some(Ok(())) => Flow::Go,
            _ => Flow::Closed,
        }
    }

    /// Tells gdb why the guest stopped (only while the engine is in its running state).
    fn report(&mut self, m: &mut Machine, reason: MultiThreadStopReason<u64>) -> Flow {
        match self.stub.take() {
            Some(GdbStubStateMachine::Running(s)) => match s.report_stop(m, reason) {
                Ok(next) => {
                    self.stub = Some(next);
                    self.settle(m)
                }
                Err(_) => Flow::Closed,
            },
            other => {
                self.stub = other;
                self.settle(m)
            }
        }
    }
}

impl GdbServer {
    /// Listens on `addr` ("HOST:PORT"); port 0 picks a free port.
    pub fn bind(addr: &str) -> Result<Self, MachineError> {
        let err = |source| MachineError::GdbListen { addr: addr.to_string(), source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        Ok(GdbServer { listener, addr, session: None })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts a client if one is waiting (waiting up to `wait` for one).
    fn accept(&mut self, m: &mut Machine, wait: Duration) {
        if !wait.is_zero() {
            wait_fd(self.listener.as_raw_fd(), false, wait);
        }
        let stream = match self.listener.accept() {
            Ok((stream, _peer)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // Out of descriptors and the like: try again later.
                eprintln!("ferrite: gdb: cannot accept a connection: {e}");
                std::thread::sleep(IDLE_WAIT);
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        // A debugger's arrival stops the guest, and the last client's breakpoints go.
        m.debug.exec = Exec::Paused;
        m.clear_debug_points();
        let Some(stub) = new_stub(m, &stream, false) else { return };
        self.session = Some(Session { stub: Some(stub), stream, framer: Framer::default(), setup: Default::default() });
    }

    /// Ends the session after the client went away or detached.
    fn end_session(&mut self, m: &mut Machine, detached: bool) {
        self.session = None;
        m.clear_debug_points();
        m.debug.exec = match m.debug.exec {
            _ if detached => Exec::Continue,
            Exec::Step => Exec::Paused,
            e => e,
        };
    }

    /// Reads and handles what the client sent (waiting up to `wait` for it).
    fn pump(&mut self, m: &mut Machine, wait: Duration) -> Option<Outcome> {
        let sess = self.session.as_mut()?;
        if !wait.is_zero() {
            wait_fd(sess.stream.as_raw_fd(), false, wait);
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = match read_available(&mut sess.stream, &mut buf) {
                Ok(n) => n,
                Err(_) => {
                    self.end_session(m, false);
                    return None;
                }
            };
            for &b in &buf[..n] {
                let Some(frame) = sess.framer.push(b) else { continue };
                match sess.handle_frame(m, frame) {
                    Flow::Go => {}
                    flow => return self.after(m, flow),
                }
            }
            if n < buf.len() {
                return None;
            }
        }
    }

    /// Acts on a session-ending flow; `Some` when ferrite must exit.
    fn after(&mut self, m: &mut Machine, flow: Flow) -> Option<Outcome> {
        match flow {
            Flow::Go => None,
            Flow::Closed => {
                self.end_session(m, false);
                None
            }
            Flow::Disconnected(DisconnectReason::Kill) => {
                self.session = None;
                Some(Outcome::Killed)
            }
            Flow::Disconnected(DisconnectReason::Disconnect) => {
                self.end_session(m, true);
                None
            }
            // The guest's exit was reported; the caller returns its outcome.
            Flow::Disconnected(_) => {
                self.session = None;
                None
            }
        }
    }

    /// Reports a stop to the client (if one is attached).
    fn stop(&mut self, m: &mut Machine, reason: MultiThreadStopReason<u64>) -> Option<Outcome> {
        m.debug.exec = Exec::Paused;
        let flow = match self.session.as_mut() {
            Some(sess) => sess.report(m, reason),
            None => return None,
        };
        self.after(m, flow)
    }

    /// Tells an attached client that the machine is ending.
    fn finish(&mut self, m: &mut Machine, outcome: Outcome) {
        let reason = match outcome {
            Outcome::TripleFault => MultiThreadStopReason::Terminated(Signal::SIGSEGV),
            other => MultiThreadStopReason::Exited(other.exit_code() as u8),
        };
        if let Some(sess) = self.session.as_mut() {
            let _ = sess.report(m, reason);
        }
        self.session = None;
    }
}

/// The machine loop with a gdb server: see the module documentation.
pub(crate) fn run(m: &mut Machine, server: &mut GdbServer, console: &mut Console) -> Result<Outcome, MachineError> {
    loop {
        if let Some(outcome) = m.service_console(console) {
            server.finish(m, outcome);
            return Ok(outcome);
        }
        let paused = m.debug.exec == Exec::Paused;
        if matches!(m.control.run_state(), control::RunState::Running | control::RunState::Debug | control::RunState::Prelaunch) {
            m.control.set_run_state(if paused { control::RunState::Debug } else { control::RunState::Running });
        }
        m.run_pending_jobs();
        if let Some(outcome) = m.finish.take() {
            server.finish(m, outcome);
            return Ok(outcome);
        }
        if paused {
            m.board.wiring.clock.pause();
        } else {
            m.board.wiring.clock.resume();
        }
        if server.session.is_none() {
            server.accept(m, if paused { IDLE_WAIT } else { Duration::ZERO });
        }
        if server.session.is_some() {
            let wait = if m.debug.exec == Exec::Paused { IDLE_WAIT } else { Duration::ZERO };
            if let Some(outcome) = server.pump(m, wait) {
                return Ok(outcome);
            }
        }
        let slice = match m.debug.exec {
            Exec::Paused => continue,
            Exec::Continue => {
                let at_break = (0..m.vcpus.len()).find(|&i| m.vcpus[i].cpu.breakpoints.contains(&linear_pc(m, i)));
                match at_break.filter(|_| std::mem::take(&mut m.debug.step_over)) {
                    // Step the CPUs sitting on a breakpoint past it first.
                    Some(cpu) => Slice::Step { cpu, irqs: false },
                    None => Slice::Run(GDB_SLICE),
                }
            }
            // A halted CPU first waits for the interrupt that wakes it.
            Exec::Step if m.vcpus[m.debug.current].cpu.halted => Slice::Run(0),
            Exec::Step => Slice::Step { cpu: m.debug.current, irqs: m.debug.step_irqs },
        };
        let stepping = m.debug.exec == Exec::Step;
        let exit = match m.run_slice(slice)? {
            SliceEnd::Done(outcome) => {
                server.finish(m, outcome);
                return Ok(outcome);
            }
            SliceEnd::Exit(cpu, exit) => (cpu, exit),
        };
        let reason = match exit {
            (cpu, VmExit::Debug) => {
                m.debug.current = cpu;
                debug_stop_reason(m, cpu)
            }
            (_, VmExit::Halted) if stepping => continue,
            _ if stepping => MultiThreadStopReason::SignalWithThread { tid: target::tid_of(m.debug.current), signal: Signal::SIGTRAP },
            _ => continue,
        };
        if let Some(outcome) = server.stop(m, reason) {
            return Ok(outcome);
        }
    }
}
