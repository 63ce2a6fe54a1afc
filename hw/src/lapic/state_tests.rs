use super::*;
use ferrite_persist::{load, save, Persist, RestoreError};

fn rd(l: &mut Lapic, reg: u32, now: Nanos) -> u32 {
    l.mmio_read(u64::from(reg), 4, now) as u32
}

fn wr(l: &mut Lapic, reg: u32, v: u32, now: Nanos) {
    l.mmio_write(u64::from(reg), 4, u64::from(v), now)
}

/// An AP with a periodic timer running at /16, one vector in service, two requested (one
/// level-triggered), an IPI not yet drained, a pending INIT/SIPI and an error latched.
fn busy() -> Lapic {
    let mut l = Lapic::new(1, false);
    wr(&mut l, REG_SVR, SVR_APIC_ENABLE | 0xFF, 0);
    wr(&mut l, REG_TIMER_DIVIDE, 3, 0);
    wr(&mut l, REG_LVT_TIMER, LVT_TIMER_PERIODIC | 0xEC, 0);
    wr(&mut l, REG_TIMER_INITIAL, 100_000, 100);
    wr(&mut l, REG_LDR, 0x0200_0000, 100);
    wr(&mut l, REG_TPR, 0x20, 100);
    l.accept_interrupt(0x51, false);
    assert_eq!(l.acknowledge(), 0x51);
    l.accept_interrupt(0x61, true);
    l.accept_interrupt(0x30, false);
    wr(&mut l, REG_ICR_HIGH, 0, 200);
    wr(&mut l, REG_ICR_LOW, 0x4000 | 0x40, 200); // fixed IPI to APIC 0
    l.deliver(&InterruptMessage { vector: 0, mode: DeliveryMode::Init, logical: false, destination: 1, level_triggered: false });
    l.deliver(&InterruptMessage { vector: 0x9a, mode: DeliveryMode::StartUp, logical: false, destination: 1, level_triggered: false });
    wr(&mut l, 0x3A0, 0, 300); // reserved register: illegal register address error
    l
}

#[test]
fn a_restored_lapic_carries_on_like_the_original() {
    let mut a = busy();
    let mut b = Lapic::new(1, false);
    load(&mut b, &save(&a, "lapic1")).unwrap();
    assert_eq!(b.drain_output().collect::<Vec<_>>(), a.drain_output().collect::<Vec<_>>());
    assert_eq!((b.take_init(), b.take_sipi()), (a.take_init(), a.take_sipi()));
    let t = 5_000_000;
    assert_eq!(b.next_event(t), a.next_event(t));
    for reg in [REG_ID, REG_TPR, REG_PPR, REG_LDR, REG_SVR, REG_ISR + 0x20, REG_IRR + 0x30, REG_TMR + 0x30, REG_LVT_TIMER, REG_TIMER_CURRENT] {
        assert_eq!(rd(&mut a, reg, t), rd(&mut b, reg, t), "register {reg:#x}");
    }
    wr(&mut a, REG_ESR, 0, t);
    wr(&mut b, REG_ESR, 0, t);
    assert_eq!(rd(&mut a, REG_ESR, t), rd(&mut b, REG_ESR, t));
    for t in [t, 10_000_000, 30_000_000] {
        a.update(t);
        b.update(t);
        assert_eq!(a.next_event(t), b.next_event(t));
        while let Some(v) = a.has_interrupt() {
            assert_eq!(b.has_interrupt(), Some(v));
            assert_eq!((a.acknowledge(), b.acknowledge()), (v, v));
            wr(&mut a, REG_EOI, 0, t);
            wr(&mut b, REG_EOI, 0, t);
            assert_eq!(b.drain_output().collect::<Vec<_>>(), a.drain_output().collect::<Vec<_>>());
        }
        assert_eq!(b.has_interrupt(), None);
    }
}

#[test]
fn x2apic_mode_is_restored() {
    let mut a = Lapic::new(2, false);
    assert!(a.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE | APIC_BASE_EXTD));
    a.msr_write(0x80F, u64::from(SVR_APIC_ENABLE | 0xFF), 0);
    let mut b = Lapic::new(2, false);
    load(&mut b, &save(&a, "lapic2")).unwrap();
    assert!(b.x2apic_mode());
    assert_eq!(b.mmio_base(), None);
    assert_eq!(b.msr_read(0x80D, 0), a.msr_read(0x80D, 0), "x2APIC LDR");
}

#[test]
fn a_corrupt_state_is_refused_and_changes_nothing() {
    let mut b = Lapic::new(1, false);
    let fresh = b.save();
    let mut s = busy().save();
    s.tsc_hz = 0;
    assert!(matches!(b.restore(s), Err(RestoreError::Invalid { field: "tsc_hz", .. })));
    let mut s = busy().save();
    s.timer.count_at_start = u64::from(s.timer.initial_count) + 1;
    assert!(b.restore(s).is_err());
    let mut s = busy().save();
    s.apic_base |= APIC_BASE_BSP;
    assert!(b.restore(s).is_err(), "the BSP flag belongs to the vCPU");
    assert_eq!(b.save(), fresh);
}
