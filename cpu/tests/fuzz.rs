//! Random bytes as code, in every mode: the host process never panics, the guest only sees
//! exceptions (or shutdown). Seeded: `FERRITE_FUZZ_SEED` reproduces a run, `FERRITE_FUZZ_CASES`
//! sets the count.

use ferrite_cpu::state::{cr0, cr4, efer, flags, reg, seg_attr::*, CpuState, Seg, Segment, TableReg};
use ferrite_cpu::testing::FlatBus;
use ferrite_cpu::{Cpu, CpuModel, RunExit};

const MEM: usize = 4 << 20;
const CODE: u64 = 0x20000;
const IDT: u64 = 0x1000;
const GDT: u64 = 0x500;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Real,
    V86,
    Protected16,
    Protected32,
    Compat32,
    Long64,
}

fn seg(selector: u16, limit: u32, attrs: u32) -> Segment {
    Segment { selector, base: 0, limit, attrs }
}

/// A machine image with descriptor tables and identity paging, so that random code can
/// wander into any system instruction and any exception path.
fn setup(bus: &mut FlatBus, mode: Mode, rng: &mut Rng) -> CpuState {
    // GDT: null, code32, data32, code64, data, code16, data16, a TSS.
    let gdt: [u64; 8] = [
        0,
        0x00cf_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x0000_9b00_0000_ffff,
        0x0000_9300_0000_ffff,
        0x0000_8b00_3000_0067,
    ];
    for (i, d) in gdt.iter().enumerate() {
        bus.load(GDT + i as u64 * 8, &d.to_le_bytes());
    }
    // IDT gates all point at a random spot in the code area, so faults keep executing noise.
    for v in 0..256u64 {
        let target = CODE + (rng.next() % 0x1000);
        let lo = (target & 0xffff) | (0x18u64 << 16) | (0x8eu64 << 40) | (((target >> 16) & 0xffff) << 48);
        bus.load(IDT + v * 16, &lo.to_le_bytes());
        bus.load(IDT + v * 16 + 8, &(target >> 32).to_le_bytes());
    }
    // Identity map 0-4 MiB with 2 MiB pages for long mode.
    bus.load(0x4000, &(0x5003u64).to_le_bytes());
    bus.load(0x5000, &(0x6003u64).to_le_bytes());
    bus.load(0x6000, &(0x83u64).to_le_bytes());
    bus.load(0x6008, &((2u64 << 20) | 0x83).to_le_bytes());

    let mut st = CpuState::reset();
    for g in st.gpr.iter_mut() {
        *g = rng.next();
    }
    st.gpr[reg::RSP] = 0xf000;
    st.rflags = flags::FIXED1 | (rng.next() & (flags::ARITH | flags::DF));
    st.gdtr = TableReg { base: GDT, limit: 8 * 8 - 1 };
    st.idtr = TableReg { base: IDT, limit: 0xfff };
    st.tr = Segment { selector: 0x38, base: 0x3000, limit: 0x67, attrs: P | 11 };
    let code32 = seg(0x08, 0xffff_ffff, P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED | DB | G);
    let data32 = seg(0x10, 0xffff_ffff, P | S | TYPE_WRITABLE | TYPE_ACCESSED | DB | G);
    match mode {
        Mode::Real | Mode::V86 => {
            st.seg[Seg::Cs as usize] = Segment::real_mode(0x2000, P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED);
            st.rip = 0;
            st.idtr = TableReg { base: 0, limit: 0x3ff };
            if let Mode::V86 = mode {
                st.cr0 |= cr0::PE;
                st.rflags |= flags::VM;
                st.idtr = TableReg { base: IDT, limit: 0xfff };
                for s in Seg::ALL {
                    st.seg[s as usize] = Segment { attrs: P | S | TYPE_WRITABLE | TYPE_ACCESSED | (3 << DPL_SHIFT), ..st.seg[s as usize] };
                }
                st.seg[Seg::Cs as usize].base = 0x20000;
                st.seg[Seg::Cs as usize].selector = 0x2000;
            }
        }
        Mode::Protected16 | Mode::Protected32 | Mode::Compat32 | Mode::Long64 => {
            st.cr0 |= cr0::PE;
            for s in [Seg::Ds, Seg::Es, Seg::Fs, Seg::Gs, Seg::Ss] {
                st.seg[s as usize] = data32;
            }
            st.seg[Seg::Cs as usize] = code32;
            st.rip = CODE;
            if let Mode::Protected16 = mode {
                st.seg[Seg::Cs as usize] = seg(0x28, 0xffff, P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED);
                st.seg[Seg::Cs as usize].base = CODE;
                st.rip = 0;
            }
            if matches!(mode, Mode::Compat32 | Mode::Long64) {
                st.cr0 |= cr0::PG;
                st.cr3 = 0x4000;
                st.cr4 = cr4::PAE;
                st.efer = efer::LME | efer::LMA | efer::NXE | efer::SCE;
                if let Mode::Long64 = mode {
                    st.seg[Seg::Cs as usize] = seg(0x18, 0xffff_ffff, P | S | TYPE_CODE | TYPE_WRITABLE | TYPE_ACCESSED | L | G);
                }
            }
        }
    }
    st
}

#[test]
fn random_code_never_crashes_the_host() {
    let cases: u64 = std::env::var("FERRITE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500);
    // A fixed default keeps CI reproducible; `FERRITE_FUZZ_SEED=random` (or a number) explores.
    let seed: u64 = match std::env::var("FERRITE_FUZZ_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
            | 1,
        Some(v) => v.parse::<u64>().expect("FERRITE_FUZZ_SEED: a number or 'random'") | 1,
        None => 20261127,
    };
    println!("fuzz: seed {seed} (FERRITE_FUZZ_SEED={seed} reproduces this run)");
    let mut rng = Rng(seed);
    let modes = [Mode::Real, Mode::V86, Mode::Protected16, Mode::Protected32, Mode::Compat32, Mode::Long64];
    let mut bus = FlatBus::new(MEM);
    let mut exits = [0u64; 4];
    for i in 0..cases {
        let mode = modes[(i % modes.len() as u64) as usize];
        bus.ram.fill(0);
        let mut code = vec![0u8; 0x1000];
        for b in code.iter_mut() {
            *b = rng.next() as u8;
        }
        bus.load(CODE, &code);
        let st = setup(&mut bus, mode, &mut rng);
        let mut cpu = Cpu::new(CpuModel::max());
        cpu.set_state(st);
        let exit = cpu.run(&mut bus, 200);
        exits[match exit {
            RunExit::Budget => 0,
            RunExit::Halted => 1,
            RunExit::Shutdown => 2,
            RunExit::Debug | RunExit::Kicked => 3,
        }] += 1;
    }
    println!(
        "fuzz: {cases} cases: {} ran out their budget, {} halted, {} shut down, {} debug stops",
        exits[0], exits[1], exits[2], exits[3]
    );
}
