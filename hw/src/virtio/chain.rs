//! A descriptor chain as a device sees it (virtio 1.2, 2.7.4 "Message Framing"): the head
//! index to return in the used ring, then the device-readable buffers followed by the
//! device-writable ones, and cursors that copy across buffer boundaries through [`Dma`].
//!
//! Devices must not assume any particular arrangement of descriptors (2.7.4.1): a 16-byte
//! request header can arrive in one buffer or split over several, which the cursors hide.

use ferrite_memory::{Dma, DmaError};

/// One guest buffer: `len` bytes at guest-physical `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
}

/// A chain popped from an available ring. Plain data (`Send`): hand it to a worker thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DescriptorChain {
    pub(crate) head: u16,
    pub(crate) readable: Vec<Buffer>,
    pub(crate) writable: Vec<Buffer>,
}

/// A copy between a chain and the device failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor chain has {available} bytes left, {wanted} needed")]
    Short { wanted: usize, available: u64 },
    #[error("reading a device-readable buffer failed")]
    Read(#[source] DmaError),
    #[error("writing a device-writable buffer failed")]
    Write(#[source] DmaError),
}

impl DescriptorChain {
    /// Index of the head descriptor (split rings) or the buffer id (packed rings): what
    /// [`super::Queue::add_used`] takes.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Device-readable buffers, in chain order.
    pub fn readable(&self) -> &[Buffer] {
        &self.readable
    }

    /// Device-writable buffers, in chain order.
    pub fn writable(&self) -> &[Buffer] {
        &self.writable
    }

    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// A cursor over the device-readable buffers.
    pub fn reader<'a>(&'a self, dma: &'a Dma) -> ChainReader<'a> {
        ChainReader { cur: Cursor::new(&self.readable), dma }
    }

    /// A cursor over the device-writable buffers.
    pub fn writer<'a>(&'a self, dma: &'a Dma) -> ChainWriter<'a> {
        ChainWriter { cur: Cursor::new(&self.writable), dma, written: 0 }
    }
}

/// Position within a buffer list.
struct Cursor<'a> {
    bufs: &'a [Buffer],
    index: usize,
    offset: u32,
    remaining: u64,
}

impl<'a> Cursor<'a> {
    fn new(bufs: &'a [Buffer]) -> Self {
        Cursor { bufs, index: 0, offset: 0, remaining: bufs.iter().map(|b| u64::from(b.len)).sum() }
    }

    /// The next contiguous piece of at most `max` bytes, without consuming it.
    fn piece(&mut self, max: usize) -> Option<(u64, usize)> {
        while let Some(b) = self.bufs.get(self.index) {
            if self.offset < b.len {
                let n = ((b.len - self.offset) as usize).min(max);
                return Some((super::queue::guest_add(b.addr, u64::from(self.offset)), n));
            }
            self.index += 1;
            self.offset = 0;
        }
        None
    }

    fn advance(&mut self, n: usize) {
        self.offset += n as u32;
        self.remaining -= n as u64;
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    fn skip(&mut self, mut n: u64) -> u64 {
        let start = n;
        while n > 0 {
            let Some((_, len)) = self.piece(n.min(usize::MAX as u64) as usize) else { break };
            self.advance(len);
            n -= len as u64;
        }
        start - n
    }
}

/// Reads the device-readable part of a chain in order.
pub struct ChainReader<'a> {
    cur: Cursor<'a>,
    dma: &'a Dma,
}

impl ChainReader<'_> {
    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.cur.remaining
    }

    /// Reads up to `out.len()` bytes; returns how many (fewer only at the end of the chain).
    /// On a DMA error the bytes read before it stay consumed.
    pub fn read(&mut self, out: &mut [u8]) -> Result<usize, ChainError> {
        let mut done = 0;
        while done < out.len() {
            let Some((addr, n)) = self.cur.piece(out.len() - done) else { break };
            self.dma.read(addr, &mut out[done..done + n]).map_err(ChainError::Read)?;
            self.cur.advance(n);
            done += n;
        }
        Ok(done)
    }

    /// Reads exactly `out.len()` bytes, or fails without consuming anything if the chain is
    /// shorter.
    pub fn read_exact(&mut self, out: &mut [u8]) -> Result<(), ChainError> {
        if (out.len() as u64) > self.remaining() {
            return Err(ChainError::Short { wanted: out.len(), available: self.remaining() });
        }
        self.read(out).map(drop)
    }

    /// Skips up to `n` bytes; returns how many were skipped.
    pub fn skip(&mut self, n: u64) -> u64 {
        self.cur.skip(n)
    }
}

impl std::io::Read for ChainReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        ChainReader::read(self, buf).map_err(std::io::Error::other)
    }
}

/// Writes the device-writable part of a chain in order and counts what was written (the
/// `len` of the used element).
pub struct ChainWriter<'a> {
    cur: Cursor<'a>,
    dma: &'a Dma,
    written: u64,
}

impl ChainWriter<'_> {
    /// Writable bytes left.
    pub fn remaining(&self) -> u64 {
        self.cur.remaining
    }

    /// Bytes written so far (skipped bytes not included).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// [`Self::written`] as the used element's 32-bit `len` (saturating).
    pub fn written_u32(&self) -> u32 {
        self.written.min(u64::from(u32::MAX)) as u32
    }

    /// Writes up to `data.len()` bytes; returns how many (fewer only at the end of the chain).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, ChainError> {
        let mut done = 0;
        while done < data.len() {
            let Some((addr, n)) = self.cur.piece(data.len() - done) else { break };
            self.dma.write(addr, &data[done..done + n]).map_err(ChainError::Write)?;
            self.cur.advance(n);
            self.written += n as u64;
            done += n;
        }
        Ok(done)
    }

    /// Writes all of `data`, or fails without writing anything if the chain is shorter.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), ChainError> {
        if (data.len() as u64) > self.remaining() {
            return Err(ChainError::Short { wanted: data.len(), available: self.remaining() });
        }
        self.write(data).map(drop)
    }

    /// Skips up to `n` writable bytes (left as they are and not counted as written); returns
    /// how many were skipped.
    pub fn skip(&mut self, n: u64) -> u64 {
        self.cur.skip(n)
    }
}

impl std::io::Write for ChainWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        ChainWriter::write(self, buf).map_err(std::io::Error::other)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
