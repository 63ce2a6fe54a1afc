//! A disk in host memory: for device tests and scratch drives.

use crate::{check_range, Disk, DiskError};
use std::sync::{Mutex, PoisonError};

pub struct MemDisk {
    data: Mutex<Vec<u8>>,
    read_only: bool,
}

impl MemDisk {
    pub fn new(data: Vec<u8>, read_only: bool) -> Self {
        MemDisk { data: Mutex::new(data), read_only }
    }

    /// A copy of the contents (tests).
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Disk for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        check_range(offset, buf.len() as u64, data.len() as u64)?;
        buf.copy_from_slice(&data[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        check_range(offset, buf.len() as u64, data.len() as u64)?;
        data[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<(), DiskError> {
        Ok(())
    }
}
