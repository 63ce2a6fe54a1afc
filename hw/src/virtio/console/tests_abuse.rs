//! A driver doing random and malformed things: nothing may panic or hang, and the device's
//! memory stays bounded.

use super::test_driver::{console, Console, Spec, MODERN};
use super::*;
use crate::testing::XorShift;
use crate::virtio::queue::VIRTQ_DESC_F_WRITE;
use crate::virtio::VIRTIO_F_INDIRECT_DESC;

const EVENTS: u16 = 9;

fn random_features(rng: &mut XorShift) -> u64 {
    match rng.below(4) {
        0 => 0,
        1 => VIRTIO_CONSOLE_F_MULTIPORT,
        2 => MODERN,
        _ => MODERN | VIRTIO_F_INDIRECT_DESC,
    }
}

fn random_bytes(rng: &mut XorShift, max: usize) -> Vec<u8> {
    (0..rng.below(max + 1)).map(|_| rng.next() as u8).collect()
}

/// One random driver action; returns the bytes the device took from the host.
fn step(c: &mut Console, rng: &mut XorShift, queues: u16) -> usize {
    let mut taken = 0;
    let q = rng.below(usize::from(queues)) as u16;
    match rng.below(10) {
        // A control message, well-formed or cut short.
        0 | 1 => {
            let id = if rng.below(2) == 0 { rng.below(6) as u32 } else { rng.next() as u32 };
            let event = rng.below(usize::from(EVENTS)) as u16;
            let mut header = ControlMsg::new(id, event, rng.below(3) as u16).header().to_vec();
            header.truncate(rng.below(10).min(8));
            c.offer(3, &header, 0);
            c.dev.queue_notify(3);
        }
        2 => {
            let data = random_bytes(rng, 64);
            let writable = rng.below(3) as u32 * 40;
            c.offer(q, &data, writable);
        }
        // A descriptor pointing anywhere, outside RAM included (rarely: it may break the
        // queue for good).
        3 if rng.below(5) == 0 => {
            let ring = &mut c.rings[usize::from(q)];
            let index = rng.below(usize::from(ring.size)) as u16;
            let flags = rng.below(8) as u16 & !crate::virtio::queue::VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE;
            ring.set_desc(
                index,
                rng.next() % (2 * crate::virtio::queue_tests::RAM),
                rng.next() as u32 % 4096,
                flags,
                rng.next() as u16,
            );
            ring.push(index);
        }
        4 if rng.below(10) == 0 => {
            let bogus = rng.next() as u16;
            c.rings[usize::from(q)].set_avail_idx(bogus);
        }
        5 => {
            let data = random_bytes(rng, 200);
            let port = rng.below(c.handles.len());
            taken = c.handles[port].send(&data);
            assert!(taken <= data.len());
        }
        6 => {
            let port = rng.below(c.handles.len());
            c.handles[port].set_host_connected(rng.below(2) == 0);
        }
        7 => c.dev.queue_notify(rng.next() as u16 % (queues + 4)),
        8 => c.dev.write_config(rng.below(CONFIG_LEN) as u64, &random_bytes(rng, 4)),
        _ => {
            if rng.below(20) == 0 {
                c.reset();
                let features = random_features(rng);
                c.activate(features);
            } else {
                c.dev.queue_notify(q);
            }
        }
    }
    for ring in &mut c.rings {
        ring.take_used();
    }
    taken
}

#[test]
fn random_driver_never_breaks_the_device() {
    let specs = [Spec(Some("con"), true, true), Spec(Some("agent"), false, false), Spec(None, false, true)];
    let (mut received, mut transmitted) = (0, 0);
    for seed in 1..=40u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut c = console(&specs, 3 + rng.below(3) as u32);
        let queues = c.dev.queue_max_sizes().len() as u16;
        let features = random_features(&mut rng);
        c.activate(features);
        if rng.below(2) == 0 {
            c.linux_probe();
        }
        for _ in 0..400 {
            received += step(&mut c, &mut rng, queues);
            assert!(c.dev.shared.lock().outbox.len() <= MAX_PENDING_CONTROL);
        }
        transmitted += c.outputs.iter().map(|o| o.take().len()).sum::<usize>();
        c.reset();
        assert!(c.handles.iter().all(|h| h.send(b"x") == 0 && !h.guest_open()));
    }
    // The random driver reaches the data paths, not only the error paths.
    assert!(received > 0 && transmitted > 0, "received {received}, transmitted {transmitted}");
}
