//! Disk work handed to the channel's I/O thread, and what comes back. A [`Request`] carries
//! everything the job needs, so it runs without the channel lock; its result goes back to
//! the channel with the drive's generation number at submission.

use super::bmdma::{DmaEnd, DmaJob};
use ferrite_block::{Disk, DiskError};
use std::sync::Arc;

pub(crate) struct Request {
    pub unit: usize,
    /// The drive's generation when the command started; a stale completion is dropped.
    pub gen: u64,
    pub op: Op,
}

pub(crate) enum Op {
    /// Read `len` bytes at `offset` (PIO data-in prefetch).
    Read { disk: Arc<dyn Disk>, offset: u64, len: usize },
    /// Write one PIO block; `flush` when the drive's write cache is off.
    Write { disk: Arc<dyn Disk>, offset: u64, data: Vec<u8>, flush: bool },
    Flush { disk: Arc<dyn Disk> },
    /// A bus-master transfer.
    Dma(DmaJob),
}

pub(crate) enum Outcome {
    Read(Result<Vec<u8>, DiskError>),
    Done(Result<(), DiskError>),
    Dma(DmaEnd),
}

impl Op {
    pub(crate) fn run(self) -> Outcome {
        match self {
            Op::Read { disk, offset, len } => {
                let mut buf = vec![0; len];
                Outcome::Read(disk.read_at(offset, &mut buf).map(|()| buf))
            }
            Op::Write { disk, offset, data, flush } => Outcome::Done(
                disk.write_at(offset, &data)
                    .and_then(|()| if flush { disk.flush() } else { Ok(()) }),
            ),
            Op::Flush { disk } => Outcome::Done(disk.flush()),
            Op::Dma(job) => Outcome::Dma(job.run()),
        }
    }
}
