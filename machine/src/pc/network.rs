//! Network cards and their backends. A backend (user networking, a socket, a tap device) is
//! opened once, when the machine is created, and outlives resets; the card is rebuilt with
//! every board, so the backend reaches whichever card the current board has through a
//! [`CardSlot`].

use ferrite_hw::e1000::E1000;
use ferrite_hw::net::FrameSink;
use ferrite_hw::pci::SharedPciDevice;
use ferrite_hw::virtio::{VirtioNet, VirtioNetOptions, VirtioNetRx, VirtioPci};
use ferrite_net::{NetBackend, NetError, Peer};
use super::virtio::Inner;
use crate::snapshot::registry::Stateful;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::config::{NicConfig, NicModel};

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a backend needs of a card: somewhere to put a received frame.
trait Receiver: Send + Sync {
    /// `false`: no receive buffers now (the backend holds the frame).
    fn receive(&self, frame: &[u8]) -> bool;
}

impl Receiver for Mutex<E1000> {
    fn receive(&self, frame: &[u8]) -> bool {
        lock(self).receive(frame)
    }
}

impl Receiver for VirtioNetRx {
    fn receive(&self, frame: &[u8]) -> bool {
        VirtioNetRx::receive(self, frame)
    }
}

/// The card a backend delivers to: the current board's, or none between boards.
#[derive(Default)]
struct CardSlot {
    card: Mutex<Option<Arc<dyn Receiver>>>,
    /// Whether frames may reach the card: only while the guest runs (see
    /// [`Nic::accept_frames`]). Read-held across a delivery, so closing waits for one in
    /// flight.
    accepting: RwLock<bool>,
}

impl Peer for CardSlot {
    fn deliver(&self, frame: &[u8]) -> bool {
        let accepting = self.accepting.read().unwrap_or_else(PoisonError::into_inner);
        if !*accepting {
            // The backend holds it until the guest runs again.
            return false;
        }
        // Not held while the card works: a reset may swap the card meanwhile.
        let card = lock(&self.card).clone();
        match card {
            Some(card) => card.receive(frame),
            // No card to take it: the frame is lost, as on an unplugged cable.
            None => true,
        }
    }
}

/// One network card's connection to its backend, kept across resets.
pub struct Nic {
    cfg: NicConfig,
    backend: Option<NetBackend>,
    slot: Arc<CardSlot>,
}

impl FrameSink for Nic {
    fn send(&self, frame: &[u8]) {
        if let Some(b) = &self.backend {
            b.send(frame);
        }
    }

    fn rx_space(&self) {
        if let Some(b) = &self.backend {
            b.rx_space();
        }
    }
}

impl Nic {
    /// Opens the card's backend (binding host ports, connecting sockets); a card without a
    /// `netdev` sends into the void, as QEMU's card without a peer does.
    pub fn open(cfg: &NicConfig) -> Result<Arc<Nic>, NetError> {
        let slot = Arc::new(CardSlot::default());
        let backend = cfg.netdev.as_ref().map(|n| NetBackend::open(&n.options, slot.clone())).transpose()?;
        Ok(Arc::new(Nic { cfg: cfg.clone(), backend, slot }))
    }

    /// A fresh card of the configured model for a new board, which the backend delivers to
    /// from now on.
    /// A new card on this backend, with what snapshots save of it.
    pub fn new_card(self: &Arc<Self>) -> Result<(SharedPciDevice, Vec<Arc<dyn Stateful>>), String> {
        let (device, receiver, state): (SharedPciDevice, Arc<dyn Receiver>, Vec<Arc<dyn Stateful>>) = match self.cfg.model {
            NicModel::E1000 => {
                let card = Arc::new(Mutex::new(E1000::new(self.cfg.mac, self.clone())));
                (card.clone(), card.clone(), vec![card])
            }
            NicModel::VirtioNet(t) => {
                let (net, rx) = VirtioNet::new(self.cfg.mac, self.clone(), VirtioNetOptions::default());
                let pci = VirtioPci::new(net, super::virtio::transport_options(t)).map_err(|e| format!("virtio-net-pci: {e}"))?;
                let pci = Arc::new(Mutex::new(pci));
                // The device's own state (filters, address, link), then its transport's.
                (pci.clone(), Arc::new(rx), vec![Arc::new(Inner(pci.clone())), pci])
            }
        };
        *lock(&self.slot.card) = Some(receiver);
        Ok((device, state))
    }

    /// Lets frames reach the card (the guest runs) or holds them in the backend (it is
    /// stopped), as QEMU's cards take no frames while the machine is stopped. A frame that
    /// landed while the machine saves its state would change RAM and the card's rings after
    /// they were copied: the destination's driver would find its ring broken. Closing waits
    /// for a delivery in flight; opening offers what was held meanwhile.
    pub fn accept_frames(&self, accept: bool) {
        let mut accepting = self.slot.accepting.write().unwrap_or_else(PoisonError::into_inner);
        if *accepting == accept {
            return;
        }
        *accepting = accept;
        drop(accepting);
        if accept {
            self.rx_space();
        }
    }

    pub fn config(&self) -> &NicConfig {
        &self.cfg
    }

    /// Forgets the card (at shutdown), which ends the card -> backend -> card cycle.
    pub fn detach(&self) {
        *lock(&self.slot.card) = None;
    }
}
