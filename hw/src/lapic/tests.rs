use super::*;

fn rd(l: &mut Lapic, reg: u32) -> u32 {
    l.mmio_read(u64::from(reg), 4, 0) as u32
}

fn wr(l: &mut Lapic, reg: u32, v: u32) {
    l.mmio_write(u64::from(reg), 4, u64::from(v), 0)
}

fn enabled(id: u32) -> Lapic {
    let mut l = Lapic::new(id, id == 0);
    wr(&mut l, REG_SVR, SVR_APIC_ENABLE | 0xFF);
    l
}

fn outputs(l: &mut Lapic) -> Vec<LapicOutput> {
    l.drain_output().collect()
}

#[test]
fn reset_values_match_the_sdm() {
    let mut l = Lapic::new(3, false);
    assert_eq!(rd(&mut l, REG_ID), 3 << 24);
    assert_eq!(rd(&mut l, REG_VERSION), 0x50014);
    assert_eq!(rd(&mut l, REG_VERSION) >> 16 & 0xFF, 5, "six LVT entries");
    assert_eq!(rd(&mut l, REG_SVR), 0xFF);
    assert_eq!(rd(&mut l, REG_DFR), 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, REG_TPR), 0);
    for reg in (REG_LVT_TIMER..=REG_LVT_ERROR).step_by(16) {
        assert_eq!(rd(&mut l, reg), LVT_MASKED, "LVT {reg:#x}");
    }
    assert_eq!(l.apic_base_msr(), 0xFEE0_0000 | APIC_BASE_ENABLE);
    assert!(!l.accepts_pic_interrupts());

    let mut bsp = Lapic::new(0, true);
    assert_eq!(bsp.apic_base_msr(), 0xFEE0_0900);
    assert_eq!(rd(&mut bsp, REG_LVT_LINT0), 0x700, "virtual wire ExtINT");
    assert!(bsp.accepts_pic_interrupts());
}

#[test]
fn fixed_interrupt_flows_through_irr_isr_and_eoi() {
    let mut l = enabled(0);
    l.accept_interrupt(0x31, false);
    l.accept_interrupt(0x45, false);
    assert_eq!(rd(&mut l, REG_IRR + 0x10), 1 << (0x31 - 32));
    assert_eq!(rd(&mut l, REG_IRR + 0x20), 1 << (0x45 - 64));
    assert_eq!(l.has_interrupt(), Some(0x45));
    assert_eq!(l.acknowledge(), 0x45);
    assert_eq!(rd(&mut l, REG_ISR + 0x20), 1 << (0x45 - 64));
    assert_eq!(rd(&mut l, REG_PPR), 0x40);
    // 0x31 is in a lower class than the in-service 0x45: held.
    assert_eq!(l.has_interrupt(), None);
    wr(&mut l, REG_EOI, 0);
    assert_eq!(rd(&mut l, REG_PPR), 0);
    assert_eq!(l.acknowledge(), 0x31);
    wr(&mut l, REG_EOI, 0);
    assert_eq!(l.has_interrupt(), None);
    assert_eq!(
        l.acknowledge(),
        0xFF,
        "spurious vector when nothing is pending"
    );
    assert!(outputs(&mut l).is_empty(), "edge EOIs are not broadcast");
}

#[test]
fn tpr_masks_lower_priority_classes() {
    let mut l = enabled(0);
    wr(&mut l, REG_TPR, 0x50);
    l.accept_interrupt(0x55, false);
    assert_eq!(l.has_interrupt(), None, "same class as TPR is blocked");
    l.accept_interrupt(0x61, false);
    assert_eq!(l.has_interrupt(), Some(0x61));
    wr(&mut l, REG_TPR, 0);
    assert_eq!(rd(&mut l, REG_APR), 0x60);
}

#[test]
fn level_triggered_eoi_is_broadcast() {
    let mut l = enabled(0);
    l.accept_interrupt(0x40, true);
    assert_eq!(rd(&mut l, REG_TMR + 0x20), 1);
    assert_eq!(l.acknowledge(), 0x40);
    wr(&mut l, REG_EOI, 0);
    assert_eq!(outputs(&mut l), vec![LapicOutput::Eoi(0x40)]);
    assert_eq!(rd(&mut l, REG_TMR + 0x20), 0);
}

#[test]
fn disabled_apic_drops_fixed_interrupts() {
    let mut l = Lapic::new(0, false);
    l.accept_interrupt(0x40, false);
    assert_eq!(l.has_interrupt(), None);
    assert_eq!(rd(&mut l, REG_IRR + 0x20), 0);
}

#[test]
fn illegal_vector_sets_esr_after_write() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_ERROR, 0xFE);
    l.accept_interrupt(5, false);
    assert_eq!(rd(&mut l, REG_ESR), 0, "ESR updates only on write");
    wr(&mut l, REG_ESR, 0);
    assert_eq!(rd(&mut l, REG_ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
    assert_eq!(l.has_interrupt(), Some(0xFE), "LVT error interrupt raised");
    wr(&mut l, REG_ESR, 0);
    assert_eq!(rd(&mut l, REG_ESR), 0);
}

#[test]
fn reserved_register_access_sets_illegal_register() {
    let mut l = enabled(0);
    assert_eq!(rd(&mut l, 0x3A0), 0);
    wr(&mut l, REG_ESR, 0);
    assert_eq!(rd(&mut l, REG_ESR), ESR_ILLEGAL_REGISTER);
}

#[test]
fn icr_queues_ipis_for_the_machine() {
    let mut l = enabled(0);
    wr(&mut l, REG_ICR_HIGH, 2 << 24);
    wr(&mut l, REG_ICR_LOW, 0x4031);
    assert_eq!(
        rd(&mut l, REG_ICR_LOW) & ICR_DELIVERY_PENDING,
        0,
        "delivered at once"
    );
    let out = outputs(&mut l);
    let LapicOutput::Ipi(ipi) = out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(ipi.source, 0);
    assert_eq!(ipi.shorthand, Shorthand::None);
    assert_eq!(ipi.message.vector, 0x31);
    assert_eq!(ipi.message.mode, DeliveryMode::Fixed);
    assert_eq!(ipi.message.destination, 2);
    assert!(!ipi.message.logical);
    let mut target = enabled(2);
    assert!(ipi.targets(&target));
    assert!(!ipi.targets(&enabled(1)));
    target.deliver(&ipi.message);
    assert_eq!(target.has_interrupt(), Some(0x31));
}

#[test]
fn init_sipi_sequence_as_linux_sends_it() {
    let mut bsp = enabled(0);
    wr(&mut bsp, REG_ICR_HIGH, 1 << 24);
    wr(&mut bsp, REG_ICR_LOW, 0xC500); // INIT, level assert, level trigger
    wr(&mut bsp, REG_ICR_LOW, 0x8500); // INIT de-assert: ignored
    wr(&mut bsp, REG_ICR_LOW, 0x0608); // SIPI vector 8
    let out = outputs(&mut bsp);
    assert_eq!(out.len(), 2, "{out:?}");
    let mut ap = enabled(1);
    wr(&mut ap, REG_TPR, 0x20);
    for o in out {
        let LapicOutput::Ipi(ipi) = o else { panic!() };
        assert!(ipi.targets(&ap));
        ap.deliver(&ipi.message);
    }
    assert!(ap.take_init());
    assert_eq!(rd(&mut ap, REG_TPR), 0, "INIT resets the registers");
    assert_eq!(rd(&mut ap, REG_SVR), 0xFF);
    assert_eq!(rd(&mut ap, REG_ID), 1 << 24, "but keeps the ID");
    assert_eq!(ap.take_sipi(), Some(8));
    assert_eq!(ap.take_sipi(), None);
}

#[test]
fn shorthands() {
    let mut l = enabled(0);
    wr(&mut l, REG_ICR_LOW, 0x40040); // self, fixed 0x40
    assert!(outputs(&mut l).is_empty());
    assert_eq!(l.has_interrupt(), Some(0x40));

    wr(&mut l, REG_ICR_LOW, 0xC0041); // all excluding self
    let out = outputs(&mut l);
    let LapicOutput::Ipi(ipi) = out[0] else {
        panic!()
    };
    assert_eq!(ipi.shorthand, Shorthand::AllExcludingSelf);
    assert!(!ipi.targets(&l));
    assert!(ipi.targets(&enabled(5)));

    wr(&mut l, REG_ICR_LOW, 0x80400); // all including self, NMI
    let LapicOutput::Ipi(ipi) = outputs(&mut l)[0] else {
        panic!()
    };
    assert!(ipi.targets(&l));
    assert_eq!(ipi.message.mode, DeliveryMode::Nmi);
    l.deliver(&ipi.message);
    assert!(l.take_nmi());
    assert!(!l.take_nmi());
}

#[test]
fn sending_an_illegal_vector_sets_esr() {
    let mut l = enabled(0);
    wr(&mut l, REG_ICR_LOW, 0x40003);
    wr(&mut l, REG_ESR, 0);
    assert_eq!(rd(&mut l, REG_ESR), ESR_SEND_ILLEGAL_VECTOR);
    assert!(outputs(&mut l).is_empty());
}

#[test]
fn logical_destinations_flat_and_cluster() {
    let mut l = enabled(1);
    wr(&mut l, REG_LDR, 0x0400_0000);
    assert_eq!(rd(&mut l, REG_LDR), 0x0400_0000);
    assert!(l.matches_destination(0x04, true));
    assert!(l.matches_destination(0x06, true));
    assert!(!l.matches_destination(0x01, true));
    assert!(l.matches_destination(0xFF, true));
    assert!(l.matches_destination(1, false));
    assert!(!l.matches_destination(4, false));
    assert!(l.matches_destination(0xFF, false), "physical broadcast");

    wr(&mut l, REG_DFR, 0x0FFF_FFFF); // cluster model
    assert_eq!(rd(&mut l, REG_DFR), 0x0FFF_FFFF);
    wr(&mut l, REG_LDR, 0x3200_0000); // cluster 3, member bit 1
    assert!(l.matches_destination(0x32, true));
    assert!(l.matches_destination(0x3A, true));
    assert!(!l.matches_destination(0x22, true));
    assert!(!l.matches_destination(0x31, true));
}

#[test]
fn software_disable_masks_lvts() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, 0x30);
    assert_eq!(rd(&mut l, REG_LVT_TIMER), 0x30);
    wr(&mut l, REG_SVR, 0xFF);
    assert_eq!(rd(&mut l, REG_LVT_TIMER), 0x10030);
    wr(&mut l, REG_LVT_TIMER, 0x30);
    assert_eq!(
        rd(&mut l, REG_LVT_TIMER),
        0x10030,
        "mask sticks while disabled"
    );
}

#[test]
fn oneshot_timer_counts_down_from_now() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, 0x30);
    wr(&mut l, REG_TIMER_DIVIDE, 0x3); // divide by 16
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 1000, 5_000);
    assert_eq!(rd(&mut l, REG_TIMER_INITIAL), 1000);
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 5_000), 1000);
    assert_eq!(
        l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 5_000 + 160),
        990
    );
    assert_eq!(l.next_event(5_000), Some(5_000 + 16_000));
    l.update(20_000);
    assert_eq!(l.has_interrupt(), None);
    l.update(21_000);
    assert_eq!(l.has_interrupt(), Some(0x30));
    assert_eq!(l.next_event(21_000), None);
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 30_000), 0);
}

#[test]
fn periodic_timer_reloads_and_coalesces() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, LVT_TIMER_PERIODIC | 0xEF);
    wr(&mut l, REG_TIMER_DIVIDE, 0xB); // divide by 1
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 100_000, 0);
    assert_eq!(
        l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 150_000),
        50_000
    );
    l.update(100_000);
    assert_eq!(l.acknowledge(), 0xEF);
    wr(&mut l, REG_EOI, 0);
    assert_eq!(l.next_event(100_000), Some(200_000));
    l.update(450_000); // three periods late: one interrupt
    assert_eq!(l.acknowledge(), 0xEF);
    assert_eq!(l.has_interrupt(), None);
    assert_eq!(l.next_event(450_000), Some(500_000));
}

#[test]
fn masked_timer_counts_without_interrupting() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, LVT_MASKED | 0x30);
    wr(&mut l, REG_TIMER_DIVIDE, 0xB);
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 10, 0);
    l.update(100);
    assert_eq!(l.has_interrupt(), None);
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 5), 5);
}

#[test]
fn divide_change_keeps_the_current_count() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, 0x30);
    wr(&mut l, REG_TIMER_DIVIDE, 0xB); // 1
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 1000, 0);
    l.mmio_write(u64::from(REG_TIMER_DIVIDE), 4, 0x0, 400); // divide by 2
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 400), 600);
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 600), 500);
    assert_eq!(l.next_event(600), Some(400 + 1200));
}

#[test]
fn tsc_deadline_mode() {
    let mut l = enabled(0);
    l.set_tsc_hz(2_000_000_000);
    l.write_tsc_deadline(5000, 0, 0);
    assert_eq!(l.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
    wr(&mut l, REG_LVT_TIMER, LVT_TIMER_TSC_DEADLINE | 0xEC);
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 1000, 0);
    assert_eq!(rd(&mut l, REG_TIMER_INITIAL), 0, "initial count ignored");
    // At now = 1000 ns the TSC reads 7000; deadline 9000 is 2000 ticks = 1000 ns away.
    l.write_tsc_deadline(9000, 1000, 7000);
    assert_eq!(l.tsc_deadline(), 9000);
    assert_eq!(l.next_event(1000), Some(2000));
    l.update(1999);
    assert_eq!(l.has_interrupt(), None);
    l.update(2000);
    assert_eq!(l.has_interrupt(), Some(0xEC));
    assert_eq!(l.tsc_deadline(), 0, "disarmed after firing");
    // A deadline in the past fires at once; 0 disarms.
    l.write_tsc_deadline(1, 3000, 9000);
    assert_eq!(l.next_event(3000), Some(3000));
    l.write_tsc_deadline(0, 3000, 9000);
    assert_eq!(l.next_event(3000), None);
    // Leaving TSC-deadline mode disarms.
    l.write_tsc_deadline(20_000, 3000, 9000);
    wr(&mut l, REG_LVT_TIMER, 0xEC);
    assert_eq!(l.next_event(3000), None);
}

#[test]
fn lint_pins() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_LINT1, 0x400); // NMI
    l.set_lint(1, true);
    assert!(l.take_nmi());
    l.set_lint(1, true);
    assert!(!l.take_nmi(), "edge only");
    // LINT0 fixed, level triggered: remote IRR until EOI.
    wr(&mut l, REG_LVT_LINT0, LVT_LEVEL | 0x50);
    assert!(!l.accepts_pic_interrupts());
    l.set_lint(0, true);
    assert_ne!(rd(&mut l, REG_LVT_LINT0) & LVT_REMOTE_IRR, 0);
    assert_eq!(l.acknowledge(), 0x50);
    wr(&mut l, REG_EOI, 0);
    assert_eq!(rd(&mut l, REG_LVT_LINT0) & LVT_REMOTE_IRR, 0);
    l.set_lint(9, true); // no such pin: ignored
}

#[test]
fn extint_message_from_ioapic() {
    let mut l = enabled(0);
    let msg = InterruptMessage {
        vector: 0,
        mode: DeliveryMode::ExtInt,
        logical: false,
        destination: 0,
        level_triggered: false,
    };
    l.deliver(&msg);
    assert!(l.take_extint());
    assert!(!l.take_extint());
}

#[test]
fn globally_disabled_apic_passes_the_pic_through() {
    let mut l = enabled(1);
    assert!(!l.accepts_pic_interrupts());
    assert!(l.write_apic_base_msr(0xFEE0_0000));
    assert!(!l.hw_enabled());
    assert!(l.accepts_pic_interrupts());
    assert_eq!(l.mmio_base(), None);
    assert_eq!(rd(&mut l, REG_VERSION), 0, "page not decoded");
    assert!(!l.matches_destination(1, false));
}

#[test]
fn x2apic_mode_transitions_and_msrs() {
    let mut l = enabled(0x12);
    assert_eq!(l.msr_read(0x802, 0), None, "#GP in xAPIC mode");
    assert!(
        !l.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_EXTD),
        "EXTD without EN"
    );
    assert!(
        !l.write_apic_base_msr(0xFEE0_0001 | APIC_BASE_ENABLE),
        "reserved bit"
    );
    assert!(l.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE | APIC_BASE_EXTD));
    assert!(l.x2apic_mode());
    assert_eq!(l.mmio_base(), None);
    assert_eq!(l.msr_read(0x802, 0), Some(0x12));
    assert_eq!(l.msr_read(0x803, 0), Some(0x50014));
    assert_eq!(l.msr_read(0x80D, 0), Some(0x0001_0004), "cluster 1, bit 2");
    assert!(!l.msr_write(0x80D, 0, 0), "LDR read-only");
    assert!(
        !l.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE),
        "x2APIC -> xAPIC"
    );

    assert!(l.msr_write(0x808, 0x20, 0));
    assert_eq!(l.msr_read(0x808, 0), Some(0x20));
    assert!(!l.msr_write(0x808, 1 << 32, 0));
    assert!(l.msr_write(0x83F, 0x80, 0)); // SELF IPI
    assert_eq!(l.has_interrupt(), Some(0x80));
    assert_eq!(l.msr_read(0x83F, 0), None, "write-only");
    assert_eq!(l.acknowledge(), 0x80);
    assert!(!l.msr_write(0x80B, 1, 0), "EOI must be 0");
    assert!(l.msr_write(0x80B, 0, 0));
    assert_eq!(l.msr_read(0x810 + 4, 0), Some(0));

    assert!(l.msr_write(0x830, (0x1234_u64 << 32) | 0x0031, 0));
    let LapicOutput::Ipi(ipi) = l.drain_output().next().unwrap() else {
        panic!()
    };
    assert_eq!(ipi.message.destination, 0x1234);
    assert_eq!(l.msr_read(0x830, 0), Some((0x1234_u64 << 32) | 0x31));

    let mut t = enabled(0x1234);
    assert!(t.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE | APIC_BASE_EXTD));
    assert!(ipi.targets(&t));
    assert!(t.matches_destination(0x0123_0010, true));

    // Disable, then x2APIC directly from disabled is invalid.
    assert!(l.write_apic_base_msr(0xFEE0_0000));
    assert!(!l.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE | APIC_BASE_EXTD));
    assert!(l.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE));
}

#[test]
fn narrow_reads_and_odd_writes() {
    let mut l = Lapic::new(0, true);
    assert_eq!(l.mmio_read(0x32, 1, 0), 0x05, "byte 2 of version");
    assert_eq!(l.mmio_read(0x30, 2, 0), 0x14);
    assert_eq!(l.mmio_read(0x34, 4, 0), 0, "bytes 4-15 of a slot");
    l.mmio_write(0xF0, 1, 0x1FF, 0);
    assert_eq!(l.mmio_read(0xF0, 4, 0), 0xFF, "byte writes are dropped");
    l.mmio_write(0xF0, 8, 0xFFFF_FFFF_0000_01FF, 0);
    assert_eq!(l.mmio_read(0xF0, 4, 0), 0x1FF);
}

#[test]
fn no_guest_access_panics() {
    let values = [
        0u64,
        1,
        0xFF,
        0x7FF,
        0xFFFF_FFFF,
        u64::MAX,
        0x0006_0000,
        0x000C_4500,
    ];
    let mut l = Lapic::new(0, true);
    wr(&mut l, REG_SVR, 0x1FF);
    let mut now = 0;
    for offset in (0..0x1000u64).step_by(4) {
        for size in [1u8, 2, 4, 8, 3, 0] {
            for v in values {
                now += 7;
                l.mmio_write(offset, size, v, now);
                l.mmio_read(offset, size, now);
                l.update(now);
            }
        }
    }
    l.mmio_read(0xFFFF_FFFF, 4, now);
    assert!(l.write_apic_base_msr(0xFEE0_0000 | APIC_BASE_ENABLE | APIC_BASE_EXTD));
    for msr in 0x7F0..0x910 {
        for v in values {
            l.msr_write(msr, v, now);
            l.msr_read(msr, now);
        }
    }
    l.write_tsc_deadline(u64::MAX, 0, 0);
    l.update(u64::MAX);
    // A 1 ns periodic timer started at 0 and updated at the end of time.
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, LVT_TIMER_PERIODIC | 0x40);
    wr(&mut l, REG_TIMER_DIVIDE, 0xB);
    wr(&mut l, REG_TIMER_INITIAL, 1);
    l.update(u64::MAX);
    l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, u64::MAX);
    assert_eq!(l.has_interrupt(), Some(0x40));
    l.drain_output().for_each(drop);
}

#[test]
fn lvt_rewrite_keeps_a_due_expiry_and_mode_switch_recomputes() {
    let mut l = enabled(0);
    wr(&mut l, REG_LVT_TIMER, 0x30);
    wr(&mut l, REG_TIMER_DIVIDE, 0xB);
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 100, 0);
    // Expired at 100 but update() not run yet: rewriting the LVT must not lose it.
    l.mmio_write(u64::from(REG_LVT_TIMER), 4, 0x31, 150);
    l.update(150);
    assert_eq!(l.has_interrupt(), Some(0x31));
    l.acknowledge();
    l.eoi();

    // Running one-shot switched to periodic at 40 (count 60): fires at 100, then every 100.
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 100, 1000);
    l.mmio_write(
        u64::from(REG_LVT_TIMER),
        4,
        u64::from(LVT_TIMER_PERIODIC | 0x31),
        1040,
    );
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 1040), 60);
    assert_eq!(l.next_event(1040), Some(1100));
    l.update(1100);
    assert_eq!(l.acknowledge(), 0x31);
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 1150), 50);
    // Unmasking/re-writing the LVT does not shift the schedule.
    l.mmio_write(
        u64::from(REG_LVT_TIMER),
        4,
        u64::from(LVT_TIMER_PERIODIC | 0x32),
        1157,
    );
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 1157), 43);
    assert_eq!(l.next_event(1157), Some(1200));
    // Initial count 0 stops the timer.
    l.mmio_write(u64::from(REG_TIMER_INITIAL), 4, 0, 1160);
    assert_eq!(l.next_event(1160), None);
    assert_eq!(l.mmio_read(u64::from(REG_TIMER_CURRENT), 4, 1160), 0);
}

#[test]
fn divide_configuration_values() {
    use super::timer::divisor;
    let expected = [
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
    ];
    for (dcr, div) in expected {
        assert_eq!(divisor(dcr), div, "dcr {dcr:#x}");
    }
    let mut l = enabled(0);
    wr(&mut l, REG_TIMER_DIVIDE, 0xFFFF_FFFF);
    assert_eq!(rd(&mut l, REG_TIMER_DIVIDE), 0xB, "only bits 0, 1, 3");
}

#[test]
fn msi_encoding_round_trips() {
    // SDM Vol. 3, 11.11: logical destination 0x0C, level-triggered lowest priority vector 0x41.
    let m = InterruptMessage { vector: 0x41, mode: DeliveryMode::LowestPriority, logical: true, destination: 0x0C, level_triggered: true };
    let (a, d) = m.to_msi();
    assert_eq!(a, 0xFEE0_C004);
    assert_eq!(d, 0xC141);
    assert_eq!(InterruptMessage::from_msi(a, d), Some(m));
    assert_eq!(InterruptMessage::from_msi(0xFED0_0000, d), None);
    assert_eq!(InterruptMessage::from_msi(a, 3 << 8), None, "delivery mode 3 is reserved");
}
