//! Saving a whole machine to a stream and loading it into a fresh one: the vCPUs, every
//! device on the board's [`registry::Registry`], guest time and RAM ([`stream`] has the
//! format). `migrate "exec:CMD"`/`file:PATH` write it (the machine stays stopped afterwards,
//! QEMU's `postmigrate`), `-incoming exec:CMD`/`file:PATH` start from it.
//!
//! The guest clock continues from the saved time: guest time does not jump across a save
//! and restore (the RTC's wall clock runs on from its saved time too, as under QEMU's
//! `-rtc clock=vm`). Disk images are not part of the state: the destination opens the same
//! images, which must not change in between (QEMU's rule for migration, too). Their locks are
//! handed over as QEMU does ([`crate::images`]): the source lets go of its images before the
//! end of the state leaves, the destination takes them once it has all of it.

pub mod incoming;
pub mod live;
pub mod named;
pub mod registry;
pub mod stream;
mod vm;

use crate::config::{Accel, KernelIrqchip};
use crate::control::RunState;
use crate::Machine;
use ferrite_persist::Section;
use std::io::{Read, Write};
use stream::{Checked, DeviceState, Shape, StreamError, Verified, PAGE};

const FOUR_GIB: u64 = 1 << 32;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Stream(#[from] StreamError),
    #[error("cannot write the machine state: {0}")]
    Write(#[source] std::io::Error),
    #[error("the snapshot is for another machine:\n  {}", .0.join("\n  "))]
    Mismatch(Vec<String>),
    #[error("{0}")]
    Sections(#[from] registry::RegistryError),
    #[error("vCPU {cpu}: {source}")]
    Cpu {
        cpu: usize,
        #[source]
        source: ferrite_persist::LoadError,
    },
    #[error("the snapshot has no state for vCPU {0}")]
    MissingCpu(usize),
    #[error("machine state under -accel kvm,kernel-irqchip={0} is not supported: KVM's in-kernel interrupt controllers keep state ferrite does not carry; use kernel-irqchip=off (the default)")]
    KvmIrqchip(&'static str),
    #[error("vCPU {cpu}: {source}")]
    Kvm {
        cpu: usize,
        #[source]
        source: crate::accel::kvm::KvmError,
    },
    #[error("guest memory: {0}")]
    Memory(#[from] ferrite_memory::MemoryError),
    #[error("{0}")]
    Images(String),
}

/// What one save moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveStats {
    pub bytes: u64,
    pub ram_pages: u64,
}

fn cpu_id(i: usize) -> String {
    format!("cpu{i}")
}

impl Machine {
    fn shape(&self) -> Shape {
        let mem = &self.board.mem;
        let mut objects: Vec<String> = (0..self.vcpus.len()).map(cpu_id).collect();
        objects.extend(self.board.state.ids());
        Shape { ram_below_4g: mem.below_4g(), ram_above_4g: mem.above_4g(), cpus: self.vcpus.len(), cpu_model: self.cfg.cpu.clone(), objects }
    }

    /// Writes the machine's state to `out`. The vCPUs must be stopped (a control job);
    /// in-flight disk I/O is finished first.
    pub fn save_state(&mut self, out: impl Write) -> Result<SaveStats, SnapshotError> {
        self.check_accel()?;
        // Disk requests finish first: what they write into RAM must be in the RAM sent.
        self.quiesce_devices();
        let saved = self.write_state(out);
        // The machine may run on (`cont`, or the save failed); with its images handed over,
        // the disks wait until they are taken back.
        if self.images_active() {
            self.live_virtio.resume();
        }
        saved
    }

    fn write_state(&mut self, out: impl Write) -> Result<SaveStats, SnapshotError> {
        let mut out = Checked::new(std::io::BufWriter::with_capacity(1 << 20, out));
        stream::write_start(&mut out, &self.shape()).map_err(SnapshotError::Write)?;
        let mem = self.board.mem.clone();
        let read = |gpa: u64, page: &mut [u8]| {
            if mem.read(gpa, page).is_err() {
                page.fill(0);
            }
        };
        let mut ram_pages = stream::write_ram(&mut out, 0, mem.below_4g(), read).map_err(SnapshotError::Write)?;
        ram_pages += stream::write_ram(&mut out, FOUR_GIB, mem.above_4g(), read).map_err(SnapshotError::Write)?;
        stream::end_ram(&mut out).map_err(SnapshotError::Write)?;
        self.write_device_state(&mut out)?;
        let bytes = out.finish().map_err(SnapshotError::Write)?;
        Ok(SaveStats { bytes, ram_pages })
    }

    /// Machine state moves between ferrite's CPU and KVM (either way) as long as the
    /// interrupt controllers are ferrite's own, which both accelerators then share.
    pub(crate) fn check_accel(&self) -> Result<(), SnapshotError> {
        match (self.cfg.accel, self.cfg.kernel_irqchip) {
            (Accel::Kvm, KernelIrqchip::On) => Err(SnapshotError::KvmIrqchip("on")),
            (Accel::Kvm, KernelIrqchip::Split) => Err(SnapshotError::KvmIrqchip("split")),
            _ => Ok(()),
        }
    }

    /// Starts the dirty log of guest stores that bypass ferrite's memory (KVM's); ferrite's
    /// CPU, DMA and loaders always log theirs.
    pub(crate) fn start_dirty_log(&self) -> Result<(), String> {
        match self.vcpus.first().and_then(|v| v.kvm_vm()) {
            Some(vm) => vm.start_dirty_log().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// The pages written since the last call (page numbers), KVM's dirty log included.
    pub(crate) fn take_dirty(&self) -> Result<Vec<u64>, String> {
        if let Some(vm) = self.vcpus.first().and_then(|v| v.kvm_vm()) {
            vm.collect_dirty_log().map_err(|e| format!("KVM's dirty log: {e}"))?;
        }
        Ok(self.board.mem.take_dirty())
    }

    /// Finishes the disks' requests in flight (their data and completions land in RAM). The
    /// vCPUs are stopped, so no new ones come; call before RAM is copied for the last time.
    pub(crate) fn quiesce_devices(&mut self) {
        crate::pc::interrupts::lock(&self.ide).drain();
        self.live_virtio.quiesce();
    }

    /// Everything but RAM ([`Machine::quiesce_devices`] came first; the vCPUs are stopped).
    pub(crate) fn write_device_state<W: Write>(&mut self, out: &mut Checked<W>) -> Result<(), SnapshotError> {
        let now = self.board.wiring.clock.now();
        for (cpu, v) in self.vcpus.iter_mut().enumerate() {
            v.store_tsc(now).map_err(|source| SnapshotError::Kvm { cpu, source })?;
        }
        let mut sections: Vec<Section> = self.vcpus.iter().enumerate().map(|(i, v)| ferrite_persist::save(&v.cpu, &cpu_id(i))).collect();
        sections.extend(self.board.state.save_all());
        let running = self.control.guest_running();
        let state = DeviceState { ferrite: env!("CARGO_PKG_VERSION").into(), clock_ns: now, running, sections };
        stream::write_json(out, &state).map_err(SnapshotError::Write)
    }

    /// Loads a state saved by [`Machine::save_state`] (or sent by live migration) into this
    /// freshly built machine, before it ran. `accepted` hears whether the shape matched
    /// (live migration answers the source with it). On error the machine must not run: its
    /// RAM may be half loaded.
    pub fn load_state(&mut self, input: impl Read, accepted: impl FnOnce(Result<(), &str>)) -> Result<(), SnapshotError> {
        if let Err(e) = self.check_accel() {
            accepted(Err(&e.to_string()));
            return Err(e);
        }
        let mut input = Verified::new(std::io::BufReader::with_capacity(1 << 20, input));
        let shape = stream::read_start(&mut input)?;
        let differences = shape.differences(&self.shape());
        if !differences.is_empty() {
            accepted(Err(&differences.join("; ")));
            return Err(SnapshotError::Mismatch(differences));
        }
        accepted(Ok(()));
        let mem = self.board.mem.clone();
        mem.discard(0, mem.below_4g() & !(PAGE as u64 - 1))?;
        if mem.above_4g() > 0 {
            mem.discard(FOUR_GIB, mem.above_4g())?;
        }
        stream::read_ram(&mut input, |gpa, len| shape.ram_fits(gpa, len), |gpa, data| {
            let _ = mem.write(gpa, data);
        })?;
        let state: DeviceState = stream::read_json(&mut input)?;
        input.finish()?;
        // All of the state is here, so the source has let go of the images: take them before
        // the devices restart (virtio-blk goes on with requests the guest had queued).
        self.activate_images().map_err(SnapshotError::Images)?;
        self.board.wiring.clock.set_paused_at(state.clock_ns);
        let (cpus, devices): (Vec<&Section>, Vec<&Section>) = state.sections.iter().partition(|s| s.section == "cpu" && s.id.starts_with("cpu"));
        let devices: Vec<Section> = devices.into_iter().cloned().collect();
        self.board.state.load_all(&devices)?;
        self.board.restored();
        for (i, v) in self.vcpus.iter_mut().enumerate() {
            let s = cpus.iter().find(|s| s.id == cpu_id(i)).ok_or(SnapshotError::MissingCpu(i))?;
            ferrite_persist::load(&mut v.cpu, s).map_err(|source| SnapshotError::Cpu { cpu: i, source })?;
            v.restored(state.clock_ns).map_err(|source| SnapshotError::Kvm { cpu: i, source })?;
        }
        self.loaded_paused = !state.running;
        Ok(())
    }

    /// `migrate` to a file or a command's input: saves, and leaves the machine stopped in
    /// `postmigrate` (`cont` runs it on), as QEMU does. `tcp:` starts a live migration and
    /// returns at once (`query-migrate` follows it).
    pub fn migrate_out(&mut self, uri: &str) -> Result<SaveStats, String> {
        if self.control.migrating() {
            return Err("a migration is already in progress".into());
        }
        if self.debugging {
            return Err("the machine is under gdb's control (-gdb): detach gdb before migrating".into());
        }
        if let Some(addr) = uri.strip_prefix("tcp:") {
            live::start_outgoing(self.control.clone(), addr.to_string());
            return Ok(SaveStats::default());
        }
        let target = MigrationTarget::parse(uri)?;
        let started = std::time::Instant::now();
        let was = self.control.run_state();
        self.control.set_run_state(RunState::FinishMigrate);
        // A destination reading the state as it is written takes the images at its end.
        let result = self.hand_over_images().and_then(|()| match target {
            MigrationTarget::File(path) => std::fs::File::create(&path)
                .map_err(|e| format!("cannot create '{path}': {e}"))
                .and_then(|f| self.save_state(f).map_err(|e| e.to_string())),
            MigrationTarget::Exec(cmd) => self.save_to_command(&cmd),
        });
        let result = result.map_err(|e| self.recover_from_failed_migration(was, e));
        match &result {
            Ok(stats) => {
                self.control.set_run_state(RunState::Postmigrate);
                if was == RunState::Running {
                    self.control.events.emit("STOP", serde_json::json!({}));
                }
                self.control.set_migration(crate::control::MigrationInfo::completed(*stats, started.elapsed(), self.board.mem.ram_size()));
            }
            Err(e) => {
                // Still stopped: the destination has the images.
                if was == RunState::Running && self.control.run_state() != was {
                    self.control.events.emit("STOP", serde_json::json!({}));
                }
                self.control.set_migration(crate::control::MigrationInfo::ended("failed", Some(e.clone())));
            }
        }
        self.control.events.emit("MIGRATION", serde_json::json!({"status": if result.is_ok() { "completed" } else { "failed" }}));
        result
    }

    fn save_to_command(&mut self, cmd: &str) -> Result<SaveStats, String> {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", cmd])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run '{cmd}': {e}"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let saved = self.save_state(stdin).map_err(|e| e.to_string());
        let status = child.wait().map_err(|e| format!("'{cmd}': {e}"))?;
        let stats = saved?;
        if !status.success() {
            return Err(format!("'{cmd}' failed ({status})"));
        }
        Ok(stats)
    }

    /// `-incoming file:PATH`, `exec:CMD` or `tcp:HOST:PORT`: loads the state before the
    /// machine first runs.
    pub fn migrate_in(&mut self, uri: &str) -> Result<(), String> {
        if let Some(addr) = uri.strip_prefix("tcp:") {
            return live::incoming(self, addr);
        }
        match MigrationTarget::parse(uri)? {
            MigrationTarget::File(path) => {
                let f = std::fs::File::open(&path).map_err(|e| format!("cannot open '{path}': {e}"))?;
                self.load_state(f, |_| {}).map_err(|e| format!("'{path}': {e}"))
            }
            MigrationTarget::Exec(cmd) => {
                let mut child = std::process::Command::new("/bin/sh")
                    .args(["-c", &cmd])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot run '{cmd}': {e}"))?;
                let stdout = child.stdout.take().expect("stdout is piped");
                let loaded = self.load_state(stdout, |_| {}).map_err(|e| format!("'{cmd}': {e}"));
                let _ = child.wait();
                loaded
            }
        }
    }
}

/// Where `migrate` writes and `-incoming` reads.
pub(crate) enum MigrationTarget {
    File(String),
    Exec(String),
}

impl MigrationTarget {
    pub(crate) fn parse(uri: &str) -> Result<Self, String> {
        if let Some(p) = uri.strip_prefix("file:") {
            Ok(MigrationTarget::File(p.to_string()))
        } else if let Some(c) = uri.strip_prefix("exec:") {
            Ok(MigrationTarget::Exec(c.to_string()))
        } else {
            Err(format!("unsupported migration URI '{uri}' (supported: tcp:HOST:PORT, file:PATH, exec:COMMAND)"))
        }
    }
}
