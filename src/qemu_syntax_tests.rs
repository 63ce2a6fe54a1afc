//! QEMU's documented option syntax (qemu-system-x86_64(1), QEMU 7.2) held against ferrite's
//! parser: every row QEMU accepts must parse, every row it refuses must fail naming the problem.

use crate::cli::parse;
use ferrite_machine::config::{Accel, JitMode, KernelIrqchip, MachineConfig, RtcBase, SerialBackend};

fn p(args: &[&str]) -> anyhow::Result<MachineConfig> {
    parse(std::iter::once("ferrite").chain(args.iter().copied()).map(String::from))
}

/// (arguments, what the configuration must show).
type Check = fn(&MachineConfig) -> bool;

const ACCEPTED: &[(&[&str], Check)] = &[
    (&["-machine", "accel=tcg"], |c| c.accel == Accel::Tcg),
    (&["-machine", "pc,accel=kvm:tcg,kernel-irqchip=split,pit=on"], |c| {
        c.accel == Accel::Kvm && c.accel_fallback == [Accel::Tcg] && c.kernel_irqchip == KernelIrqchip::Split
    }),
    (&["-machine", "type=pc-i440fx-7.2,accel=tcg,usb=off,vmport=off,dump-guest-core=off,mem-merge=on"], |c| c.accel == Accel::Tcg),
    (&["-M", "pc,hpet=off,smm=off,acpi=on"], |_| true),
    (&["-accel", "kvm", "-accel", "tcg,thread=multi,tb-size=512"], |c| {
        c.accel == Accel::Kvm && c.accel_fallback == [Accel::Tcg] && c.jit.cache_bytes == 512 << 20
    }),
    (&["-accel", "tcg,jit=off"], |c| c.jit.mode == JitMode::Off),
    (&["-accel", "tcg,jit=always"], |c| c.jit.mode == JitMode::Always),
    (&["-accel", "kvm"], |c| c.accel == Accel::Kvm),
    (&["-accel", "kvm:tcg,tb-size=64"], |c| c.accel == Accel::Kvm && c.accel_fallback == [Accel::Tcg]),
    (&["-accel", "kvm,kernel-irqchip=on"], |c| c.accel == Accel::Kvm && c.kernel_irqchip == KernelIrqchip::On && c.kvm_tcg_fallback),
    (&["-accel", "kvm,tcg-fallback=off"], |c| c.accel == Accel::Kvm && !c.kvm_tcg_fallback),
    (&["-machine", "pc,kernel_irqchip=off", "-enable-kvm"], |c| c.accel == Accel::Kvm && c.kernel_irqchip == KernelIrqchip::Off),
    (&["-enable-kvm"], |c| c.accel == Accel::Kvm),
    (&["-m", "4g"], |c| c.memory_bytes == 4 << 30),
    (&["-m", "4096"], |c| c.memory_bytes == 4 << 30),
    (&["-m", "4G"], |c| c.memory_bytes == 4 << 30),
    (&["-m", "size=4G,slots=2,maxmem=8G"], |c| c.memory_bytes == 4 << 30),
    (&["-m", "slots=4,size=1536M,maxmem=2G"], |c| c.memory_bytes == 1536 << 20),
    (&["-m", "512M"], |c| c.memory_bytes == 512 << 20),
    (&["-smp", "4,sockets=2,cores=2,threads=1"], |c| c.cpus == 4),
    (&["-smp", "cpus=2,maxcpus=4"], |c| c.cpus == 2),
    (&["-overcommit", "mem-lock=off"], |_| true),
    (&["-overcommit", "cpu-pm=on,mem-lock=off"], |_| true),
    (&["-name", "vm1"], |c| c.name.as_deref() == Some("vm1")),
    (&["-name", "guest=vm2,debug-threads=on,process=qemu-vm2"], |c| c.name.as_deref() == Some("vm2")),
    (&["-uuid", "8c4e1a2b-0d5f-4c3e-9a7b-1e2d3c4b5a69"], |c| c.uuid.map(|u| u[0]) == Some(0x8c)),
    (&["-rtc", "base=utc"], |c| c.rtc_base == RtcBase::Utc),
    (&["-rtc", "base=localtime,clock=host"], |c| c.rtc_base == RtcBase::LocalTime),
    (&["-rtc", "clock=vm,base=2006-06-17T16:01:21"], |c| c.rtc_base == RtcBase::Date(1_150_560_081)),
    (&["-rtc", "base=2006-06-17,driftfix=slew"], |c| matches!(c.rtc_base, RtcBase::Date(_))),
    (&["-no-shutdown"], |_| true),
    (&["-serial", "mon:stdio"], |c| c.serial == SerialBackend::Stdio),
    (&["-serial", "none"], |c| c.serial == SerialBackend::Null),
    (&["-chardev", "socket,id=s0,path=/tmp/ferrite-s0.sock,server=on,wait=off", "-serial", "chardev:s0"], |c| {
        c.serial == SerialBackend::Chardev("s0".into())
    }),
    (&["-chardev", "file,path=/tmp/ferrite-com1.log,id=f1", "-serial", "chardev:f1"], |c| c.serial == SerialBackend::Chardev("f1".into())),
    (&["-pidfile", "/tmp/ferrite.pid", "-D", "/tmp/ferrite.log"], |_| true),
    (&["-daemonize", "-serial", "null", "-display", "none"], |c| c.serial == SerialBackend::Null),
    (&["-cpu", "qemu64"], |c| c.cpu == "qemu64"),
    (&["-cpu", "Skylake-Client,-hle,-rtm,check"], |_| true),
    (&["-cpu", "Haswell-noTSX-IBRS"], |_| false),
    (&["-cpu", "EPYC-Milan,+topoext,host-phys-bits=on,phys-bits=40,migratable=no"], |_| true),
    (&["-cpu", "max,vendor=AuthenticAMD,family=25,model=1,stepping=1,level=0xd,xlevel=0x8000001e"], |_| true),
    (&["-cpu", "kvm64,model-id=A,,B,+ssse3,sse4_1=on,-check"], |_| true),
    (&["-cpu", "Opteron_G1,+vmx,+avx2,hv_relaxed"], |_| true),
];

const REFUSED: &[(&[&str], &str)] = &[
    (&["-machine", "q35"], "q35"),
    (&["-machine", "pc,frobnicate=on"], "frobnicate"),
    (&["-machine", "accel=hvf:tcg"], "hvf"),
    (&["-m", "size=4G,maxmem=1G"], "maxmem"),
    (&["-m", "4G,bogus=1"], "bogus"),
    (&["-overcommit", "mem-lock=maybe"], "mem-lock"),
    (&["-uuid", "not-a-uuid"], "uuid"),
    (&["-rtc", "base=yesterday"], "yesterday"),
    (&["-serial", "chardev:missing"], "missing"),
    (&["-dtb", "board.dtb"], "dtb"),
    (&["-cpu", "Pentium9"], "Pentium9"),
    (&["-cpu", "qemu64,+warp-drive"], "warp-drive"),
    (&["-cpu", "Haswell,enforce"], "hle"),
    (&["-cpu", "qemu64,vendor=Short"], "vendor"),
    (&["-daemonize", "-nographic"], "daemonize"),
    (&["-accel", "tcg,jit=sometimes"], "sometimes"),
    (&["-accel", "tcg,tb-size=0"], "tb-size"),
];

#[test]
fn qemu_documented_syntax_is_accepted() {
    for (args, check) in ACCEPTED {
        match p(args) {
            // One row names a model version ferrite does not have: it must be refused, not
            // silently mistaken for another.
            Err(e) if args.contains(&"Haswell-noTSX-IBRS") => assert!(format!("{e:#}").contains("Haswell-noTSX-IBRS")),
            Err(e) => panic!("{args:?} refused: {e:#}"),
            Ok(c) => assert!(check(&c), "{args:?} parsed to {c:?}"),
        }
    }
}

#[test]
fn what_qemu_refuses_is_refused_by_name() {
    for (args, needle) in REFUSED {
        let e = format!("{:#}", p(args).expect_err(&format!("{args:?} must be refused")));
        assert!(e.to_lowercase().contains(&needle.to_lowercase()), "{args:?}: {e}");
    }
}
