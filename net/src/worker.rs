//! The backend thread: one poll(2) loop per backend, shared by every backend type.
//!
//! Each iteration re-offers held frames if the card made room, passes the card's frames to
//! the backend, then sleeps in poll(2) on the backend's descriptors plus a wakeup socket
//! (written by `send`, `rx_space` and drop) until something is ready or a timer is due.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::queue::RxQueue;
use crate::sys::{PollSet, Waker};
use crate::{NetError, Stats};

/// What the API side and the thread share.
pub(crate) struct Control {
    waker: Waker,
    /// A wakeup for queued frames is pending (so `send` writes the wakeup socket once per
    /// batch, not once per frame).
    pending: AtomicBool,
    rx_space: AtomicBool,
    stop: AtomicBool,
    pub(crate) stats: Arc<Stats>,
}

impl Control {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Control {
            waker: Waker::new()?,
            pending: AtomicBool::new(false),
            rx_space: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            stats: Arc::default(),
        })
    }

    /// A frame was queued for the thread.
    pub(crate) fn frames_queued(&self) {
        // The thread clears `pending` before it drains the queue, so a frame queued after
        // the drain finds it clear and wakes the thread.
        if !self.pending.swap(true, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    pub(crate) fn rx_space(&self) {
        self.rx_space.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// The thread's end of a backend.
pub(crate) struct Link {
    pub(crate) ctl: Arc<Control>,
    pub(crate) frames: Receiver<Vec<u8>>,
}

/// One backend type, driven by [`run`] on the backend thread.
pub(crate) trait Driver {
    /// The hold-back queue the driver offers received frames to.
    fn queue(&self) -> &RefCell<RxQueue>;
    /// Sends one frame from the card (or drops it, counting, if it cannot go now).
    fn transmit(&mut self, frame: &[u8]);
    /// Adds the descriptors to watch; `receive` is false while frames are held back (then
    /// nothing new should be read). Returns how long poll may sleep (None: no limit).
    fn prepare(&mut self, polls: &mut PollSet, receive: bool) -> Option<Duration>;
    /// Acts on what poll reported (and on due timers).
    fn dispatch(&mut self, polls: &PollSet);
}

/// Starts a backend thread: `init` opens the backend on it (so errors come back to the
/// caller, and state that must stay on one thread, like libslirp's, never moves), then the
/// loop runs until the backend is dropped.
pub(crate) fn spawn<D, F>(name: &str, link: Link, init: F) -> Result<JoinHandle<()>, NetError>
where
    D: Driver,
    F: FnOnce(Arc<Stats>) -> Result<D, NetError> + Send + 'static,
{
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let thread = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let driver = init(link.ctl.stats.clone());
            match driver {
                Ok(mut driver) => {
                    let _ = done_tx.send(Ok(()));
                    run(&mut driver, &link);
                }
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                }
            }
        })
        .map_err(NetError::Thread)?;
    match done_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        // `init` panicked: let the panic reach the caller, as if it had run there.
        Err(_) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread reports before it ends"),
        },
    }
}

fn run(driver: &mut dyn Driver, link: &Link) {
    let ctl = &link.ctl;
    let mut polls = PollSet::default();
    while !ctl.stop.load(Ordering::SeqCst) {
        if ctl.rx_space.swap(false, Ordering::SeqCst) {
            driver.queue().borrow_mut().flush();
        }
        ctl.pending.store(false, Ordering::SeqCst);
        for frame in link.frames.try_iter() {
            driver.transmit(&frame);
        }
        polls.clear();
        polls.add(ctl.waker.fd(), libc::POLLIN);
        let receive = !driver.queue().borrow().is_holding();
        let timeout = driver.prepare(&mut polls, receive);
        if let Err(e) = polls.wait(timeout) {
            // Not expected (EINVAL/ENOMEM); do not spin on it.
            eprintln!("ferrite: network backend: poll failed: {e}");
            thread::sleep(Duration::from_millis(100));
        }
        if polls.revents(0) != 0 {
            ctl.waker.drain();
        }
        driver.dispatch(&polls);
    }
}
