//! Everything on a board whose state a snapshot carries, by id. Devices register where they
//! are built or plugged, so a device added later joins without changing the mechanism.

use crate::pc::interrupts::{lock, Interrupts};
use ferrite_persist::{LoadError, Persist, Section};
use std::sync::{Arc, Mutex};

/// An object the registry can save and load behind a shared reference.
pub trait Stateful: Send + Sync {
    fn save(&self, id: &str) -> Section;
    fn load(&self, section: &Section) -> Result<(), LoadError>;
}

impl<T: Persist + Send> Stateful for Mutex<T> {
    fn save(&self, id: &str) -> Section {
        ferrite_persist::save(&*lock(self), id)
    }

    fn load(&self, section: &Section) -> Result<(), LoadError> {
        ferrite_persist::load(&mut *lock(self), section)
    }
}

/// The PIC pair inside the interrupt controllers' lock.
pub(crate) struct PicOf(pub Arc<Interrupts>);
/// The IOAPIC inside the interrupt controllers' lock.
pub(crate) struct IoapicOf(pub Arc<Interrupts>);
/// The local APIC of vCPU `.1`.
pub(crate) struct LapicOf(pub Arc<Interrupts>, pub usize);

impl Stateful for PicOf {
    fn save(&self, id: &str) -> Section {
        ferrite_persist::save(&lock(&self.0.intc).pic, id)
    }
    fn load(&self, section: &Section) -> Result<(), LoadError> {
        ferrite_persist::load(&mut lock(&self.0.intc).pic, section)
    }
}

impl Stateful for IoapicOf {
    fn save(&self, id: &str) -> Section {
        ferrite_persist::save(&lock(&self.0.intc).ioapic, id)
    }
    fn load(&self, section: &Section) -> Result<(), LoadError> {
        ferrite_persist::load(&mut lock(&self.0.intc).ioapic, section)
    }
}

impl Stateful for LapicOf {
    fn save(&self, id: &str) -> Section {
        ferrite_persist::save(&*lock(&self.0.cpus[self.1].lapic), id)
    }
    fn load(&self, section: &Section) -> Result<(), LoadError> {
        ferrite_persist::load(&mut *lock(&self.0.cpus[self.1].lapic), section)
    }
}

/// When an object loads: devices first, then the interrupt controllers (which then hold the
/// pin levels they saved, so the devices' re-driven lines make no new edges).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Devices,
    InterruptControllers,
}

/// Why a set of sections does not fit this machine.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the snapshot has no state for {0}, which this machine has")]
    Missing(String),
    #[error("the snapshot has state for {0}, which this machine does not have")]
    Unknown(String),
    #[error(transparent)]
    Load(#[from] LoadError),
}

#[derive(Default)]
pub struct Registry {
    entries: Mutex<Vec<(Phase, String, Arc<dyn Stateful>)>>,
}

impl Registry {
    /// Adds `object` as `id` (unique on the board).
    pub fn register(&self, phase: Phase, id: impl Into<String>, object: Arc<dyn Stateful>) {
        lock(&self.entries).push((phase, id.into(), object));
    }

    pub fn ids(&self) -> Vec<String> {
        lock(&self.entries).iter().map(|(_, id, _)| id.clone()).collect()
    }

    /// Every object's section, in load order.
    pub fn save_all(&self) -> Vec<Section> {
        let mut entries: Vec<_> = lock(&self.entries).iter().map(|(p, id, o)| (*p, id.clone(), o.clone())).collect();
        entries.sort_by_key(|(p, _, _)| *p);
        entries.iter().map(|(_, id, o)| o.save(id)).collect()
    }

    /// Loads `sections` into the objects with their ids. Every object must have exactly one
    /// section, checked before anything loads.
    pub fn load_all(&self, sections: &[Section]) -> Result<(), RegistryError> {
        let mut entries: Vec<_> = lock(&self.entries).iter().map(|(p, id, o)| (*p, id.clone(), o.clone())).collect();
        entries.sort_by_key(|(p, _, _)| *p);
        if let Some(s) = sections.iter().find(|s| !entries.iter().any(|(_, id, _)| *id == s.id)) {
            return Err(RegistryError::Unknown(s.id.clone()));
        }
        let mut found = Vec::with_capacity(entries.len());
        for (_, id, o) in &entries {
            let s = sections.iter().find(|s| s.id == *id).ok_or_else(|| RegistryError::Missing(id.clone()))?;
            found.push((o, s));
        }
        for (o, s) in found {
            o.load(s)?;
        }
        Ok(())
    }
}
