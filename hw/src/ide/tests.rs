use super::*;
use crate::pci::{PCI_COMMAND_IO, PCI_COMMAND_MASTER};
use crate::testing::{FakeLine, TestLink};
use crate::NoIrq;
use ferrite_block::{DiskError, MemDisk};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

const RAM: u64 = 0x40_0000;
const BSY: u8 = 0x80;
const DRDY: u8 = 0x40;
const DRQ: u8 = 0x08;
const ERR: u8 = 0x01;
const ABRT: u8 = 0x04;
const IDNF: u8 = 0x10;
const NIEN: u8 = 0x02;
const SRST: u8 = 0x04;
const HOB: u8 = 0x80;
const BM_ACTIVE: u8 = 1;
const BM_ERROR: u8 = 2;
const BM_INT: u8 = 4;

/// Sector `n` of a test disk holds bytes derived from `n`, so misplaced data shows.
fn pattern(len: usize, sector: usize) -> Vec<u8> {
    (0..len).map(|i| ((i / sector) as u8).wrapping_mul(37) ^ (i as u8)).collect()
}

/// A disk with a gate the test can hold to keep jobs waiting, a flush counter and an
/// injectable read error.
struct TestDisk {
    inner: MemDisk,
    gate: Mutex<()>,
    flushes: AtomicUsize,
    fail_reads: AtomicBool,
}

impl TestDisk {
    fn new(data: Vec<u8>) -> Arc<Self> {
        Arc::new(TestDisk {
            inner: MemDisk::new(data, false),
            gate: Mutex::new(()),
            flushes: AtomicUsize::new(0),
            fail_reads: AtomicBool::new(false),
        })
    }

    fn pass(&self) {
        drop(self.gate.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Disk for TestDisk {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.pass();
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(DiskError::Io(std::io::Error::other("injected")));
        }
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.pass();
        self.inner.write_at(offset, buf)
    }
    fn flush(&self) -> Result<(), DiskError> {
        self.pass();
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A large disk that reads as zeros (IDENTIFY of a disk beyond LBA28).
struct Sparse(u64);

impl Disk for Sparse {
    fn size(&self) -> u64 {
        self.0
    }
    fn read_only(&self) -> bool {
        true
    }
    fn read_at(&self, _offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> Result<(), DiskError> {
        Err(DiskError::ReadOnly)
    }
    fn flush(&self) -> Result<(), DiskError> {
        Ok(())
    }
}

fn hd(disk: Arc<dyn Disk>) -> Option<IdeDrive> {
    Some(IdeDrive { kind: DriveKind::Disk(disk), model: "QEMU HARDDISK".into(), serial: "QM00001".into() })
}

fn cd(media: Option<Arc<dyn Disk>>) -> Option<IdeDrive> {
    Some(IdeDrive { kind: DriveKind::Cdrom(media), model: "QEMU DVD-ROM".into(), serial: "QM00003".into() })
}

fn mem_disk(sectors: usize) -> Arc<MemDisk> {
    Arc::new(MemDisk::new(pattern(sectors * 512, 512), false))
}

struct Rig {
    ide: PiixIde,
    link: TestLink,
    irq: [Arc<FakeLine>; 2],
    /// The channel the helpers talk to.
    ch: usize,
}

impl Rig {
    fn new(drives: [[Option<IdeDrive>; 2]; 2]) -> Self {
        let link = TestLink::new(RAM);
        let irq = [Arc::new(FakeLine::default()), Arc::new(FakeLine::default())];
        let lines: [Arc<dyn IrqLine + Send + Sync>; 2] = [irq[0].clone(), irq[1].clone()];
        let mut ide = PiixIde::new(lines, drives).unwrap();
        ide.attach(link.link());
        ide.config_write(0x20, 4, 0xC000);
        ide.config_write(0x04, 2, u32::from(PCI_COMMAND_IO | PCI_COMMAND_MASTER));
        Rig { ide, link, irq, ch: 0 }
    }

    /// A disk as primary master.
    fn disk(disk: Arc<dyn Disk>) -> Self {
        Rig::new([[hd(disk), None], [None, None]])
    }

    fn ports(&self) -> IdePorts {
        self.ide.ports(self.ch)
    }
    fn outb(&self, reg: u16, v: u8) {
        self.ports().command_write(reg, 1, u32::from(v));
    }
    fn inb(&self, reg: u16) -> u8 {
        self.ports().command_read(reg, 1) as u8
    }
    fn status(&self) -> u8 {
        self.inb(7)
    }
    fn alt(&self) -> u8 {
        self.ports().control_read()
    }
    fn control(&self, v: u8) {
        self.ports().control_write(v);
    }
    fn cmd(&self, c: u8) {
        self.outb(7, c);
    }
    fn irq(&self) -> bool {
        self.irq[self.ch].level()
    }
    /// Waits for the I/O thread, then checks that BSY is clear; returns the alt status.
    fn wait(&self) -> u8 {
        self.ide.drain();
        let s = self.alt();
        assert_eq!(s & BSY, 0, "still busy: {s:#x}");
        s
    }
    fn error(&self) -> u8 {
        self.inb(1)
    }
    fn read_bytes(&self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 1);
        while v.len() < n {
            v.extend_from_slice(&(self.ports().command_read(0, 2) as u16).to_le_bytes());
        }
        v.truncate(n);
        v
    }
    fn write_bytes(&self, data: &[u8]) {
        for pair in data.chunks(2) {
            let w = u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            self.ports().command_write(0, 2, u32::from(w));
        }
    }
    fn select(&self, unit: u8) {
        self.outb(6, 0xA0 | unit << 4);
    }
    fn lba28(&self, lba: u32, count: u8) {
        self.outb(2, count);
        self.outb(3, lba as u8);
        self.outb(4, (lba >> 8) as u8);
        self.outb(5, (lba >> 16) as u8);
        self.outb(6, 0xE0 | (lba >> 24) as u8 & 0x0F);
    }
    fn lba48(&self, lba: u64, count: u16) {
        for (reg, shift) in [(2, 8), (3, 24), (4, 32), (5, 40)] {
            let v = if reg == 2 { (count >> 8) as u8 } else { (lba >> shift) as u8 };
            self.outb(reg, v);
        }
        self.outb(2, count as u8);
        self.outb(3, lba as u8);
        self.outb(4, (lba >> 8) as u8);
        self.outb(5, (lba >> 16) as u8);
        self.outb(6, 0x40);
    }
    /// Issues a non-data command and waits for it.
    fn simple(&self, c: u8) -> u8 {
        self.cmd(c);
        self.wait()
    }
    /// Reads one DRQ block of `n` bytes after waiting for it and acknowledging the interrupt.
    fn block(&self, n: usize) -> Vec<u8> {
        let s = self.wait();
        assert_eq!(s & (DRQ | ERR), DRQ, "status {s:#x}");
        assert!(self.irq(), "an interrupt announces each data-in block");
        self.status();
        self.read_bytes(n)
    }
    fn identify(&self) -> Vec<u8> {
        self.cmd(0xEC);
        let data = self.block(512);
        assert_eq!(self.alt() & (DRQ | BSY), 0);
        data
    }
    fn bm_write(&mut self, reg: u64, v: u8) {
        self.ide.bar_write(4, 8 * self.ch as u64 + reg, &[v]);
    }
    fn bm_read(&mut self, reg: u64) -> u8 {
        let mut b = [0];
        self.ide.bar_read(4, 8 * self.ch as u64 + reg, &mut b);
        b[0]
    }
    fn bm_status(&mut self) -> u8 {
        self.bm_read(2)
    }
    /// Writes a PRD table at `table` and points the bus master at it; stopped, status
    /// cleared, direction set.
    fn prd(&mut self, table: u64, entries: &[(u32, u32)], to_memory: bool) {
        for (i, &(addr, count)) in entries.iter().enumerate() {
            let eot = if i + 1 == entries.len() { 0x8000_0000 } else { 0 };
            self.link.mem.write(table + 8 * i as u64, &addr.to_le_bytes()).unwrap();
            self.link.mem.write(table + 8 * i as u64 + 4, &(count | eot).to_le_bytes()).unwrap();
        }
        self.bm_write(0, 0);
        self.bm_write(2, BM_ERROR | BM_INT);
        self.ide.bar_write(4, 8 * self.ch as u64 + 4, &(table as u32).to_le_bytes());
        self.bm_write(0, if to_memory { 8 } else { 0 });
    }
    fn bm_start(&mut self, to_memory: bool) {
        self.bm_write(0, if to_memory { 9 } else { 1 });
    }
    fn mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.link.mem.read(addr, &mut v).unwrap();
        v
    }
}

fn word(data: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([data[2 * i], data[2 * i + 1]])
}

/// An ATA string from IDENTIFY words: two characters a word, high byte first.
fn ata_string(data: &[u8], words: std::ops::Range<usize>) -> String {
    let s: String = words.flat_map(|w| [data[2 * w + 1] as char, data[2 * w] as char]).collect();
    s.trim_end().to_string()
}

// ---- PCI function ----

#[test]
fn pci_header() {
    let mut ide = PiixIde::new([Arc::new(NoIrq), Arc::new(NoIrq)], [[None, None], [None, None]]).unwrap();
    assert_eq!(ide.config_read(0, 4), 0x7010_8086);
    assert_eq!(ide.config_read(8, 4) >> 8, 0x01_01_80, "IDE, compatibility mode, bus master");
    assert_eq!(ide.config_read(0x04, 2), 0, "I/O and bus master off at reset");
    assert_eq!(ide.config_read(0x06, 2), 0x0280);
    assert_eq!(ide.config_read(0x0E, 1), 0);
    ide.config_write(0x04, 2, 0xFFFF);
    assert_eq!(ide.config_read(0x04, 2), 0x0005, "only I/O space and bus master enable");
    for bar in 0..4 {
        ide.config_write(0x10 + 4 * bar, 4, 0xFFFF_FFFF);
        assert_eq!(ide.config_read(0x10 + 4 * bar, 4), 0, "BAR{bar} unused in compatibility mode");
    }
    assert_eq!(ide.config_read(0x20, 4), 1, "BMIBA: I/O BAR");
    ide.config_write(0x20, 4, 0xFFFF_FFFF);
    assert_eq!(ide.config_read(0x20, 4), 0xFFFF_FFF1, "16 bytes of I/O");
    ide.config_write(0x20, 4, 0xC000);
    let bar = ide.bar(4).unwrap();
    assert_eq!((bar.address, bar.size, bar.is_io()), (0xC000, 16, true));
    assert_eq!(ide.config_read(0x3C, 4), 0, "no interrupt line or pin");
    ide.config_write(0x3C, 1, 0x0E);
    assert_eq!(ide.config_read(0x3C, 1), 0);
    ide.config_write(0x40, 4, 0x8000_8000);
    ide.config_write(0x44, 1, 0x55);
    assert_eq!(ide.config_read(0x40, 4), 0x8000_8000, "IDETIM with decode enables");
    assert_eq!(ide.config_read(0x44, 1), 0x55, "SIDETIM");
    ide.reset();
    assert_eq!(ide.config_read(0x40, 4), 0);
    assert!(ide.bar(4).is_none());
}

#[test]
fn bus_master_registers() {
    let mut r = Rig::disk(mem_disk(8));
    r.bm_write(2, 0x60);
    assert_eq!(r.bm_status(), 0x60, "drive DMA capable bits are storage");
    r.ide.bar_write(4, 4, &0x1234_5677u32.to_le_bytes());
    let mut b = [0; 4];
    r.ide.bar_read(4, 4, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1234_5674, "PRD address is dword aligned");
    r.bm_write(0, 0xFF);
    assert_eq!(r.bm_read(0), 0x09, "start and direction only");
    assert_eq!(r.bm_status() & BM_ACTIVE, BM_ACTIVE, "starting sets Active");
    r.bm_write(0, 0);
    assert_eq!(r.bm_status(), 0x60);
    r.ch = 1;
    assert_eq!(r.bm_status(), 0, "channels are separate");
    assert_eq!(r.bm_read(1), 0);
}

// ---- Signatures, selection, absent devices ----

#[test]
fn signatures_after_soft_reset() {
    let r = Rig::new([[hd(mem_disk(64)), cd(None)], [None, None]]);
    r.select(0);
    r.outb(2, 0x33);
    r.control(SRST);
    assert_eq!(r.alt(), BSY, "BSY while SRST is asserted");
    r.control(0);
    let regs = |r: &Rig| [r.inb(2), r.inb(3), r.inb(4), r.inb(5)];
    assert_eq!(regs(&r), [1, 1, 0, 0], "ATA signature");
    assert_eq!((r.error(), r.status(), r.inb(6)), (0x01, 0x50, 0), "diagnostics passed, device 0 selected");
    r.select(1);
    assert_eq!(regs(&r), [1, 1, 0x14, 0xEB], "ATAPI signature");
    assert_eq!((r.error(), r.status()), (0x01, 0), "packet devices leave DRDY clear");
    // IDENTIFY DEVICE to the CD: aborted, signature restated.
    r.outb(4, 0);
    r.cmd(0xEC);
    assert_eq!(r.wait() & ERR, ERR);
    assert_eq!((r.error(), regs(&r)), (ABRT, [1, 1, 0x14, 0xEB]));
    // EXECUTE DEVICE DIAGNOSTIC: both devices, device 0 interrupts.
    r.cmd(0x90);
    assert_eq!((r.inb(6), r.error(), regs(&r)), (0, 0x01, [1, 1, 0, 0]));
    assert!(r.irq());
}

#[test]
fn absent_slave_probes_like_linux_and_seabios_expect() {
    let r = Rig::disk(mem_disk(64));
    // SeaBIOS: the device register reads back exactly what was written.
    r.outb(6, 0x10);
    assert_eq!(r.inb(6), 0x10);
    // Linux ata_devchk: the 0x55/0xAA pattern reads back (registers are written to both).
    for (a, b) in [(0x55, 0xAA), (0xAA, 0x55), (0x55, 0xAA)] {
        r.outb(2, a);
        r.outb(3, b);
    }
    assert_eq!((r.inb(2), r.inb(3)), (0x55, 0xAA));
    // ...but status, alternate status and error read 0: no device.
    assert_eq!((r.status(), r.alt(), r.error()), (0, 0, 0));
    r.cmd(0xEC);
    r.ide.drain();
    assert_eq!((r.status(), r.irq()), (0, false), "commands to an absent device are ignored");
    // After a reset its registers carry the signature values written to both devices.
    r.control(SRST);
    r.control(0);
    r.outb(6, 0x10);
    assert_eq!((r.inb(2), r.inb(3), r.status()), (1, 1, 0));
    r.outb(6, 0x00);
    assert_eq!(r.status(), 0x50, "the master is there");
}

#[test]
fn empty_channel_reads_zero() {
    let mut r = Rig::disk(mem_disk(64));
    r.ch = 1;
    for reg in 0..8 {
        r.outb(reg, 0x55);
    }
    for reg in 1..8 {
        assert_eq!(r.inb(reg), 0, "register {reg}");
    }
    assert_eq!(r.alt(), 0);
}

// ---- ATA ----

#[test]
fn identify_device() {
    let sectors = 200u64 << 21; // 200 GiB: beyond LBA28
    let r = Rig::disk(Arc::new(Sparse(sectors * 512)));
    let id = r.identify();
    assert_eq!(id.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0, "checksum");
    assert_eq!(word(&id, 255) & 0xFF, 0xA5);
    assert_eq!(word(&id, 0), 0x0040);
    assert_eq!((word(&id, 1), word(&id, 3), word(&id, 6)), (16383, 16, 63));
    assert_eq!(ata_string(&id, 27..47), "QEMU HARDDISK");
    assert_eq!(ata_string(&id, 10..20), "QM00001");
    assert_eq!(word(&id, 47), 0x8010, "max multiple 16");
    assert_eq!(word(&id, 49) & 0x0300, 0x0300, "LBA and DMA");
    assert_eq!(word(&id, 59), 0x0110, "multiple mode 16");
    assert_eq!(u32::from(word(&id, 60)) | u32::from(word(&id, 61)) << 16, 0x0FFF_FFFF, "LBA28 capped");
    let lba48 = (0..4).fold(0u64, |acc, i| acc | u64::from(word(&id, 100 + i)) << (16 * i));
    assert_eq!(lba48, sectors);
    assert_eq!((word(&id, 54), word(&id, 55), word(&id, 56)), (16383, 16, 63), "current CHS");
    assert_eq!(u32::from(word(&id, 57)) | u32::from(word(&id, 58)) << 16, 16_514_064);
    assert_eq!(word(&id, 83) & 0x3400, 0x3400, "48-bit, FLUSH CACHE and FLUSH CACHE EXT");
    assert_eq!(word(&id, 86) & 0x3400, 0x3400);
    assert_eq!(word(&id, 85) & 0x0020, 0x0020, "write cache enabled");
    assert_eq!((word(&id, 63), word(&id, 88)), (0x0007, 0x003F), "no mode selected yet");
    // SET FEATURES: transfer mode UDMA 2, then MW DMA 2; write cache off.
    r.outb(1, 0x03);
    r.outb(2, 0x42);
    assert_eq!(r.simple(0xEF) & ERR, 0);
    assert_eq!(word(&r.identify(), 88), 0x043F);
    r.outb(2, 0x22);
    r.simple(0xEF);
    let id = r.identify();
    assert_eq!((word(&id, 63), word(&id, 88)), (0x0407, 0x003F));
    r.outb(1, 0x82);
    assert_eq!(r.simple(0xEF) & ERR, 0);
    assert_eq!(word(&r.identify(), 85) & 0x0020, 0);
    r.outb(1, 0x03);
    r.outb(2, 0x50);
    assert_eq!((r.simple(0xEF) & ERR, r.error()), (ERR, ABRT), "no such mode");
    r.outb(1, 0x77);
    assert_eq!(r.simple(0xEF) & ERR, ERR, "unknown subcommand");
}

#[test]
fn identify_small_disk_geometry() {
    let r = Rig::disk(mem_disk(2048));
    let id = r.identify();
    assert_eq!(word(&id, 1), 2, "2048 sectors / (16 * 63)");
    assert_eq!(u32::from(word(&id, 60)) | u32::from(word(&id, 61)) << 16, 2048);
    assert_eq!(u32::from(word(&id, 57)) | u32::from(word(&id, 58)) << 16, 2 * 16 * 63);
}

#[test]
fn pio_read_single_and_multi_sector() {
    let disk = mem_disk(64);
    let r = Rig::disk(disk.clone());
    let data = disk.contents();
    r.lba28(5, 1);
    r.cmd(0x20);
    assert_eq!(r.block(512), &data[5 * 512..6 * 512]);
    assert_eq!(r.alt(), 0x50, "no DRQ after the last block");
    r.lba28(10, 3);
    r.cmd(0x20);
    for s in 10..13 {
        assert_eq!(r.block(512), &data[s * 512..(s + 1) * 512], "sector {s}");
    }
    assert_eq!(r.alt() & DRQ, 0);
    // 32-bit data accesses move two words.
    r.lba28(1, 1);
    r.cmd(0x20);
    r.wait();
    let dwords: Vec<u8> = (0..128).flat_map(|_| r.ports().command_read(0, 4).to_le_bytes()).collect();
    assert_eq!(dwords, &data[512..1024]);
}

#[test]
fn pio_read_of_many_sectors_spans_fetches() {
    let disk = mem_disk(600);
    let r = Rig::disk(disk.clone());
    let data = disk.contents();
    r.lba28(3, 0); // 0 means 256 sectors
    r.cmd(0x20);
    for s in 3..259 {
        assert_eq!(r.block(512), &data[s * 512..(s + 1) * 512], "sector {s}");
    }
    assert_eq!(r.alt(), 0x50);
}

#[test]
fn pio_write() {
    let disk = mem_disk(64);
    let r = Rig::disk(disk.clone());
    let new = pattern(1024, 100);
    r.lba28(7, 2);
    r.cmd(0x30);
    assert_eq!(r.alt() & (DRQ | BSY), DRQ, "DRQ for the first block at once");
    assert!(!r.irq(), "no interrupt before the first data-out block");
    r.write_bytes(&new[..512]);
    assert_eq!(r.wait() & DRQ, DRQ, "second block requested");
    assert!(r.irq());
    r.status();
    r.write_bytes(&new[512..]);
    assert_eq!(r.wait(), 0x50);
    assert!(r.irq(), "completion interrupt");
    assert_eq!(&disk.contents()[7 * 512..9 * 512], &new[..]);
}

#[test]
fn read_write_multiple() {
    let disk = mem_disk(64);
    let r = Rig::disk(disk.clone());
    let data = disk.contents();
    r.outb(2, 3);
    assert_eq!(r.simple(0xC6) & ERR, ERR, "not a power of two");
    r.outb(2, 4);
    assert_eq!(r.simple(0xC6) & ERR, 0);
    assert_eq!(word(&r.identify(), 59), 0x0104);
    r.lba28(0, 10);
    r.cmd(0xC4);
    assert_eq!(r.block(2048), &data[..2048]);
    assert_eq!(r.block(2048), &data[2048..4096]);
    assert_eq!(r.block(1024), &data[4096..5120], "the last block is the remainder");
    assert_eq!(r.alt() & DRQ, 0);
    // WRITE MULTIPLE EXT, 6 sectors: blocks of 4 and 2.
    let new = pattern(6 * 512, 77);
    r.lba48(20, 6);
    r.cmd(0x39);
    r.write_bytes(&new[..2048]);
    assert_eq!(r.wait() & DRQ, DRQ);
    r.write_bytes(&new[2048..]);
    assert_eq!(r.wait(), 0x50);
    assert_eq!(&disk.contents()[20 * 512..26 * 512], &new[..]);
    // Multiple mode off: MULTIPLE commands abort.
    r.outb(2, 0);
    r.simple(0xC6);
    r.lba28(0, 1);
    assert_eq!((r.simple(0xC4) & ERR, r.error()), (ERR, ABRT));
}

#[test]
fn lba48_with_hob() {
    let disk = mem_disk(0x300);
    let r = Rig::disk(disk.clone());
    let data = disk.contents();
    r.lba48(0x201, 2);
    r.control(HOB);
    assert_eq!((r.inb(2), r.inb(3), r.inb(4)), (0, 0, 0), "HOB reads the previous values");
    r.control(0);
    assert_eq!((r.inb(2), r.inb(3), r.inb(4)), (2, 0x01, 0x02));
    r.cmd(0x24);
    assert_eq!(r.block(512), &data[0x201 * 512..0x202 * 512]);
    assert_eq!(r.block(512), &data[0x202 * 512..0x203 * 512]);
    // High LBA bytes count: the same low bytes with a high byte set are out of range.
    r.lba48(0x01_0000_0201, 1);
    assert_eq!((r.simple(0x24) & ERR, r.error() & IDNF), (ERR, IDNF));
}

#[test]
fn chs_addressing() {
    let disk = mem_disk(2048);
    let r = Rig::disk(disk.clone());
    let data = disk.contents();
    // Cylinder 1, head 2, sector 3 with 16 heads and 63 sectors per track.
    let lba = (16 + 2) * 63 + 2;
    r.outb(2, 1);
    r.outb(3, 3);
    r.outb(4, 1);
    r.outb(5, 0);
    r.outb(6, 0xA2);
    r.cmd(0x20);
    assert_eq!(r.block(512), &data[lba * 512..(lba + 1) * 512]);
    r.outb(3, 0);
    r.outb(6, 0xA2);
    assert_eq!((r.simple(0x20) & ERR, r.error() & IDNF), (ERR, IDNF), "sector 0 does not exist");
    // INITIALIZE DEVICE PARAMETERS: 4 heads, 17 sectors per track.
    r.outb(2, 17);
    r.outb(6, 0xA3);
    assert_eq!(r.simple(0x91) & ERR, 0);
    let id = r.identify();
    assert_eq!((word(&id, 54), word(&id, 55), word(&id, 56)), (2048 / 68, 4, 17));
    r.outb(2, 1);
    r.outb(3, 5);
    r.outb(4, 2);
    r.outb(6, 0xA1);
    r.cmd(0x20);
    let lba = (2 * 4 + 1) * 17 + 4;
    assert_eq!(r.block(512), &data[lba * 512..(lba + 1) * 512]);
}

#[test]
fn out_of_range_and_read_only() {
    let r = Rig::disk(mem_disk(64));
    for (lba, count) in [(64, 1), (60, 5), (63, 0)] {
        r.lba28(lba, count);
        assert_eq!(r.simple(0x20), 0x51, "READ at {lba}+{count}");
        assert_eq!(r.error() & IDNF, IDNF);
        r.lba28(lba, count);
        assert_eq!(r.simple(0xC8) & ERR, ERR, "READ DMA at {lba}+{count}");
        r.lba28(lba, count);
        assert_eq!(r.simple(0x40) & ERR, ERR, "READ VERIFY at {lba}+{count}");
    }
    r.lba28(63, 1);
    assert_eq!(r.simple(0x40), 0x50, "READ VERIFY of the last sector");
    let ro = Arc::new(MemDisk::new(vec![0; 64 * 512], true));
    let r = Rig::disk(ro.clone());
    r.lba28(0, 1);
    assert_eq!((r.simple(0x30) & ERR, r.error()), (ERR, ABRT));
    r.lba28(0, 1);
    assert_eq!((r.simple(0xCA) & ERR, r.error()), (ERR, ABRT));
    assert_eq!(r.alt() & DRQ, 0);
}

#[test]
fn host_read_error_is_unc() {
    let disk = TestDisk::new(pattern(64 * 512, 512));
    let r = Rig::disk(disk.clone());
    disk.fail_reads.store(true, Ordering::SeqCst);
    r.lba28(0, 1);
    r.cmd(0x20);
    assert_eq!(r.wait() & (ERR | DRQ), ERR);
    assert_eq!(r.error(), 0x40, "UNC");
    assert!(r.irq());
}

#[test]
fn flush_completes_after_the_disk_flush() {
    let disk = TestDisk::new(vec![0; 64 * 512]);
    let r = Rig::disk(disk.clone());
    let gate = disk.gate.lock().unwrap();
    r.cmd(0xE7);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(r.alt() & BSY, BSY, "busy while the flush runs");
    r.cmd(0xEC);
    assert_eq!(r.alt() & BSY, BSY, "a command while busy is ignored");
    drop(gate);
    assert_eq!(r.wait(), 0x50);
    assert!(r.irq());
    assert_eq!(disk.flushes.load(Ordering::SeqCst), 1);
    r.status();
    r.simple(0xEA);
    assert_eq!(disk.flushes.load(Ordering::SeqCst), 2, "FLUSH CACHE EXT");
}

#[test]
fn soft_reset_drops_a_running_command() {
    let disk = TestDisk::new(pattern(64 * 512, 512));
    let r = Rig::disk(disk.clone());
    let gate = disk.gate.lock().unwrap();
    r.lba28(0, 4);
    r.cmd(0x20);
    assert_eq!(r.alt() & BSY, BSY);
    r.control(SRST);
    r.control(0);
    drop(gate);
    r.ide.drain();
    assert_eq!(r.alt(), 0x50, "the stale read completed into nothing");
    assert!(!r.irq());
    assert_eq!((r.inb(2), r.inb(3)), (1, 1));
    // The device works normally afterwards.
    r.lba28(2, 1);
    r.cmd(0x20);
    assert_eq!(r.block(512), &disk.inner.contents()[1024..1536]);
}

#[test]
fn misc_commands() {
    let r = Rig::disk(mem_disk(64));
    assert_eq!(r.simple(0xE5), 0x50);
    assert_eq!(r.inb(2), 0xFF, "CHECK POWER MODE: active");
    r.simple(0xE0);
    r.simple(0xE5);
    assert_eq!(r.inb(2), 0x00, "standby");
    r.simple(0xE1);
    r.simple(0xE5);
    assert_eq!(r.inb(2), 0xFF);
    assert_eq!(r.simple(0x10), 0x50, "RECALIBRATE");
    for c in [0xA1, 0xA0, 0x08, 0x00, 0xB0, 0xFF] {
        assert_eq!((r.simple(c), r.error()), (0x51, ABRT), "command {c:#x}");
    }
    // READ/WRITE BUFFER round trip.
    let buf = pattern(512, 3);
    r.cmd(0xE8);
    r.write_bytes(&buf);
    assert_eq!(r.wait(), 0x50);
    r.cmd(0xE4);
    assert_eq!(r.block(512), buf);
}

// ---- Interrupts ----

#[test]
fn interrupt_acknowledge_and_nien() {
    let r = Rig::disk(mem_disk(64));
    r.simple(0xE1);
    assert!(r.irq());
    r.alt();
    assert!(r.irq(), "alternate status does not acknowledge");
    r.status();
    assert!(!r.irq(), "status acknowledges");
    r.control(NIEN);
    r.simple(0xE1);
    assert!(!r.irq(), "nIEN masks INTRQ");
    r.control(0);
    assert!(r.irq(), "a pending interrupt shows once nIEN clears");
    r.cmd(0xE1);
    r.ide.drain();
    assert!(r.irq());
    r.cmd(0xE5);
    // A new command deasserts, its completion asserts again: a fresh edge.
    assert!(r.irq());
    let edges = r.irq[0].drives();
    r.status();
    r.cmd(0xE1);
    assert!(r.irq[0].drives() > edges);
}

#[test]
fn secondary_channel_uses_irq15() {
    let mut r = Rig::new([[None, None], [hd(mem_disk(64)), None]]);
    r.ch = 1;
    r.simple(0xE1);
    assert!(r.irq[1].level());
    assert!(!r.irq[0].level());
}

// ---- DMA ----

#[test]
fn dma_read_with_several_prd_entries() {
    let disk = mem_disk(2048);
    let mut r = Rig::disk(disk.clone());
    let data = disk.contents();
    // 512 + 64 KiB (count 0) + 1024 bytes = 131 sectors.
    r.prd(0x1000, &[(0x10000, 512), (0x20000, 0), (0x40000, 1024)], true);
    r.lba28(9, 131);
    r.cmd(0xC8);
    r.ide.drain();
    assert_eq!(r.alt() & BSY, BSY, "waits for the bus master");
    r.bm_start(true);
    assert_eq!(r.wait(), 0x50);
    assert!(r.irq());
    assert_eq!(r.bm_status() & (BM_ACTIVE | BM_ERROR | BM_INT), BM_INT, "table used up exactly");
    let base = 9 * 512;
    assert_eq!(r.mem(0x10000, 512), &data[base..base + 512]);
    assert_eq!(r.mem(0x20000, 0x10000), &data[base + 512..base + 512 + 0x10000]);
    assert_eq!(r.mem(0x40000, 1024), &data[base + 0x10200..base + 0x10600]);
}

#[test]
fn dma_write_started_before_the_command() {
    let disk = mem_disk(64);
    let mut r = Rig::disk(disk.clone());
    let new = pattern(3 * 512, 5);
    r.link.mem.write(0x8000, &new[..1024]).unwrap();
    r.link.mem.write(0x30000, &new[1024..]).unwrap();
    r.prd(0x2000, &[(0x8000, 1024), (0x30000, 512)], false);
    r.bm_start(false);
    r.lba48(40, 3);
    r.cmd(0x35);
    assert_eq!(r.wait(), 0x50);
    assert_eq!(r.bm_status() & 7, BM_INT);
    assert_eq!(&disk.contents()[40 * 512..43 * 512], &new[..]);
}

#[test]
fn dma_prd_longer_and_shorter_than_the_transfer() {
    let disk = mem_disk(64);
    let mut r = Rig::disk(disk.clone());
    r.prd(0x1000, &[(0x10000, 4096)], true);
    r.lba28(0, 2);
    r.cmd(0xC8);
    r.bm_start(true);
    assert_eq!(r.wait(), 0x50);
    assert_eq!(r.bm_status() & 7, BM_INT | BM_ACTIVE, "table larger: Active stays set");
    assert_eq!(r.mem(0x10000, 1024), &disk.contents()[..1024]);
    r.status();
    r.prd(0x1000, &[(0x10000, 512)], true);
    r.lba28(0, 2);
    r.cmd(0xC8);
    r.bm_start(true);
    r.ide.drain();
    assert_eq!(r.bm_status() & 7, 0, "table too small: neither Active nor Interrupt");
    assert_eq!(r.alt() & BSY, BSY, "the device still wants its data");
    assert!(!r.irq());
    r.control(SRST);
    r.control(0);
    assert_eq!(r.alt(), 0x50);
}

#[test]
fn dma_outside_ram_sets_the_error_bit() {
    let mut r = Rig::disk(mem_disk(64));
    for (table, region) in [(0x1000, 0xFFFF_0000), (0xF000_0000, 0x1000)] {
        if table < RAM {
            r.prd(table, &[(region, 512)], true);
        } else {
            r.prd(0x1000, &[], true);
            r.ide.bar_write(4, 4, &(table as u32).to_le_bytes());
        }
        r.lba28(0, 1);
        r.cmd(0xC8);
        r.bm_start(true);
        assert_eq!(r.wait() & ERR, ERR);
        assert_eq!(r.error(), ABRT);
        assert_eq!(r.bm_status() & 7, BM_ERROR | BM_INT, "table at {table:#x}");
    }
}

#[test]
fn dma_needs_bus_master_enable() {
    let disk = mem_disk(64);
    let mut r = Rig::disk(disk.clone());
    r.ide.config_write(0x04, 2, u32::from(PCI_COMMAND_IO));
    r.prd(0x1000, &[(0x10000, 512)], true);
    r.lba28(0, 1);
    r.cmd(0xC8);
    r.bm_start(true);
    r.ide.drain();
    assert_eq!(r.alt() & BSY, BSY);
    r.ide.config_write(0x04, 2, u32::from(PCI_COMMAND_IO | PCI_COMMAND_MASTER));
    assert_eq!(r.wait(), 0x50);
    assert_eq!(r.mem(0x10000, 512), &disk.contents()[..512]);
}

// ---- ATAPI ----

const CD_SECTORS: usize = 100;

fn cd_media() -> Arc<MemDisk> {
    Arc::new(MemDisk::new(pattern(CD_SECTORS * 2048, 2048), true))
}

/// A CD-ROM drive as primary slave (behind a disk), with `media`.
fn cd_rig(media: Option<Arc<dyn Disk>>) -> Rig {
    let r = Rig::new([[hd(mem_disk(64)), cd(media)], [None, None]]);
    r.select(1);
    r
}

impl Rig {
    /// Sends a packet command; `limit` is the byte count limit.
    fn packet(&self, cdb: &[u8], limit: u16, dma: bool) {
        self.outb(1, u8::from(dma));
        self.outb(4, limit as u8);
        self.outb(5, (limit >> 8) as u8);
        self.cmd(0xA0);
        assert_eq!(self.alt() & (BSY | DRQ), DRQ, "DRQ for the packet");
        assert_eq!(self.inb(2) & 3, 1, "CoD");
        assert!(!self.irq());
        let mut p = [0u8; 12];
        p[..cdb.len()].copy_from_slice(cdb);
        self.write_bytes(&p);
    }

    /// Reads the data-in blocks of a PIO packet command: (data, block sizes, final status).
    fn packet_in(&self) -> (Vec<u8>, Vec<usize>, u8) {
        let mut data = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let s = self.wait();
            assert!(self.irq(), "each phase ends with an interrupt");
            self.status();
            if s & DRQ == 0 {
                assert_eq!(self.inb(2) & 3, 3, "completion: IO and CoD");
                return (data, sizes, s);
            }
            assert_eq!(self.inb(2) & 3, 2, "data to host");
            let n = usize::from(self.inb(4)) | usize::from(self.inb(5)) << 8;
            data.extend(self.read_bytes(n));
            sizes.push(n);
        }
    }

    /// A PIO packet command that must succeed; its data.
    fn scsi(&self, cdb: &[u8]) -> Vec<u8> {
        self.packet(cdb, 0xFFFE, false);
        let (data, _, s) = self.packet_in();
        assert_eq!(s & ERR, 0, "command {:#x} failed: sense {:x?}", cdb[0], self.sense());
        data
    }

    /// A packet command that must fail; its sense key/ASC/ASCQ from REQUEST SENSE.
    fn scsi_error(&self, cdb: &[u8]) -> (u8, u8, u8) {
        self.packet(cdb, 0xFFFE, false);
        let (_, _, s) = self.packet_in();
        assert_eq!(s & ERR, ERR, "command {:#x} should fail", cdb[0]);
        let key = self.error() >> 4;
        let sense = self.sense();
        assert_eq!(sense.0, key, "error register carries the sense key");
        sense
    }

    fn sense(&self) -> (u8, u8, u8) {
        self.packet(&[0x03, 0, 0, 0, 18], 0xFFFE, false);
        let (v, _, _) = self.packet_in();
        assert_eq!(v.len(), 18);
        assert_eq!(v[0], 0x70);
        (v[2] & 0x0F, v[12], v[13])
    }
}

#[test]
fn identify_packet_device() {
    let r = cd_rig(None);
    r.cmd(0xA1);
    let id = r.block(512);
    assert_eq!(word(&id, 0), 0x85C0);
    assert_eq!(ata_string(&id, 27..47), "QEMU DVD-ROM");
    assert_eq!(word(&id, 49) & 0x0300, 0x0300);
    assert_eq!(id.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
    // DEVICE RESET: signature, no interrupt.
    r.status();
    r.cmd(0x08);
    assert_eq!((r.inb(4), r.inb(5), r.alt()), (0x14, 0xEB, 0));
    assert!(!r.irq());
}

#[test]
fn inquiry_and_capacity() {
    let r = cd_rig(Some(cd_media()));
    let inq = r.scsi(&[0x12, 0, 0, 0, 36]);
    assert_eq!(inq.len(), 36);
    assert_eq!((inq[0], inq[1]), (0x05, 0x80), "CD/DVD, removable");
    assert_eq!(&inq[8..16], b"QEMU    ");
    assert_eq!(&inq[16..32], b"QEMU DVD-ROM    ");
    assert_eq!(r.scsi(&[0x12, 0, 0, 0, 5]).len(), 5, "allocation length");
    let cap = r.scsi(&[0x25]);
    assert_eq!(cap, [0, 0, 0, CD_SECTORS as u8 - 1, 0, 0, 8, 0]);
}

#[test]
fn test_unit_ready_media_and_unit_attention() {
    let r = cd_rig(None);
    assert_eq!(r.scsi_error(&[0x00]), (2, 0x3A, 0x01), "no medium, tray closed");
    assert_eq!(r.alt() & DRDY, DRDY);
    assert!(r.ports().change_media(1, Some(cd_media())));
    assert!(!r.ports().change_media(0, None), "the master is a disk");
    assert_eq!(r.scsi(&[0x12, 0, 0, 0, 36]).len(), 36, "INQUIRY does not report the unit attention");
    assert_eq!(r.scsi_error(&[0x00]), (6, 0x28, 0x00), "unit attention, once");
    r.scsi(&[0x00]);
    // Media events: new media, then nothing.
    let gesn = [0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8];
    let ev = r.scsi(&gesn);
    assert_eq!(ev, [0, 6, 4, 0x10, 2, 0x02, 0, 0], "new media, present");
    assert_eq!(r.scsi(&gesn)[4], 0, "event consumed");
    assert_eq!(r.scsi(&[0x4A, 1, 0, 0, 0x02, 0, 0, 0, 8]), [0, 2, 0x80, 0x10], "no event for other classes");
    assert_eq!(r.scsi_error(&[0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8]).0, 5, "asynchronous not supported");
    // Removal.
    r.ports().change_media(1, None);
    assert_eq!(r.scsi(&gesn)[4..6], [3, 0], "media removal");
    assert_eq!(r.scsi_error(&[0x00]).1, 0x3A);
}

#[test]
fn eject_and_lock() {
    let r = cd_rig(Some(cd_media()));
    r.scsi(&[0x1E, 0, 0, 0, 1]);
    assert!(r.ports().media_locked(1));
    assert_eq!(r.scsi_error(&[0x1B, 0, 0, 0, 0x02]), (5, 0x53, 0x02), "locked in");
    r.scsi(&[0x1E, 0, 0, 0, 0]);
    r.scsi(&[0x1B, 0, 0, 0, 0x02]);
    assert_eq!(r.scsi_error(&[0x00]), (2, 0x3A, 0x02), "tray open");
    let mech = r.scsi(&[0xBD, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
    assert_eq!(mech[1] & 0x10, 0x10, "door open");
    r.scsi(&[0x1B, 0, 0, 0, 0x03]);
    assert_eq!(r.scsi_error(&[0x00]).0, 6, "closing the tray brings the medium back");
    r.scsi(&[0x00]);
}

#[test]
fn read10_pio_with_small_byte_count_limit() {
    let media = cd_media();
    let r = cd_rig(Some(media.clone()));
    let data = media.contents();
    r.packet(&[0x28, 0, 0, 0, 0, 3, 0, 0, 2], 1000, false);
    let (got, sizes, s) = r.packet_in();
    assert_eq!(s & ERR, 0);
    assert_eq!(got, &data[3 * 2048..5 * 2048]);
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 4096);
    // An odd limit is rounded down to keep every block but the last even.
    r.packet(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1], 777, false);
    let (got, sizes, _) = r.packet_in();
    assert_eq!(got, &data[..2048]);
    assert_eq!(sizes[0], 776);
    // READ(12) of 40 sectors: more than one fetch.
    let cdb = [0xA8, 0, 0, 0, 0, 10, 0, 0, 0, 40];
    r.packet(&cdb, 0xFFFE, false);
    let (got, _, _) = r.packet_in();
    assert_eq!(got, &data[10 * 2048..50 * 2048]);
    // READ CD, user data.
    r.packet(&[0xBE, 0, 0, 0, 0, 2, 0, 0, 1, 0x10], 0xFFFE, false);
    assert_eq!(r.packet_in().0, &data[2 * 2048..3 * 2048]);
    assert_eq!(r.scsi_error(&[0xBE, 0, 0, 0, 0, 2, 0, 0, 1, 0xF8]), (5, 0x24, 0), "raw sectors");
}

#[test]
fn dword_reads_stop_at_block_boundaries() {
    let media = cd_media();
    let r = cd_rig(Some(media.clone()));
    let data = media.contents();
    // Like Linux's 32-bit PIO: whole dwords, then one dword for the odd tail.
    let read32 = |n: usize| -> Vec<u8> {
        let mut v: Vec<u8> = (0..n.div_ceil(4)).flat_map(|_| r.ports().command_read(0, 4).to_le_bytes()).collect();
        v.truncate(n);
        v
    };
    // 40 sectors, limit FFFEh: sector-aligned blocks, none a sliver.
    r.packet(&[0x28, 0, 0, 0, 0, 0, 0, 0, 40], 0xFFFE, false);
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while r.wait() & DRQ != 0 {
        r.status();
        let n = usize::from(r.inb(4)) | usize::from(r.inb(5)) << 8;
        sizes.push(n);
        got.extend(read32(n));
    }
    assert_eq!(sizes, [63488, 2048, 16384]);
    assert_eq!(got, &data[..40 * 2048]);
    // A 6-byte block read with two dword accesses: the second one's extra word must not
    // eat into the following phase.
    r.packet(&[0x12, 0, 0, 0, 36], 6, false);
    let mut got = Vec::new();
    while r.wait() & DRQ != 0 {
        r.status();
        let n = usize::from(r.inb(4)) | usize::from(r.inb(5)) << 8;
        got.extend(read32(n));
    }
    assert_eq!(got.len(), 36);
    assert_eq!(&got[..2], [0x05, 0x80]);
    assert_eq!(&got[8..12], b"QEMU");
}

#[test]
fn read10_dma() {
    let media = cd_media();
    let mut r = cd_rig(Some(media.clone()));
    r.prd(0x1000, &[(0x10000, 2048), (0x20000, 4096)], true);
    r.packet(&[0x28, 0, 0, 0, 0, 7, 0, 0, 3], 0, true);
    r.ide.drain();
    assert_eq!(r.alt() & BSY, BSY);
    r.bm_start(true);
    assert_eq!(r.wait(), 0x50);
    assert!(r.irq());
    assert_eq!(r.inb(2) & 3, 3);
    assert_eq!(r.bm_status() & 7, BM_INT);
    let data = media.contents();
    assert_eq!(r.mem(0x10000, 2048), &data[7 * 2048..8 * 2048]);
    assert_eq!(r.mem(0x20000, 4096), &data[8 * 2048..10 * 2048]);
    // A reply (INQUIRY) through DMA into a larger buffer: Active stays set.
    r.status();
    r.prd(0x1000, &[(0x30000, 4096)], true);
    r.packet(&[0x12, 0, 0, 0, 36], 0, true);
    r.bm_start(true);
    assert_eq!(r.wait(), 0x50);
    assert_eq!(r.bm_status() & 7, BM_INT | BM_ACTIVE);
    assert_eq!(r.mem(0x30000, 2), [0x05, 0x80]);
}

#[test]
fn read_toc() {
    let r = cd_rig(Some(cd_media()));
    let toc = r.scsi(&[0x43, 0, 0, 0, 0, 0, 0, 0, 100]);
    assert_eq!(toc.len(), 20);
    assert_eq!(&toc[..4], [0, 18, 1, 1]);
    assert_eq!(&toc[4..12], [0, 0x14, 1, 0, 0, 0, 0, 0], "track 1 at LBA 0");
    assert_eq!(&toc[12..20], [0, 0x14, 0xAA, 0, 0, 0, 0, CD_SECTORS as u8], "lead-out");
    let msf = r.scsi(&[0x43, 2, 0, 0, 0, 0, 0, 0, 100]);
    assert_eq!(&msf[8..12], [0, 0, 2, 0], "00:02:00");
    assert_eq!(&msf[16..20], [0, 0, 3, 25], "100 + 150 frames");
    let session = r.scsi(&[0x43, 0, 1, 0, 0, 0, 0, 0, 100]);
    assert_eq!(session, [0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
    let full = r.scsi(&[0x43, 2, 2, 0, 0, 0, 0, 0, 100]);
    assert_eq!(full.len(), 4 + 4 * 11);
    assert_eq!(r.scsi(&[0x43, 0, 0, 0, 0, 0, 0xAA, 0, 100]).len(), 12, "lead-out only");
    assert_eq!(r.scsi(&[0x43, 0, 0, 0, 0, 0, 0, 0, 4]).len(), 4, "allocation length");
    assert_eq!(r.scsi_error(&[0x43, 0, 5]), (5, 0x24, 0));
}

#[test]
fn sense_after_errors() {
    let r = cd_rig(Some(cd_media()));
    assert_eq!(r.scsi_error(&[0xFF]), (5, 0x20, 0), "invalid opcode");
    assert_eq!(r.sense(), (0, 0, 0), "REQUEST SENSE consumed it");
    let lba = CD_SECTORS as u8;
    assert_eq!(r.scsi_error(&[0x28, 0, 0, 0, 0, lba, 0, 0, 1]), (5, 0x21, 0), "LBA out of range");
    assert_eq!(r.scsi_error(&[0x5A, 0, 0x3F | 0xC0]), (5, 0x39, 0), "saved values");
}

#[test]
fn configuration_mode_sense_and_disc_info() {
    let r = cd_rig(Some(cd_media()));
    let conf = r.scsi(&[0x46, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(u16::from_be_bytes([conf[6], conf[7]]), 0x0008, "CD-ROM current");
    assert_eq!(u32::from_be_bytes([conf[0], conf[1], conf[2], conf[3]]) as usize, conf.len() - 4);
    assert_eq!(&conf[8..12], [0, 0, 0x03, 8], "profile list");
    assert_eq!(&conf[12..20], [0, 0x10, 0, 0, 0, 0x08, 1, 0], "DVD-ROM, CD-ROM (current)");
    let one = r.scsi(&[0x46, 2, 0, 3, 0, 0, 0, 1, 0]);
    assert_eq!((one.len(), one[9]), (16, 3), "just the removable medium feature");
    let big: Arc<dyn Disk> = Arc::new(Sparse(1 << 32));
    r.ports().change_media(1, Some(big));
    let conf = r.scsi(&[0x46, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(u16::from_be_bytes([conf[6], conf[7]]), 0x0010, "a 4 GiB medium is a DVD");
    assert_eq!(r.scsi_error(&[0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 100]).0, 6, "the change is reported first");
    let caps = r.scsi(&[0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 100]);
    assert_eq!((caps.len(), caps[8], caps[9]), (30, 0x2A, 0x14));
    let all = r.scsi(&[0x5A, 0, 0x3F, 0, 0, 0, 0, 1, 0]);
    assert_eq!(u16::from_be_bytes([all[0], all[1]]) as usize, all.len() - 2);
    assert_eq!(all.len(), 8 + 12 + 8 + 22);
    let info = r.scsi(&[0x51, 0, 0, 0, 0, 0, 0, 0, 34]);
    assert_eq!((info.len(), info[1], info[2]), (34, 32, 0x0E));
    r.scsi(&[0xBB, 0, 0xFF, 0xFF]);
}

// ---- Robustness ----

/// xorshift64*: reproducible pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Random port and BAR4 traffic, biased towards register values that make commands run:
/// small sector numbers, known command and packet opcodes, PRD tables in RAM.
/// Returns how many steps saw DRQ, the bus-master interrupt bit and an error (what was reached).
fn random_traffic(seed: u64, steps: u64) -> [u64; 3] {
    let mut r = Rig::new([
        [hd(mem_disk(32)), cd(Some(cd_media()))],
        [cd(None), hd(Arc::new(MemDisk::new(vec![0; 16 * 512], true)))],
    ]);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // PRD tables at 0: entries pointing into RAM, some outside, some ending the table.
    for i in 0..64u64 {
        let addr = if i % 7 == 3 { 0xFFFF_F000u32 } else { (0x10000 + i * 0x1000) as u32 };
        let count = ((i as u32 % 9) * 512) | if i % 4 == 3 { 0x8000_0000 } else { 0 };
        r.link.mem.write(i * 8, &addr.to_le_bytes()).unwrap();
        r.link.mem.write(i * 8 + 4, &count.to_le_bytes()).unwrap();
    }
    let commands = [
        0x20, 0x24, 0x29, 0x30, 0x34, 0x39, 0xC4, 0xC5, 0xC6, 0xC8, 0xCA, 0x25, 0x35, 0x40, 0x42, 0xE7, 0xEA, 0xEC,
        0xEF, 0x91, 0x90, 0x08, 0xA0, 0xA1, 0xE5, 0xE4, 0xE8,
    ];
    let packets = [0x00, 0x03, 0x12, 0x1B, 0x1E, 0x25, 0x28, 0x43, 0x46, 0x4A, 0x51, 0x5A, 0xA8, 0xBD, 0xBE];
    let mut seen = [0u64; 3];
    for i in 0..steps {
        let x = rng.next();
        let v = (x >> 32) as u32;
        r.ch = (x & 1) as usize;
        match (x >> 1) % 20 {
            0..=2 => r.outb(1 + ((x >> 8) % 5) as u16, (v & 0x1F) as u8),
            3 => r.outb(1 + ((x >> 8) % 5) as u16, v as u8),
            4 => r.outb(6, (v as u8 & 0x51) | 0xA0),
            5 | 6 => r.cmd(commands[(v as usize) % commands.len()]),
            7 => r.cmd(v as u8),
            8 => r.control(v as u8 & 0x86),
            9 => {
                let lo = if v & 1 == 0 { packets[(v >> 8) as usize % packets.len()] } else { v as u8 };
                r.ports().command_write(0, 2, u32::from(lo) | (v & 0xFF00));
            }
            10 => r.ports().command_write(0, 4, v),
            11 | 12 => {
                r.ports().command_read(0, [2, 4][(x >> 9) as usize & 1]);
            }
            13 => {
                r.ports().command_read((x >> 8) as u16 % 8, 1);
            }
            14 => {
                r.ports().control_read();
            }
            15 => r.ide.bar_write(4, (x >> 8) % 16, &[v as u8]),
            16 => {
                let mut b = [0; 4];
                r.ide.bar_read(4, (x >> 8) % 13, &mut b);
            }
            17 => r.ide.bar_write(4, 4 + 8 * ((x >> 8) & 1), &((v % 64) * 8).to_le_bytes()),
            _ => r.bm_write(0, v as u8 & 9),
        }
        if i % 64 == 0 {
            r.ide.drain();
        }
        let s = r.alt();
        seen[0] += u64::from(s & DRQ != 0);
        seen[1] += u64::from(r.bm_status() & BM_INT != 0);
        seen[2] += u64::from(s & (ERR | BSY) == ERR);
    }
    r.ide.drain();
    // Still a working controller after a reset.
    r.ide.reset();
    r.ch = 0;
    r.select(0);
    assert_eq!(r.identify().len(), 512);
    seen
}

#[test]
fn random_register_traffic_never_panics() {
    let steps: u64 = std::env::var("FERRITE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    // A fixed default keeps CI reproducible; `FERRITE_FUZZ_SEED=random` (or a number) explores.
    let seed: u64 = match std::env::var("FERRITE_FUZZ_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64),
        Some(v) => v.parse().expect("FERRITE_FUZZ_SEED: a number or 'random'"),
        None => 0x1DE_C0DE,
    };
    for run in 0..4 {
        let seed = seed.wrapping_add(run);
        let seen = random_traffic(seed, steps);
        println!("ide fuzz: seed {seed}: steps with DRQ / BM interrupt bit / error: {seen:?}");
        assert!(seen.iter().all(|&n| n > 0), "the traffic should reach data phases, DMA and errors");
    }
}

// ---- save and restore ----

fn restored_from(a: &Rig, drives: [[Option<IdeDrive>; 2]; 2]) -> Rig {
    use ferrite_persist::{load, save};
    a.ide.drain();
    let b = Rig::new(drives);
    let mut b = b;
    load(&mut b.ide, &save(&a.ide, "00:01.1")).unwrap();
    b
}

#[test]
fn a_pio_read_carries_on_after_restore_mid_block_and_mid_fetch() {
    let a = Rig::disk(mem_disk(256));
    a.outb(1, 0);
    a.lba28(3, 200); // 100 KiB: more than one 64 KiB fetch from the disk
    a.cmd(0x20);
    let mut got_a = a.block(512);
    got_a.extend(a.block(256)); // half of the second sector
    let b = restored_from(&a, [[hd(mem_disk(256)), None], [None, None]]);
    let mut got_b = got_a.clone();
    assert_eq!((b.alt(), b.irq()), (a.alt(), a.irq()));
    got_a.extend(a.read_bytes(256));
    got_b.extend(b.read_bytes(256));
    for _ in 2..200 {
        got_a.extend(a.block(512));
        got_b.extend(b.block(512));
    }
    assert_eq!(got_b, got_a);
    assert_eq!(got_a, pattern(256 * 512, 512)[3 * 512..203 * 512]);
    assert_eq!((b.wait(), b.error()), (a.wait(), a.error()));
}

#[test]
fn a_dma_command_waiting_for_the_bus_master_runs_after_restore() {
    let mut a = Rig::disk(mem_disk(64));
    a.prd(0x1000, &[(0x2_0000, 4 * 512)], true);
    a.lba28(8, 4);
    a.cmd(0xC8); // READ DMA, bus master not started yet
    let mut b = restored_from(&a, [[hd(mem_disk(64)), None], [None, None]]);
    assert_eq!(b.bm_read(4), a.bm_read(4), "PRD address");
    b.link.mem.write(0x1000, &a.mem(0x1000, 8)).unwrap(); // guest RAM comes back with the machine
    for (i, r) in [&mut a, &mut b].into_iter().enumerate() {
        r.bm_start(true);
        r.wait();
        assert!(r.irq(), "rig {i}");
        assert_eq!(r.bm_status() & (BM_ACTIVE | BM_ERROR | BM_INT), BM_INT, "rig {i}");
        r.status();
        assert!(!r.irq());
    }
    assert_eq!(b.mem(0x2_0000, 2048), a.mem(0x2_0000, 2048));
    assert_eq!(a.mem(0x2_0000, 2048), pattern(64 * 512, 512)[8 * 512..12 * 512]);
}

#[test]
fn a_cd_keeps_its_sense_and_lock_and_another_drive_is_refused() {
    use ferrite_persist::Persist;
    let a = Rig::new([[None, None], [None, cd(Some(mem_disk(64)))]]);
    let mut s = a.ide.save();
    let IdeMediaState::Cdrom(c) = &mut s.channels[1].drives[1].media else { panic!() };
    assert_eq!(c.media_bytes, Some(64 * 512));
    c.locked = true;
    c.sense = [6, 0x28, 0];
    let mut b = Rig::new([[None, None], [None, cd(Some(mem_disk(64)))]]);
    b.ide.restore(s.clone()).unwrap();
    assert!(b.ide.ports(1).media_locked(1));

    let mut other = Rig::new([[None, None], [None, cd(Some(mem_disk(32)))]]);
    let e = other.ide.restore(s.clone()).unwrap_err();
    assert!(matches!(e, ferrite_persist::RestoreError::Invalid { field: "media_bytes", .. }), "{e}");
    let mut bad = s.clone();
    bad.channels[1].drives[1].phase = IdePhase::DataIn { buffer: vec![0; 4], pos: 2, end: 8, fetch: None, blocks: IdeBlocks::Ata { block_bytes: 512 } };
    assert!(other.ide.restore(bad).is_err());
    let mut busy = s;
    busy.channels[1].drives[1].phase = IdePhase::InFlight;
    let mut c = Rig::new([[None, None], [None, cd(Some(mem_disk(64)))]]);
    assert!(c.ide.restore(busy).is_err());
    assert!(!c.ide.ports(1).media_locked(1), "a refused state changes nothing");
}
