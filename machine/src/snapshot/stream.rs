//! The snapshot stream: what `migrate "exec:..."`/`file:` write and `-incoming` reads.
//!
//! Layout: the magic line `FERRITE-VM-STATE 1\n`; the machine's [`Shape`] as a JSON block
//! (u64 little-endian length, then the JSON), which the destination checks before any RAM
//! moves; RAM as records (guest-physical address u64, page count u32, the pages' bytes;
//! a later record for a page replaces an earlier one, so live migration sends pages again
//! as the guest dirties them), all-zero pages left out of a first pass, ended by an address
//! of u64::MAX; the [`DeviceState`] as a JSON block (guest clock, every object's section);
//! then a 64-bit FNV-1a checksum of everything before it. A stream that is cut short, has a
//! wrong checksum, or describes another machine is refused with a message that says why.

use ferrite_persist::Section;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

pub const MAGIC: &[u8] = b"FERRITE-VM-STATE 1\n";
/// Longest header accepted (a corrupt length must not allocate gigabytes).
const MAX_HEADER: u64 = 64 << 20;
pub const PAGE: usize = 4096;
/// Pages per RAM record at most.
const RUN: usize = 256;
const END: u64 = u64::MAX;

/// What a machine must match to take a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub ram_below_4g: u64,
    pub ram_above_4g: u64,
    pub cpus: usize,
    /// `-cpu` as given.
    pub cpu_model: String,
    /// The ids of every object with state, in registration order.
    pub objects: Vec<String>,
}

impl Shape {
    /// Whether `[gpa, gpa + len)` lies in this machine's RAM (a RAM record's range).
    pub fn ram_fits(&self, gpa: u64, len: u64) -> bool {
        const FOUR_GIB: u64 = 1 << 32;
        gpa.checked_add(len).is_some_and(|end| end <= self.ram_below_4g || (gpa >= FOUR_GIB && end <= FOUR_GIB + self.ram_above_4g))
    }

    /// What differs from `other` (this machine's shape), one line each.
    pub fn differences(&self, mine: &Shape) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, saved: String, here: String| {
            if saved != here {
                out.push(format!("{name}: {saved} in the snapshot, {here} here"));
            }
        };
        field("RAM below 4 GiB", format!("{} MiB", self.ram_below_4g >> 20), format!("{} MiB", mine.ram_below_4g >> 20));
        field("RAM above 4 GiB", format!("{} MiB", self.ram_above_4g >> 20), format!("{} MiB", mine.ram_above_4g >> 20));
        field("vCPUs", self.cpus.to_string(), mine.cpus.to_string());
        field("-cpu", self.cpu_model.clone(), mine.cpu_model.clone());
        for id in self.objects.iter().filter(|id| !mine.objects.contains(id)) {
            out.push(format!("device state {id}: in the snapshot, no such device here"));
        }
        for id in mine.objects.iter().filter(|id| !self.objects.contains(id)) {
            out.push(format!("device {id}: here, not in the snapshot"));
        }
        out
    }
}

/// What follows RAM: the state of everything but RAM, when the machine stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceState {
    /// ferrite's version that wrote it (informational: sections carry their own versions).
    pub ferrite: String,
    /// Guest time (ns) when the machine stopped.
    pub clock_ns: u64,
    /// The guest ran when it was saved (a paused machine's destination stays paused, until
    /// `cont`).
    pub running: bool,
    pub sections: Vec<Section>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not a ferrite machine state (bad magic)")]
    Magic,
    #[error("a header is {0} bytes long, more than any machine's")]
    HeaderSize(u64),
    #[error("a header is not valid: {0}")]
    Header(#[source] serde_json::Error),
    #[error("RAM record at {gpa:#x} (+{pages} pages) lies outside this machine's RAM")]
    RamRange { gpa: u64, pages: u32 },
    #[error("the checksum does not match: the stream is corrupted")]
    Checksum,
    #[error("the stream ended early or could not be read: {0}")]
    Io(#[from] std::io::Error),
}

/// FNV-1a, 64-bit: stable across builds, unlike the standard library's hashers.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A writer that checksums and counts what passes.
pub struct Checked<W> {
    inner: W,
    pub sum: Fnv,
    pub bytes: u64,
}

impl<W: Write> Checked<W> {
    pub fn new(inner: W) -> Self {
        Checked { inner, sum: Fnv::default(), bytes: 0 }
    }

    pub fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.sum.update(data);
        self.bytes += data.len() as u64;
        self.inner.write_all(data)
    }

    /// Writes the checksum and flushes; returns the bytes written.
    pub fn finish(mut self) -> std::io::Result<u64> {
        let sum = self.sum.0.to_le_bytes();
        self.inner.write_all(&sum)?;
        self.inner.flush()?;
        Ok(self.bytes + 8)
    }
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.put(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that checksums what passes.
pub struct Verified<R> {
    inner: R,
    sum: Fnv,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R) -> Self {
        Verified { inner, sum: Fnv::default() }
    }

    pub fn take(&mut self, buf: &mut [u8]) -> Result<(), StreamError> {
        self.inner.read_exact(buf)?;
        self.sum.update(buf);
        Ok(())
    }

    fn u64(&mut self) -> Result<u64, StreamError> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads the trailing checksum and compares.
    pub fn finish(mut self) -> Result<(), StreamError> {
        let want = self.sum.0;
        let mut b = [0u8; 8];
        self.inner.read_exact(&mut b)?;
        if u64::from_le_bytes(b) != want {
            return Err(StreamError::Checksum);
        }
        Ok(())
    }
}

/// Writes the magic line and the machine's shape.
pub fn write_start<W: Write>(out: &mut Checked<W>, shape: &Shape) -> std::io::Result<()> {
    out.put(MAGIC)?;
    write_json(out, shape)
}

/// Writes a JSON block: its length, then the JSON.
pub fn write_json<W: Write, T: Serialize>(out: &mut Checked<W>, value: &T) -> std::io::Result<()> {
    let json = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    out.put(&(json.len() as u64).to_le_bytes())?;
    out.put(&json)
}

/// Reads the magic line and the machine's shape.
pub fn read_start<R: Read>(input: &mut Verified<R>) -> Result<Shape, StreamError> {
    let mut magic = [0u8; MAGIC.len()];
    input.take(&mut magic).map_err(|_| StreamError::Magic)?;
    if magic != MAGIC {
        return Err(StreamError::Magic);
    }
    read_json(input)
}

pub fn read_json<R: Read, T: for<'de> Deserialize<'de>>(input: &mut Verified<R>) -> Result<T, StreamError> {
    let len = input.u64()?;
    if len > MAX_HEADER {
        return Err(StreamError::HeaderSize(len));
    }
    let mut json = vec![0u8; len as usize];
    input.take(&mut json)?;
    serde_json::from_slice(&json).map_err(StreamError::Header)
}

/// Writes RAM `[gpa, gpa + len)` as records of non-zero pages, `read` filling a page's bytes.
pub fn write_ram<W: Write>(out: &mut Checked<W>, gpa: u64, len: u64, read: impl FnMut(u64, &mut [u8])) -> std::io::Result<u64> {
    write_pages(out, (gpa..gpa + len).step_by(PAGE), true, read)
}

/// Writes the pages at `addrs` (ascending), `read` filling each; `skip_zero`: leave out pages
/// that are all zeros (a first pass onto zeroed RAM), else send every page (a page the guest
/// cleared since the last pass must arrive as zeros).
pub fn write_pages<W: Write>(out: &mut Checked<W>, addrs: impl Iterator<Item = u64>, skip_zero: bool, mut read: impl FnMut(u64, &mut [u8])) -> std::io::Result<u64> {
    let mut pages = Vec::with_capacity(RUN * PAGE);
    let mut page = vec![0u8; PAGE];
    let (mut start, mut written) = (0u64, 0u64);
    let flush = |out: &mut Checked<W>, start: u64, pages: &mut Vec<u8>| -> std::io::Result<()> {
        if !pages.is_empty() {
            out.put(&start.to_le_bytes())?;
            out.put(&((pages.len() / PAGE) as u32).to_le_bytes())?;
            out.put(pages)?;
            pages.clear();
        }
        Ok(())
    };
    for addr in addrs {
        read(addr, &mut page);
        let zero = skip_zero && page.iter().all(|&b| b == 0);
        let contiguous = start + pages.len() as u64 == addr;
        if zero || !contiguous || pages.len() == RUN * PAGE {
            flush(out, start, &mut pages)?;
        }
        if !zero {
            if pages.is_empty() {
                start = addr;
            }
            pages.extend_from_slice(&page);
            written += 1;
        }
    }
    flush(out, start, &mut pages)?;
    Ok(written)
}

pub fn end_ram<W: Write>(out: &mut Checked<W>) -> std::io::Result<()> {
    out.put(&END.to_le_bytes())
}

/// Reads RAM records until the end marker, handing each run of pages to `write` after
/// `fits(gpa, pages)` accepted its range.
pub fn read_ram<R: Read>(input: &mut Verified<R>, fits: impl Fn(u64, u64) -> bool, mut write: impl FnMut(u64, &[u8])) -> Result<u64, StreamError> {
    let mut buf = vec![0u8; RUN * PAGE];
    let mut total = 0;
    loop {
        let gpa = input.u64()?;
        if gpa == END {
            return Ok(total);
        }
        let mut n = [0u8; 4];
        input.take(&mut n)?;
        let pages = u32::from_le_bytes(n);
        if pages == 0 || pages as usize > RUN || gpa % PAGE as u64 != 0 || !fits(gpa, u64::from(pages) * PAGE as u64) {
            return Err(StreamError::RamRange { gpa, pages });
        }
        let bytes = &mut buf[..pages as usize * PAGE];
        input.take(bytes)?;
        write(gpa, bytes);
        total += u64::from(pages);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape { ram_below_4g: 1 << 20, ram_above_4g: 0, cpus: 1, cpu_model: "max".into(), objects: vec!["pic".into()] }
    }

    fn stream(ram: &[u8]) -> Vec<u8> {
        let mut out = Checked::new(Vec::new());
        write_start(&mut out, &shape()).unwrap();
        write_ram(&mut out, 0, ram.len() as u64, |a, p| p.copy_from_slice(&ram[a as usize..a as usize + PAGE])).unwrap();
        end_ram(&mut out).unwrap();
        write_json(&mut out, &DeviceState { ferrite: "0".into(), clock_ns: 5, running: true, sections: Vec::new() }).unwrap();
        let mut v = Vec::new();
        let Checked { inner, sum, .. } = out;
        v.extend(inner);
        v.extend(sum.0.to_le_bytes());
        v
    }

    fn read_back(bytes: &[u8]) -> Result<Vec<u8>, StreamError> {
        let mut input = Verified::new(bytes);
        assert_eq!(read_start(&mut input)?, shape());
        let mut ram = vec![0u8; 16 * PAGE];
        let size = ram.len() as u64;
        read_ram(&mut input, |a, l| a + l <= size, |a, d| ram[a as usize..a as usize + d.len()].copy_from_slice(d))?;
        let state: DeviceState = read_json(&mut input)?;
        assert_eq!(state.clock_ns, 5);
        input.finish()?;
        Ok(ram)
    }

    #[test]
    fn ram_round_trips_without_zero_pages_and_corruption_is_refused() {
        let mut ram = vec![0u8; 16 * PAGE];
        ram[PAGE + 5] = 1;
        ram[2 * PAGE] = 2;
        ram[9 * PAGE + 4095] = 3;
        let s = stream(&ram);
        assert!(s.len() < 4 * PAGE, "zero pages are left out ({} bytes)", s.len());
        assert_eq!(read_back(&s).unwrap(), ram);

        let mut flipped = s.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 0x40;
        assert!(read_back(&flipped).is_err());
        assert!(matches!(read_back(&s[..s.len() - 9]), Err(StreamError::Io(_))));
        assert!(matches!(read_back(b"GARBAGE GARBAGE GARBAGE"), Err(StreamError::Magic)));
    }

    #[test]
    fn shapes_list_their_differences() {
        let a = shape();
        let mut b = a.clone();
        b.cpus = 2;
        b.objects.push("e1000 00:03.0".into());
        let d = a.differences(&b);
        assert_eq!(d, ["vCPUs: 1 in the snapshot, 2 here", "device e1000 00:03.0: here, not in the snapshot"]);
    }
}
