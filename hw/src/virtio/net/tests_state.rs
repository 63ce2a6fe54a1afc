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
