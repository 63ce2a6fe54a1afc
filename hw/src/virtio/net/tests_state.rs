//! Save and restore of the device's own state: a card restored into a fresh device (and
//! re-activated as the transport's restore does it) filters, answers and transmits as the
//! saved one; states it could not have produced are refused.

use super::ctrl::*;
use super::header::*;
use super::persist::{MacTableState, VirtioNetState};
use super::tests::*;
use super::*;
use crate::virtio::interrupt::VIRTIO_ISR_CONFIG;
use ferrite_persist::{Persist, RestoreError};

const RXQ: usize = RX_QUEUE as usize;
const OTHER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x99];
const MULTICAST: [u8; 6] = [0x01, 0x00, 0x5E, 0, 0, 0xFB];
const DRIVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 7];

fn frame_to(dst: [u8; 6]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f.resize(60, 0x5A);
    f
}

/// Whether a frame for `dst` reached the guest.
fn delivered(n: &mut Net, dst: [u8; 6]) -> bool {
    assert!(n.rx.receive(&frame_to(dst)));
    n.rings[RXQ].take_used().len() == 1
}

fn table(list: &[[u8; 6]]) -> Vec<u8> {
    let mut b = (list.len() as u32).to_le_bytes().to_vec();
    list.iter().for_each(|m| b.extend_from_slice(m));
    b
}

/// A running card whose driver turned promiscuous mode off, programmed the MAC tables and
/// set its own address, with receive buffers posted.
fn programmed() -> Net {
    let mut n = net(MODERN);
    for _ in 0..32 {
        n.offer(RXQ, &[], &[2048]);
    }
    let mut tables = table(&[OTHER]);
    tables.extend(table(&[MULTICAST]));
    assert_eq!(n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]), VIRTIO_NET_OK);
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &tables), VIRTIO_NET_OK);
    assert_eq!(n.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, &DRIVER_MAC), VIRTIO_NET_OK);
    assert!(delivered(&mut n, OTHER), "a buffer used before the save");
    n
}

#[test]
fn a_restored_card_filters_answers_and_sends_as_the_saved_one() {
    let mut a = programmed();
    let mut b = a.restored();
    assert_eq!(b.dev.mac(), DRIVER_MAC);
    assert_eq!(b.config(), a.config());
    let addrs = [MAC, DRIVER_MAC, OTHER, [0x52, 0x54, 0, 0, 0, 0x98], MULTICAST, [0x01, 0, 0x5E, 0, 0, 1], [0xFF; 6]];
    let expect = [false, true, true, false, true, false, true];
    for n in [&mut a, &mut b] {
        let got: Vec<bool> = addrs.iter().map(|&d| delivered(n, d)).collect();
        assert_eq!(got, expect);
    }
    assert_eq!(a.rings[RXQ].last_used, b.rings[RXQ].last_used, "the same receive buffers were used");
    for n in [&mut a, &mut b] {
        assert_eq!(n.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &[1]), VIRTIO_NET_OK);
        assert!(delivered(n, [0x01, 0, 0x5E, 0, 0, 1]));
        n.send(NetHdr::default(), &frame_to(OTHER));
        assert_eq!(n.sink.take(), vec![frame_to(OTHER)]);
    }
    b.reset();
    assert_eq!(b.dev.mac(), MAC, "a reset still returns to the configured address");
}

#[test]
fn an_overflowed_table_and_a_down_link_are_restored() {
    let mut a = net(MODERN);
    a.offer(RXQ, &[], &[2048]);
    let mut long = table(&[]);
    long.extend(table(&[[0x01, 0, 0, 0, 0, 9]; 65]));
    a.command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &[0]);
    a.command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, &long);
    a.rx.set_link(false);
    a.shared.take_isr();
    let mut b = a.restored();
    assert_eq!(b.dev.save().multicast, MacTableState { entries: vec![], overflow: true });
    assert_eq!(b.config()[6], 0, "link down in the configuration space");
    assert_eq!(b.shared.take_isr() & VIRTIO_ISR_CONFIG, 0, "nothing changed for the driver");
    assert!(b.rx.receive(&frame_to(MAC)));
    assert_eq!(b.rx.stats().rx_dropped, 1, "nothing arrives while the link is down");
    b.rx.set_link(true);
    assert_eq!(b.shared.take_isr() & VIRTIO_ISR_CONFIG, VIRTIO_ISR_CONFIG);
    assert!(delivered(&mut b, [0x01, 2, 3, 4, 5, 6]), "every multicast address passes");
    assert!(!delivered(&mut b, OTHER));
}

#[test]
fn a_net_state_the_device_could_not_have_made_is_refused() {
    let mut n = programmed();
    let saved = n.dev.save();
    let bad = |f: fn(&mut VirtioNetState)| {
        let mut s = saved.clone();
        f(&mut s);
        s
    };
    let cases: [(VirtioNetState, &str); 4] = [
        (bad(|s| s.unicast.entries = vec![[2; 6]; 65]), "unicast.entries"),
        (bad(|s| s.multicast.entries = vec![[1; 6]; 100]), "multicast.entries"),
        (bad(|s| s.unicast.overflow = true), "unicast.overflow"),
        (bad(|s| s.multicast.overflow = true), "multicast.overflow"),
    ];
    let (mut fresh, _) = VirtioNet::new(MAC, Arc::new(Sink::default()), VirtioNetOptions::default());
    let before = fresh.save();
    for (state, field) in cases {
        match fresh.restore(state) {
            Err(RestoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
        assert_eq!(fresh.save(), before, "a refused state leaves the device unchanged");
    }
    let mut extra = ferrite_persist::save(&n.dev, "nic");
    extra.state["vlans"] = serde_json::json!([5]);
    assert!(ferrite_persist::load(&mut fresh, &extra).unwrap_err().to_string().contains("unknown field `vlans`"));
    let full = bad(|s| s.unicast.entries = vec![[2; 6]; 64]);
    n.dev.restore(full.clone()).unwrap();
    assert_eq!(n.dev.save(), full, "a full table is one the device makes");
}

/// The machine's order through the real transport: the device's section, then the
/// transport's, loaded into a freshly built card and transport.
#[test]
fn a_card_restored_through_its_transport_keeps_what_the_driver_set() {
    use crate::virtio::interrupt::VIRTIO_MSI_NO_VECTOR;
    use crate::virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
    use crate::virtio::queue_tests::{GuestRing, RAM};
    use crate::virtio::tests::{Drv, RING_FEATURES};
    use crate::virtio::{VirtioPciOptions, STATUS_DRIVER_OK};
    let card = || VirtioNet::new(MAC, Arc::new(Sink::default()), VirtioNetOptions::default());
    let (dev, rx_a) = card();
    let mut a = Drv::new(dev, VirtioPciOptions::default());
    a.negotiate(RING_FEATURES | VIRTIO_NET_F_MAC | VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_CTRL_MAC_ADDR);
    let mut rings: Vec<GuestRing> =
        (0..3).map(|q| a.setup_queue(q, 16, 0x1_0000 * (u64::from(q) + 1), VIRTIO_MSI_NO_VECTOR)).collect();
    a.add_status(STATUS_DRIVER_OK);
    let mut set_mac = vec![VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET];
    set_mac.extend_from_slice(&DRIVER_MAC);
    let commands = [vec![VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, 0], set_mac];
    for (i, cmd) in commands.iter().enumerate() {
        let (d, buf) = (2 * i as u16, 0x10_0000 + 0x100 * i as u64);
        a.t.mem.write(buf, cmd).unwrap();
        rings[2].set_desc(d, buf, cmd.len() as u32, VIRTQ_DESC_F_NEXT, d + 1);
        rings[2].set_desc(d + 1, buf + 0x80, 1, VIRTQ_DESC_F_WRITE, 0);
        rings[2].push(d);
    }
    a.notify(CTRL_QUEUE);
    assert_eq!(rings[2].take_used().len(), 2);
    for i in 0..4u16 {
        rings[0].set_desc(i, 0x20_0000 + 0x1000 * u64::from(i), 2048, VIRTQ_DESC_F_WRITE, 0);
        rings[0].push(i);
    }
    a.notify(RX_QUEUE);

    let device = ferrite_persist::save(a.dev.device(), "00:03.0 part0");
    let transport = ferrite_persist::save(&a.dev, "00:03.0");
    let (dev, rx_b) = card();
    let mut b = Drv::new(dev, VirtioPciOptions::default());
    let mut ram = vec![0; RAM as usize];
    a.t.mem.read(0, &mut ram).unwrap();
    b.t.mem.write(0, &ram).unwrap();
    ferrite_persist::load(b.dev.device_mut(), &device).unwrap();
    ferrite_persist::load(&mut b.dev, &transport).unwrap();
    assert!(b.dev.is_activated());
    assert_eq!(b.dev.device().mac(), DRIVER_MAC);
    let mut ring_b = GuestRing { dma: b.t.link().dma, ..rings[0] };
    for (rx, ring) in [(&rx_a, &mut rings[0]), (&rx_b, &mut ring_b)] {
        for dst in [MAC, OTHER, DRIVER_MAC, [0xFF; 6]] {
            assert!(rx.receive(&frame_to(dst)));
        }
        assert_eq!(ring.take_used().len(), 2, "only the driver's address and broadcast pass");
    }
}
