//! The device driven the way Linux's virtio_console drives it.

use super::test_driver::*;
use super::*;
use crate::virtio::{VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1};
use std::sync::atomic::{AtomicUsize, Ordering};

fn msg(id: u32, event: u16, value: u16) -> ControlMsg {
    ControlMsg::new(id, event, value)
}

fn named(id: u32, name: &str) -> ControlMsg {
    let mut payload = name.as_bytes().to_vec();
    payload.push(0);
    ControlMsg { payload, ..msg(id, VIRTIO_CONSOLE_PORT_NAME, 1) }
}

/// A console, a named serial port and an unnamed one whose host side is not connected.
fn three_ports() -> Vec<Spec> {
    vec![Spec(Some("con"), true, true), Spec(Some("org.qemu.guest_agent.0"), false, true), Spec(None, false, false)]
}

// ---- identity and configuration ----

#[test]
fn numbers_ports_like_qemu() {
    let c = console(&[Spec(None, false, true), Spec(None, true, true), Spec(None, false, true)], 4);
    assert_eq!(c.handles.iter().map(PortHandle::id).collect::<Vec<_>>(), [1, 0, 2]);
    let c = console(&[Spec(None, false, true), Spec(None, false, true)], 4);
    assert_eq!(c.handles.iter().map(PortHandle::id).collect::<Vec<_>>(), [1, 2], "port 0 is kept for a console");
}

#[test]
fn rejects_bad_configurations() {
    let port = |console| PortConfig { name: None, is_console: console, output: Arc::new(Recorder::new(true)) };
    let opts = |max_nr_ports| VirtioConsoleOptions { max_nr_ports, ..Default::default() };
    let err = |ports, max| VirtioConsole::new(ports, opts(max)).err();
    assert_eq!(err(vec![port(false)], 0), Some(ConsoleError::MaxPorts(0)));
    assert_eq!(err(vec![port(false)], MAX_NR_PORTS_LIMIT + 1), Some(ConsoleError::MaxPorts(MAX_NR_PORTS_LIMIT + 1)));
    assert_eq!(err(vec![port(false)], 1), Some(ConsoleError::TooManyPorts { ports: 1, max: 1 }));
    assert_eq!(err(vec![port(true)], 1), None, "a lone console fits one port");
    assert_eq!(err(vec![port(true), port(false), port(false)], 3), None);
    assert!(err(vec![port(true), port(false), port(false), port(false)], 3).is_some());
    let long = PortConfig { name: Some("x".repeat(MAX_NAME_LEN + 1)), ..port(false) };
    assert_eq!(err(vec![long], 4), Some(ConsoleError::NameTooLong(MAX_NAME_LEN + 1)));
}

#[test]
fn queue_layout_and_config() {
    let c = console(&three_ports(), DEFAULT_MAX_NR_PORTS);
    let sizes = c.dev.queue_max_sizes();
    assert_eq!(sizes.len(), 64);
    assert_eq!(
        &sizes[..5],
        &[DATA_QUEUE_SIZE, DATA_QUEUE_SIZE, CONTROL_QUEUE_SIZE, CONTROL_QUEUE_SIZE, DATA_QUEUE_SIZE]
    );
    assert_eq!(QueueRole::of(4), QueueRole::PortRx(1));
    assert_eq!(QueueRole::of(5), QueueRole::PortTx(1));
    assert_eq!(QueueRole::of(63), QueueRole::PortTx(30));
    assert_eq!(port_rx_queue(30), 62);
    assert_eq!(c.dev.device_type(), VIRTIO_ID_CONSOLE);
    assert_eq!(c.dev.device_features(), VIRTIO_CONSOLE_F_MULTIPORT | VIRTIO_CONSOLE_F_EMERG_WRITE);
    let mut cfg = [0xAA; CONFIG_LEN];
    c.dev.read_config(0, &mut cfg);
    assert_eq!(cfg, [0, 0, 0, 0, 31, 0, 0, 0, 0, 0, 0, 0]);
    let mut max = [0; 4];
    c.dev.read_config(4, &mut max);
    assert_eq!(u32::from_le_bytes(max), 31);
}

#[test]
fn emergency_write_goes_to_port_zero() {
    let mut c = console(&three_ports(), 4);
    c.dev.write_config(8, &[b'!', 0, 0, 0]);
    c.dev.write_config(4, b"?");
    assert_eq!(c.outputs[0].take(), b"!");
}

// ---- control protocol ----

#[test]
fn device_ready_announces_every_port() {
    let mut c = running(&three_ports(), MODERN);
    c.post_control_buffers(8);
    c.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1);
    let expect: Vec<_> = [0, 1, 2].iter().map(|&id| msg(id, VIRTIO_CONSOLE_DEVICE_ADD, 1)).collect();
    assert_eq!(c.take_control(), expect);
    assert!(c.line.level(), "control receiveq interrupt");
    assert_eq!(c.rings[3].take_used(), vec![(0, 0)], "control transmit chain returned");
}

#[test]
fn port_ready_is_answered_with_console_name_and_open() {
    let mut c = running(&three_ports(), MODERN);
    let seen = c.linux_probe();
    let answers: Vec<_> = seen.into_iter().filter(|m| m.event != VIRTIO_CONSOLE_DEVICE_ADD).collect();
    assert_eq!(
        answers,
        vec![
            msg(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1),
            named(0, "con"),
            msg(0, VIRTIO_CONSOLE_PORT_OPEN, 1),
            named(1, "org.qemu.guest_agent.0"),
            msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1),
        ],
        "port 2 is unnamed and its host side is not connected"
    );
    assert!(c.handles[0].guest_open(), "Linux opens console ports at once");
    assert!(!c.handles[1].guest_open());
}

#[test]
fn control_messages_wait_for_buffers() {
    let mut c = running(&three_ports(), MODERN);
    c.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1);
    assert!(c.take_control().is_empty());
    c.post_control_buffers(2);
    assert_eq!(c.take_control().len(), 2);
    c.post_control_buffers(2);
    assert_eq!(c.take_control(), vec![msg(2, VIRTIO_CONSOLE_DEVICE_ADD, 1)]);
}

#[test]
fn control_chain_too_short_for_a_header_comes_back_empty() {
    let mut c = running(&three_ports(), MODERN);
    c.offer(2, &[], 4);
    c.post_control_buffers(1);
    c.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1);
    let written = c.take_written(2);
    assert_eq!(written, vec![vec![], ControlMsg::new(0, VIRTIO_CONSOLE_DEVICE_ADD, 1).header().to_vec()]);
    assert_eq!(c.dev.shared.lock().outbox.len(), 2, "the other ports wait");
}

#[test]
fn guest_open_is_tracked_and_wakes() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    let before = c.wakes[1].load(Ordering::SeqCst);
    c.send_control(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    assert!(c.handles[1].guest_open());
    assert_eq!(c.wakes[1].load(Ordering::SeqCst), before + 1);
    c.send_control(1, VIRTIO_CONSOLE_PORT_OPEN, 0);
    assert!(!c.handles[1].guest_open());
    assert_eq!(c.handles[1].send(b"x"), 0, "closed in the guest");
}

#[test]
fn host_connection_changes_reach_a_ready_port() {
    let mut c = running(&three_ports(), MODERN);
    c.handles[2].set_host_connected(true);
    c.linux_probe();
    c.take_control();
    c.handles[2].set_host_connected(false);
    c.handles[2].set_host_connected(false);
    assert_eq!(c.take_control(), vec![msg(2, VIRTIO_CONSOLE_PORT_OPEN, 0)]);
    assert!(!c.handles[2].host_connected());
}

#[test]
fn pending_host_open_messages_coalesce() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    // Use up the control buffers the probe left.
    for _ in 0..PROBE_CONTROL_BUFFERS / 2 {
        c.handles[1].set_host_connected(false);
        c.handles[1].set_host_connected(true);
    }
    c.take_control();
    for i in 0..1001 {
        c.handles[1].set_host_connected(i % 2 == 0);
    }
    assert_eq!(c.dev.shared.lock().outbox.len(), 1);
    c.post_control_buffers(4);
    assert_eq!(c.take_control(), vec![msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1)]);
}

#[test]
fn outbox_is_bounded() {
    let mut c = running(&three_ports(), MODERN);
    for _ in 0..(MAX_PENDING_CONTROL / 3 + 10) {
        c.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1);
    }
    assert_eq!(c.dev.shared.lock().outbox.len(), MAX_PENDING_CONTROL);
}

#[test]
fn unknown_ports_and_events_are_ignored() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    c.take_control();
    for (id, event) in
        [(3, VIRTIO_CONSOLE_PORT_READY), (NO_PORT, VIRTIO_CONSOLE_PORT_OPEN), (1, 99), (1, VIRTIO_CONSOLE_DEVICE_ADD)]
    {
        c.send_control(id, event, 1);
    }
    c.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 0);
    assert!(c.take_control().is_empty());
    assert!(!c.handles[1].guest_open());
}

// ---- data ----

#[test]
fn guest_writes_reach_the_port_output() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    c.guest_write(0, b"login: ");
    c.guest_write(1, b"{\"execute\":\"guest-ping\"}");
    assert_eq!(c.outputs[0].take(), b"login: ");
    assert_eq!(c.outputs[1].take(), b"{\"execute\":\"guest-ping\"}");
    assert_eq!(c.rings[1].take_used(), vec![(0, 0)], "nothing written into transmit chains");
    assert_eq!(c.rings[5].take_used().len(), 1);
    assert!(c.line.level());
}

#[test]
fn writes_before_port_ready_or_to_unknown_ports_are_dropped() {
    let mut c = running(&three_ports(), MODERN);
    c.guest_write(1, b"early");
    c.guest_write(3, b"nobody");
    assert!(c.outputs.iter().all(|o| o.take().is_empty()));
    assert_eq!(c.rings[5].take_used().len(), 1, "chains returned all the same");
    assert_eq!(c.rings[9].take_used().len(), 1);
}

#[test]
fn long_transmit_chains_are_cut() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    let data: Vec<u8> = (0..TX_MAX_CHAIN_BYTES + 100).map(|i| i as u8).collect();
    c.guest_write(0, &data);
    assert_eq!(c.outputs[0].take(), &data[..TX_MAX_CHAIN_BYTES]);
}

#[test]
fn host_bytes_fill_posted_buffers() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    c.take_written(0);
    assert_eq!(c.handles[0].send(b""), 0);
    let data: Vec<u8> = (0..300).map(|i| i as u8).collect();
    assert_eq!(c.handles[0].send(&data), 256, "four 64-byte buffers");
    let got = c.take_written(0);
    assert_eq!(got.len(), 4);
    assert_eq!(got.concat(), &data[..256]);
    assert!(c.line.level());
    assert_eq!(c.handles[0].send(&data[256..]), 0, "no buffers left");
    c.post_rx(0, &[8, 100]);
    assert_eq!(c.handles[0].send(&data[256..]), 44);
    assert_eq!(c.take_written(0), vec![data[256..264].to_vec(), data[264..].to_vec()]);
}

#[test]
fn a_port_needs_the_guest_open_before_bytes_flow() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    assert_eq!(c.handles[1].send(b"hello"), 0);
    c.send_control(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    assert_eq!(c.handles[1].send(b"hello"), 5);
    assert_eq!(c.take_written(4), vec![b"hello".to_vec()]);
}

#[test]
fn posting_buffers_runs_the_waker() {
    for features in [MODERN, MODERN & !VIRTIO_F_EVENT_IDX] {
        let mut c = running(&three_ports(), features);
        c.linux_probe();
        c.send_control(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
        let data = [7u8; 300];
        assert_eq!(c.handles[1].send(&data), 256);
        assert_eq!(c.handles[1].send(&data[256..]), 0);
        if features & VIRTIO_F_EVENT_IDX != 0 {
            let avail_event = c.rings[4].avail_event();
            assert_eq!(avail_event, c.rings[4].avail_idx, "the device asked to hear of the next buffer");
        }
        let before = c.wakes[1].load(Ordering::SeqCst);
        c.post_rx(1, &[64]);
        assert_eq!(c.wakes[1].load(Ordering::SeqCst), before + 1);
        assert_eq!(c.handles[1].send(&data[256..]), 44);
    }
}

#[test]
fn the_waker_may_send_from_inside() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    c.take_written(0);
    let handle = c.handles[0].clone();
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    c.handles[0].set_rx_waker(Box::new(move || {
        s.fetch_add(handle.send(b"abc"), Ordering::SeqCst);
    }));
    c.post_rx(0, &[16]);
    assert_eq!(sent.load(Ordering::SeqCst), 3);
    assert_eq!(c.take_written(0), vec![b"abc".to_vec()]);
}

// ---- without multiport, reset ----

#[test]
fn without_multiport_port_zero_is_a_plain_console() {
    let mut c = running(&three_ports(), VIRTIO_F_VERSION_1);
    assert!(c.handles[0].guest_open());
    assert!(!c.handles[1].guest_open());
    c.guest_write(0, b"early printk");
    assert_eq!(c.outputs[0].take(), b"early printk");
    c.post_rx(0, &[16]);
    assert_eq!(c.handles[0].send(b"root\n"), 5);
    assert_eq!(c.take_written(0), vec![b"root\n".to_vec()]);
    // The control queues and other ports do not exist.
    c.post_control_buffers(2);
    c.send_control(NO_PORT, VIRTIO_CONSOLE_DEVICE_READY, 1);
    assert!(c.take_control().is_empty());
    c.handles[1].set_host_connected(false);
    c.post_rx(1, &[16]);
    assert_eq!(c.handles[1].send(b"x"), 0);
}

#[test]
fn buffers_queued_before_driver_ok_are_served() {
    let mut c = console(&three_ports(), 4);
    let (queues, interrupt) = c.setup_rings(0);
    c.offer(1, b"before DRIVER_OK", 0);
    c.offer(0, &[], 32);
    c.start(0, queues, interrupt);
    assert_eq!(c.outputs[0].take(), b"before DRIVER_OK");
    assert!(c.wakes.iter().all(|w| w.load(Ordering::SeqCst) == 1), "activation wakes every port");
    assert_eq!(c.handles[0].send(b"hi"), 2);
    assert_eq!(c.take_written(0), vec![b"hi".to_vec()]);
}

#[test]
fn reset_forgets_the_driver_but_keeps_the_handles() {
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    c.handles[2].set_host_connected(true);
    c.reset();
    assert!(!c.handles[0].guest_open());
    assert_eq!(c.handles[0].send(b"x"), 0);
    assert!(c.handles[2].host_connected(), "the host side stays connected");
    assert_eq!(c.dev.shared.lock().outbox.len(), 0);
    c.activate(MODERN);
    let answers = c.linux_probe();
    assert!(answers.contains(&msg(2, VIRTIO_CONSOLE_PORT_OPEN, 1)));
    c.take_written(0);
    c.post_rx(0, &[16]);
    assert_eq!(c.handles[0].send(b"again"), 5);
}

#[test]
fn handles_cross_threads() {
    fn host_side<T: Clone + Send + Sync + 'static>() {}
    fn device_side<T: Send + 'static>() {}
    host_side::<PortHandle>();
    device_side::<VirtioConsole>();
    let mut c = running(&three_ports(), MODERN);
    c.linux_probe();
    c.take_written(0);
    let handle = c.handles[0].clone();
    let sent = std::thread::spawn(move || handle.send(b"from another thread")).join().unwrap();
    assert_eq!(sent, 19);
    assert_eq!(c.take_written(0), vec![b"from another thread".to_vec()]);
}
