//! Save and restore of the device's own state: a console restored into a fresh device (and
//! re-activated as the transport's restore does it) carries on without a new handshake,
//! delivers what the driver had not received yet, and tells the driver of host sides that
//! changed meanwhile; states it could not have produced are refused.

use super::persist::VirtioConsoleState;
use super::test_driver::*;
use super::*;
use ferrite_persist::{Persist, RestoreError};
use std::sync::atomic::Ordering;

fn msg(id: u32, event: u16, value: u16) -> ControlMsg {
    ControlMsg::new(id, event, value)
}

/// A console, a named serial port and an unnamed one, with their host sides connected as
/// `connected` says.
fn ports(connected: [bool; 3]) -> Vec<Spec> {
    vec![Spec(Some("con"), true, connected[0]), Spec(Some("agent"), false, connected[1]), Spec(None, false, connected[2])]
}

/// Probed as Linux does it, with the guest holding port 1 open too.
fn probed(connected: [bool; 3]) -> Console {
    let mut c = console(&ports(connected), 4);
    c.activate(MODERN);
    c.linux_probe();
    c.send_control(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    c
}

/// The host side of port 2 comes and goes until the driver's control buffers are all used
/// (an even number of times: it ends as it was).
fn use_up_control_buffers(c: &mut Console) {
    for _ in 0..PROBE_CONTROL_BUFFERS {
        c.handles[2].set_host_connected(!c.handles[2].host_connected());
    }
    assert_eq!(c.take_control().len(), PROBE_CONTROL_BUFFERS);
}

#[test]
fn a_restored_console_carries_on_without_a_new_handshake() {
    let mut a = probed([true; 3]);
    use_up_control_buffers(&mut a);
    a.handles[1].set_host_connected(false);
    let mut b = a.restored(&ports([true, false, true]));
    assert!(b.wakes.iter().all(|w| w.load(Ordering::SeqCst) > 0), "every port's host side is told to try again");
    for c in [&mut a, &mut b] {
        assert_eq!(c.handles.iter().map(PortHandle::guest_open).collect::<Vec<_>>(), [true, true, false]);
        assert!(!c.handles[1].host_connected());
        c.post_control_buffers(2);
        assert_eq!(c.take_control(), vec![msg(1, VIRTIO_CONSOLE_PORT_OPEN, 0)], "the pending message, and nothing else");
        assert_eq!(c.handles[1].send(b"host says hi"), 12);
        assert_eq!(c.handles[0].send(b"$ "), 2);
        assert_eq!(c.take_written(port_rx_queue(1)), vec![b"host says hi".to_vec()]);
        assert_eq!(c.take_written(port_rx_queue(0)), vec![b"$ ".to_vec()]);
        c.guest_write(1, b"guest output");
        c.guest_write(0, b"login: ");
        assert_eq!(c.outputs[1].take(), b"guest output");
        assert_eq!(c.outputs[0].take(), b"login: ");
        assert_eq!(c.handles[2].send(b"closed"), 0, "port 2 is still closed in the guest");
    }
}

#[test]
fn host_sides_that_changed_meanwhile_are_told_to_the_driver() {
    let mut a = probed([true, true, false]);
    let mut b = a.restored(&ports([true, false, true]));
    let live: Vec<bool> = b.handles.iter().map(PortHandle::host_connected).collect();
    assert_eq!(live, [true, false, true], "the live connections, not the saved ones");
    let told = vec![msg(1, VIRTIO_CONSOLE_PORT_OPEN, 0), msg(2, VIRTIO_CONSOLE_PORT_OPEN, 1)];
    assert_eq!(b.take_control(), told, "delivered into the control buffers still posted");
    assert!(a.take_control().is_empty());

    // A change queued behind used-up buffers is updated, not repeated.
    use_up_control_buffers(&mut a);
    a.handles[1].set_host_connected(false);
    let mut b = a.restored(&ports([true, true, false]));
    b.post_control_buffers(4);
    assert_eq!(b.take_control(), vec![msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1)]);
}

#[test]
fn a_console_state_the_device_could_not_have_made_is_refused() {
    let mut a = probed([true; 3]);
    use_up_control_buffers(&mut a);
    a.handles[1].set_host_connected(false);
    let saved = a.dev.save();
    assert_eq!(saved.pending_control, vec![msg(1, VIRTIO_CONSOLE_PORT_OPEN, 0)]);
    let bad = |f: &dyn Fn(&mut VirtioConsoleState)| {
        let mut s = saved.clone();
        f(&mut s);
        s
    };
    let pending = |m: ControlMsg| move |s: &mut VirtioConsoleState| s.pending_control.push(m.clone());
    let wrong_name = ControlMsg { payload: b"other\0".to_vec(), ..msg(1, VIRTIO_CONSOLE_PORT_NAME, 1) };
    let cases: Vec<(VirtioConsoleState, &str)> = vec![
        (bad(&|s| s.ports[2].id = 4), "ports.id"),
        (bad(&|s| s.ports[2].id = 3), "ports.id"),
        (bad(&|s| drop(s.ports.pop())), "ports"),
        (bad(&|s| s.pending_control = vec![msg(0, VIRTIO_CONSOLE_DEVICE_ADD, 1); MAX_PENDING_CONTROL + 1]), "pending_control"),
        (bad(&pending(msg(3, VIRTIO_CONSOLE_DEVICE_ADD, 1))), "pending_control.id"),
        (bad(&pending(msg(0, VIRTIO_CONSOLE_RESIZE, 0))), "pending_control.event"),
        (bad(&pending(msg(0, VIRTIO_CONSOLE_PORT_OPEN, 2))), "pending_control.event"),
        (bad(&pending(msg(1, VIRTIO_CONSOLE_CONSOLE_PORT, 1))), "pending_control.event"),
        (bad(&pending(wrong_name)), "pending_control.event"),
        (bad(&pending(msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1))), "pending_control"),
        (bad(&|s| s.multiport = false), "ports.ready"),
        (
            bad(&|s| (s.multiport, s.ports[1].ready, s.ports[1].guest_open, s.ports[2].ready) = (false, false, false, false)),
            "pending_control",
        ),
    ];
    let mut fresh = console(&ports([true; 3]), 4);
    let before = fresh.dev.save();
    for (state, field) in cases {
        match fresh.dev.restore(state) {
            Err(RestoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
        assert_eq!(fresh.dev.save(), before, "a refused state leaves the device unchanged");
    }
    let mut extra = ferrite_persist::save(&a.dev, "00:04.0 part0");
    extra.state["ports"][0]["cols"] = 80.into();
    assert!(ferrite_persist::load(&mut fresh.dev, &extra).unwrap_err().to_string().contains("unknown field `cols`"));
    let named = bad(&pending(fresh.dev.shared.ports[1].name_msg().unwrap()));
    fresh.dev.restore(named.clone()).unwrap();
    assert_eq!(
        fresh.dev.save().pending_control,
        vec![msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1), named.pending_control[1].clone()],
        "a PORT_NAME the device sends is accepted; the pending PORT_OPEN now says the live host side"
    );
}

/// The machine's order through the real transport: the device's section, then the
/// transport's, loaded into a freshly built console and transport. The driver set port 0 up
/// and opened it before posting any control receive buffer, so the device's answers wait.
#[test]
fn a_console_restored_through_its_transport_delivers_what_was_pending() {
    use crate::virtio::interrupt::VIRTIO_MSI_NO_VECTOR;
    use crate::virtio::queue::VIRTQ_DESC_F_WRITE;
    use crate::virtio::queue_tests::{GuestRing, RAM};
    use crate::virtio::tests::{Drv, RING_FEATURES};
    use crate::virtio::{VirtioPciOptions, STATUS_DRIVER_OK};
    let build = || {
        let port = PortConfig { name: None, is_console: true, output: Arc::new(Recorder::new(true)) };
        let opts = VirtioConsoleOptions { max_nr_ports: 1, ..Default::default() };
        let (dev, mut handles) = VirtioConsole::new(vec![port], opts).unwrap();
        (Drv::new(dev, VirtioPciOptions::default()), handles.remove(0))
    };
    let (mut a, port_a) = build();
    a.negotiate(RING_FEATURES | VIRTIO_CONSOLE_F_MULTIPORT);
    let mut rings: Vec<GuestRing> =
        (0..4).map(|q| a.setup_queue(q, 8, 0x1_0000 * (u64::from(q) + 1), VIRTIO_MSI_NO_VECTOR)).collect();
    a.add_status(STATUS_DRIVER_OK);
    let driver = [
        msg(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1),
        msg(0, VIRTIO_CONSOLE_PORT_READY, 1),
        msg(0, VIRTIO_CONSOLE_PORT_OPEN, 1),
    ];
    for (i, m) in driver.iter().enumerate() {
        let buf = 0x10_0000 + 0x100 * i as u64;
        a.t.mem.write(buf, &m.header()).unwrap();
        rings[3].set_desc(i as u16, buf, CONTROL_HEADER_LEN as u32, 0, 0);
        rings[3].push(i as u16);
    }
    a.notify(3);
    rings[0].set_desc(0, 0x20_0000, 64, VIRTQ_DESC_F_WRITE, 0);
    rings[0].push(0);
    a.notify(0);

    let device = ferrite_persist::save(a.dev.device(), "00:04.0 part0");
    let transport = ferrite_persist::save(&a.dev, "00:04.0");
    let (mut b, port_b) = build();
    let mut ram = vec![0; RAM as usize];
    a.t.mem.read(0, &mut ram).unwrap();
    b.t.mem.write(0, &ram).unwrap();
    ferrite_persist::load(b.dev.device_mut(), &device).unwrap();
    ferrite_persist::load(&mut b.dev, &transport).unwrap();
    let mut rings_b: Vec<GuestRing> = rings.iter().map(|r| GuestRing { dma: b.t.link().dma, ..*r }).collect();
    let answers =
        vec![msg(0, VIRTIO_CONSOLE_DEVICE_ADD, 1), msg(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1), msg(0, VIRTIO_CONSOLE_PORT_OPEN, 1)];
    for (d, rings, port) in [(&mut a, &mut rings, &port_a), (&mut b, &mut rings_b, &port_b)] {
        for i in 0..4u16 {
            rings[2].set_desc(i, 0x30_0000 + 0x100 * u64::from(i), 64, VIRTQ_DESC_F_WRITE, 0);
            rings[2].push(i);
        }
        d.notify(2);
        let got: Vec<ControlMsg> = rings[2]
            .take_used()
            .iter()
            .map(|&(head, len)| {
                assert_eq!(len as usize, CONTROL_HEADER_LEN);
                let mut h = [0; CONTROL_HEADER_LEN];
                d.t.mem.read(0x30_0000 + 0x100 * u64::from(head), &mut h).unwrap();
                ControlMsg::parse(&h)
            })
            .collect();
        assert_eq!(got, answers);
        assert!(port.guest_open());
        assert_eq!(port.send(b"hi"), 2);
        assert_eq!(rings[0].take_used(), vec![(0, 2)]);
    }
}
