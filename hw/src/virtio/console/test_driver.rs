//! The driver side for the device tests: rings over real guest memory without the PCI
//! transport, and the steps Linux's virtio_console takes.

use super::*;
use crate::testing::{FakeLine, FakeMsi};
use crate::virtio::interrupt::Shared;
use crate::virtio::queue::{QueueConfig, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use crate::virtio::queue_tests::{restored_rings, GuestRing, RAM};
use crate::virtio::{Interrupt, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1};
use ferrite_memory::{Dma, GuestMemory};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub(super) const MODERN: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_CONSOLE_F_MULTIPORT;
/// Linux's `VIRTIO_CONSOLE_BAD_ID`, the id of `DEVICE_READY`.
pub(super) const NO_PORT: u32 = u32::MAX;

/// Rings: one 0x4000 slot per queue; buffers: one bump allocator above them.
const RING_BASE: u64 = 0x1_0000;
const RING_STRIDE: u64 = 0x4000;
const BUF_BASE: u64 = 0x20_0000;

/// Records what the guest wrote.
pub(super) struct Recorder {
    data: Mutex<Vec<u8>>,
    connected: bool,
}

impl Recorder {
    pub fn new(connected: bool) -> Self {
        Recorder { data: Mutex::default(), connected }
    }

    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.data.lock().unwrap())
    }
}

impl PortOutput for Recorder {
    fn write(&self, data: &[u8]) {
        self.data.lock().unwrap().extend_from_slice(data);
    }
    fn host_connected(&self) -> bool {
        self.connected
    }
}

/// A port to create: name, console, host connected.
pub(super) struct Spec(pub Option<&'static str>, pub bool, pub bool);

/// A device, its port handles and outputs, and the driver side of its queues.
pub(super) struct Console {
    pub dev: VirtioConsole,
    pub handles: Vec<PortHandle>,
    pub outputs: Vec<Arc<Recorder>>,
    pub wakes: Vec<Arc<AtomicUsize>>,
    pub shared: Arc<Shared>,
    pub line: Arc<FakeLine>,
    pub rings: Vec<GuestRing>,
    pub dma: Dma,
    features: u64,
    next_desc: Vec<u16>,
    next_buf: u64,
    /// Writable buffer of each outstanding chain, by queue and head.
    posted: Vec<HashMap<u16, (u64, u32)>>,
}

pub(super) fn console(specs: &[Spec], max_nr_ports: u32) -> Console {
    let outputs: Vec<Arc<Recorder>> = specs.iter().map(|s| Arc::new(Recorder::new(s.2))).collect();
    let ports = specs
        .iter()
        .zip(&outputs)
        .map(|(s, o)| PortConfig { name: s.0.map(String::from), is_console: s.1, output: o.clone() })
        .collect();
    let opts = VirtioConsoleOptions { max_nr_ports, ..Default::default() };
    let (dev, handles) = VirtioConsole::new(ports, opts).unwrap();
    let wakes: Vec<Arc<AtomicUsize>> = handles.iter().map(|_| Arc::default()).collect();
    for (h, w) in handles.iter().zip(&wakes) {
        let w = w.clone();
        h.set_rx_waker(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let queues = dev.queue_max_sizes().len();
    let shared = Arc::new(Shared::new(queues, None));
    let line = Arc::new(FakeLine::default());
    shared.attach(line.clone(), Arc::new(FakeMsi::default()));
    let dma = Dma::new(Arc::new(GuestMemory::new(RAM, 0).unwrap()));
    Console {
        dev,
        handles,
        outputs,
        wakes,
        shared,
        line,
        rings: Vec::new(),
        dma,
        features: 0,
        next_desc: Vec::new(),
        next_buf: BUF_BASE,
        posted: Vec::new(),
    }
}

/// A running device with `specs`, after DRIVER_OK with `features`.
pub(super) fn running(specs: &[Spec], features: u64) -> Console {
    let mut c = console(specs, 4);
    c.activate(features);
    c
}

impl Console {
    /// Fresh rings for every queue, then DRIVER_OK.
    pub fn activate(&mut self, features: u64) {
        let (queues, interrupt) = self.setup_rings(features);
        self.start(features, queues, interrupt);
    }

    /// Fresh rings for every queue, and the queues and interrupt handle the transport would
    /// pass at DRIVER_OK.
    pub fn setup_rings(&mut self, features: u64) -> (Vec<Queue>, Interrupt) {
        let interrupt = Interrupt::new(self.shared.clone(), self.shared.epoch());
        let sizes = self.dev.queue_max_sizes().to_vec();
        self.rings.clear();
        let mut queues = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let base = RING_BASE + RING_STRIDE * i as u64;
            let (desc, avail, used) = (base, base + 0x1000, base + 0x2000);
            self.rings.push(GuestRing::new(self.dma.clone(), size, desc, avail, used));
            let cfg = QueueConfig { size, ready: true, desc_table: desc, avail_ring: avail, used_ring: used };
            queues.push(Queue::new(i as u16, cfg, features, self.dma.clone(), interrupt.clone()));
        }
        self.features = features;
        self.next_desc = vec![0; sizes.len()];
        self.posted = vec![HashMap::new(); sizes.len()];
        (queues, interrupt)
    }

    /// A freshly built device with ports `specs` (as configured on the destination) and a
    /// copy of this one's guest RAM, loaded as a machine loads a snapshot: the device's
    /// section first, then the transport's, whose restore re-activates the device with every
    /// ring where its used index stands. The driver side carries on with the same rings.
    pub fn restored(&self, specs: &[Spec]) -> Console {
        let mut b = console(specs, self.dev.opts.max_nr_ports);
        let interrupt = Interrupt::new(b.shared.clone(), b.shared.epoch());
        let (queues, rings) = restored_rings(&self.rings, &b.dma, self.features, &interrupt);
        ferrite_persist::load(&mut b.dev, &ferrite_persist::save(&self.dev, "00:04.0 part0")).unwrap();
        b.rings = rings;
        (b.features, b.next_desc, b.next_buf) = (self.features, self.next_desc.clone(), self.next_buf);
        b.posted = self.posted.clone();
        b.start(self.features, queues, interrupt);
        b
    }

    /// DRIVER_OK.
    pub fn start(&mut self, features: u64, queues: Vec<Queue>, interrupt: Interrupt) {
        let ctx = ActivateContext { features, queues, interrupt, dma: self.dma.clone() };
        self.dev.activate(ctx).unwrap();
    }

    /// Device reset as the transport does it.
    pub fn reset(&mut self) {
        self.shared.reset();
        self.dev.reset();
    }

    pub fn alloc(&mut self, len: u64) -> u64 {
        if self.next_buf + len > RAM {
            self.next_buf = BUF_BASE;
        }
        let addr = self.next_buf;
        self.next_buf += len.max(1).div_ceil(16) * 16;
        addr
    }

    /// Makes a chain available on queue `q`: `readable` bytes, then one writable buffer of
    /// `writable` bytes (if not 0). Does not notify.
    pub fn offer(&mut self, q: u16, readable: &[u8], writable: u32) -> u16 {
        let qi = usize::from(q);
        let size = self.rings[qi].size;
        let head = self.next_desc[qi];
        let mut index = head;
        let parts = usize::from(!readable.is_empty()) + usize::from(writable > 0);
        for part in 0..parts {
            let next = (index + 1) % size;
            let more = if part + 1 < parts { VIRTQ_DESC_F_NEXT } else { 0 };
            if part == 0 && !readable.is_empty() {
                let addr = self.alloc(readable.len() as u64);
                self.dma.write(addr, readable).unwrap();
                self.rings[qi].set_desc(index, addr, readable.len() as u32, more, next);
            } else {
                let addr = self.alloc(u64::from(writable));
                self.rings[qi].set_desc(index, addr, writable, more | VIRTQ_DESC_F_WRITE, next);
                self.posted[qi].insert(head, (addr, writable));
            }
            index = next;
        }
        self.next_desc[qi] = index;
        self.rings[qi].push(head);
        head
    }

    /// The bytes the device wrote into the chains it returned on queue `q` since the last call.
    pub fn take_written(&mut self, q: u16) -> Vec<Vec<u8>> {
        let qi = usize::from(q);
        let used = self.rings[qi].take_used();
        used.into_iter()
            .map(|(head, len)| {
                let (addr, cap) = self.posted[qi].remove(&(head as u16)).expect("a posted receive chain");
                assert!(len <= cap, "used length {len} beyond the buffer's {cap}");
                let mut b = vec![0; len as usize];
                self.dma.read(addr, &mut b).unwrap();
                b
            })
            .collect()
    }

    pub fn post_control_buffers(&mut self, n: usize) {
        for _ in 0..n {
            self.offer(2, &[], 256);
        }
        self.dev.queue_notify(2);
    }

    pub fn send_control(&mut self, id: u32, event: u16, value: u16) {
        self.offer(3, &ControlMsg::new(id, event, value).header(), 0);
        self.dev.queue_notify(3);
    }

    /// The device's control messages delivered since the last call.
    pub fn take_control(&mut self) -> Vec<ControlMsg> {
        self.take_written(2)
            .into_iter()
            .map(|b| {
                let header: [u8; 8] = b[..8].try_into().unwrap();
                ControlMsg { payload: b[8..].to_vec(), ..ControlMsg::parse(&header) }
            })
            .collect()
    }

    /// The guest writes `data` on port `id`.
    pub fn guest_write(&mut self, id: u32, data: &[u8]) {
        let q = port_rx_queue(id) + 1;
        self.offer(q, data, 0);
        self.dev.queue_notify(q);
    }

    /// The guest posts receive buffers of `sizes` for port `id` and notifies.
    pub fn post_rx(&mut self, id: u32, sizes: &[u32]) {
        let q = port_rx_queue(id);
        for &size in sizes {
            self.offer(q, &[], size);
        }
        self.dev.queue_notify(q);
    }

    /// What Linux does at probe: control buffers, DEVICE_READY, then for each DEVICE_ADD
    /// receive buffers and PORT_READY, and PORT_OPEN for consoles. Every control buffer used
    /// is posted again, so [`PROBE_CONTROL_BUFFERS`] stay posted. Returns the device's
    /// messages.
    pub fn linux_probe(&mut self) -> Vec<ControlMsg> {
        self.post_control_buffers(PROBE_CONTROL_BUFFERS);
        self.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1);
        let mut seen = self.take_control();
        self.post_control_buffers(seen.len());
        let added: Vec<u32> = seen.iter().filter(|m| m.event == VIRTIO_CONSOLE_DEVICE_ADD).map(|m| m.id).collect();
        for id in added {
            self.post_rx(id, &[64; 4]);
            self.send_control(id, VIRTIO_CONSOLE_PORT_READY, 1);
        }
        let answers = self.take_control();
        self.post_control_buffers(answers.len());
        for m in answers.iter().filter(|m| m.event == VIRTIO_CONSOLE_CONSOLE_PORT) {
            self.send_control(m.id, VIRTIO_CONSOLE_PORT_OPEN, 1);
        }
        seen.extend(answers);
        seen
    }
}

/// Control receive buffers a probed driver keeps posted.
pub(super) const PROBE_CONTROL_BUFFERS: usize = 8;
