//! Compile time: the translator on a fixed corpus of guest blocks, alone on one thread, so
//! changes to the code it emits can be measured without a guest's run-to-run noise.
//!
//!     FERRITE_JIT_RECORD=/tmp/blocks.txt ferrite ...           (records what a run compiles)
//!     cargo bench -p ferrite-cpu --bench compile -- /tmp/blocks.txt [ROUNDS] [--quick]
//!
//! Prints the blocks, the Cranelift IR instructions per block, and microseconds of CPU time
//! per block: the minimum and median over the rounds (default 5).

use ferrite_cpu::testing::jit_layout;
use ferrite_jit::{thread_cpu_ns, BlockSpec, Translator};
use iced_x86::{Decoder, DecoderOptions, Instruction};

struct Recorded {
    insns: Vec<Instruction>,
    bitness: u32,
    user: bool,
    opaque: u64,
    groups: bool,
}

fn parse(line: &str) -> Option<Recorded> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [bitness, user, opaque, groups, rip, hex] = f[..] else { return None };
    let bitness: u32 = bitness.parse().ok()?;
    let rip = u64::from_str_radix(rip, 16).ok()?;
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect::<Result<_, _>>().ok()?;
    let mut decoder = Decoder::with_ip(bitness, &bytes, rip, DecoderOptions::NONE);
    let insns: Vec<Instruction> = std::iter::from_fn(|| decoder.can_decode().then(|| decoder.decode())).collect();
    Some(Recorded { insns, bitness, user: user == "1", opaque: u64::from_str_radix(opaque, 16).ok()?, groups: groups == "1" })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench -p ferrite-cpu --bench compile -- CORPUS [ROUNDS] (see the file's header)");
        std::process::exit(2);
    };
    // `--quick`: the quick tier's compile (see `ferrite_jit::BlockSpec::quick`).
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2);
    });
    let blocks: Vec<Recorded> = text.lines().filter_map(parse).filter(|b| !b.insns.is_empty()).collect();
    let mut translator = Translator::new(jit_layout(), 1 << 30, false).expect("a Cranelift backend for this host");
    let (mut per_block, mut ir) = (Vec::new(), 0u64);
    for _ in 0..rounds {
        ir = 0;
        let start = thread_cpu_ns();
        for (n, b) in blocks.iter().enumerate() {
            let spec = BlockSpec { insns: &b.insns, bitness: b.bitness, user: b.user, block: 0x1000 + n, chain: true, opaque: b.opaque, groups: b.groups, quick, countdown: 0 };
            ir += translator.compile(&spec).map_or(0, |c| c.ir_insts as u64);
        }
        per_block.push((thread_cpu_ns() - start) as f64 / 1e3 / blocks.len() as f64);
        // SAFETY: no compiled code ever runs here.
        unsafe { translator.reset() }.expect("a new module");
    }
    per_block.sort_by(f64::total_cmp);
    println!(
        "{} blocks, {:.1} IR instructions per block; {:.1} us per block (min), {:.1} (median of {rounds})",
        blocks.len(),
        ir as f64 / blocks.len() as f64,
        per_block[0],
        per_block[per_block.len() / 2]
    );
}
