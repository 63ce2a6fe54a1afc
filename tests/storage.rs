//! End to end: disks and CD-ROMs on the PIIX IDE controller, booted through Debian's SeaBIOS
//! and driven by Debian's own `ata_piix`, `sd_mod`, `sr_mod`, `ext4` and `isofs` modules.
//! The images are made by Debian's tools (syslinux, xorriso, mkfs.ext4, qemu-img) and
//! checked afterwards by them (debugfs, e2fsck, qemu-img check): nothing here judges ferrite
//! by ferrite's own reading of the disk.
//!
//! Needs `scripts/fetch-guests` and `scripts/install-deps` (skips, saying so, without them).

mod common;

use common::disk::{check, data_disk, debugfs_cat, have_tools, Scratch};
use common::{base64, guest_files, payload, run_ferrite, sha256, tool, Run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(900);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Boot media (`disk` or `iso`) whose kernel runs `script` as its init command.
fn boot_media(kind: &str, out: &Path, script: &str, files: &[(&Path, &str)]) {
    let b64 = base64(script.as_bytes());
    let mut cmd = Command::new(repo().join("scripts/make-boot-media"));
    cmd.arg(kind).arg(out).args(["--append", &format!("console=ttyS0 panic=-1 ferrite.cmd64={b64}")]);
    for (src, dest) in files {
        cmd.arg("--file").arg(format!("{}:{dest}", src.display()));
    }
    check(&mut cmd);
}

fn ferrite_args(extra: &[&str]) -> Vec<String> {
    ["-m", "256", "-nographic", "-no-reboot", "-serial", "stdio"].iter().chain(extra).map(|s| s.to_string()).collect()
}

fn assert_booted_through_seabios(run: &Run, from: &str) {
    let tail = run.tail(3000);
    assert!(run.output.contains("SeaBIOS (version"), "no SeaBIOS banner:\n{tail}");
    assert!(run.output.contains(&format!("Booting from {from}")), "SeaBIOS did not boot from {from}:\n{tail}");
    assert!(run.output.contains("FERRITE-INIT-OK"), "the kernel's init never ran:\n{tail}");
    assert!(!run.output.contains("FERRITE-MODULE-FAILED"), "a kernel module failed to load:\n{tail}");
}

/// The guest's script for the data disks, named by IDE position (`1` is ide.0's slave, `2`
/// ide.1's master): check the payload, write a file and random data, print their hashes, sync.
/// Linux probes the disks in parallel, so `sdX` names are not stable; the SCSI address
/// (host = channel, target = unit) is.
fn write_script(positions: &[u8]) -> String {
    let mut s = String::from("mkdir -p /mnt; ");
    for (i, pos) in positions.iter().enumerate() {
        let scsi = format!("{}:0:{}:0", pos / 2, pos % 2);
        s += &format!(
            "mkdir -p /mnt/{i}; dev=$(ls /sys/bus/scsi/devices/{scsi}/block/); \
             mount -t ext4 /dev/$dev /mnt/{i} || exit 1; \
             echo payload-{i}=$(sha256sum /mnt/{i}/payload.bin | cut -d' ' -f1); \
             echo written-by-ferrite-{i} > /mnt/{i}/new.txt; \
             dd if=/dev/urandom of=/mnt/{i}/random.bin bs=64k count=16 2>/dev/null; \
             echo random-{i}=$(sha256sum /mnt/{i}/random.bin | cut -d' ' -f1); "
        );
    }
    s += "sync; echo GUEST-SYNCED; ";
    s
}

#[test]
fn seabios_boots_a_raw_disk_and_linux_reads_and_writes_ext4() {
    let Some([_bios, _]) = guest_files(["bios.bin", "initramfs-drivers.cpio.gz"]) else { return };
    if !have_tools(&["syslinux", "mkfs.vfat", "mcopy", "sfdisk", "mkfs.ext4", "debugfs", "e2fsck"]) {
        return;
    }
    let dir = Scratch::new("storage-raw");
    let data = payload(200_000, 7);
    let disk = data_disk(&dir, "data.img", &data);
    let boot = dir.path("boot.img");
    // Unmount before powering off, so the file system is clean for e2fsck -n.
    let script = write_script(&[1]) + "umount /mnt/0 && echo GUEST-UNMOUNTED";
    boot_media("disk", &boot, &script, &[]);
    let args = ferrite_args(&["-drive", &format!("file={},format=raw,if=ide,index=0", boot.display()), "-hdb", &disk.display().to_string(), "-boot", "order=c,menu=off"]);
    let run = run_ferrite(&args, TIMEOUT, &["FERRITE-INIT-OK", "GUEST-SYNCED"], None);
    println!("raw disk boot: init after {:?} s, synced after {:?} s, exit after {:.1} s", run.marks[0], run.marks[1], run.elapsed);
    assert_booted_through_seabios(&run, "Hard Disk");
    let tail = run.tail(3000);
    assert_eq!(run.printed("payload-0"), Some(sha256(&data).as_str()), "the guest read other bytes than mkfs.ext4 wrote:\n{tail}");
    assert!(run.output.contains("GUEST-UNMOUNTED"), "unmount failed:\n{tail}");
    assert_eq!(run.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");
    // The host's view, through e2fsprogs.
    assert_eq!(debugfs_cat(&disk, "/new.txt"), b"written-by-ferrite-0\n");
    let random = debugfs_cat(&disk, "/random.bin");
    assert_eq!(random.len(), 1 << 20);
    assert_eq!(Some(sha256(&random).as_str()), run.printed("random-0"));
    let fsck = tool("e2fsck").unwrap().arg("-fn").arg(&disk).output().unwrap();
    assert!(fsck.status.success(), "e2fsck -fn: {}", String::from_utf8_lossy(&fsck.stdout));
}

/// qcow2 copies of the boot disk and a data disk, plus a raw data disk: the guest syncs and
/// ferrite is killed with SIGKILL at once. What the guest synced must be in both images,
/// and qemu-img must find the qcow2 images consistent.
#[test]
fn qcow2_and_raw_hold_synced_data_after_kill_9() {
    let Some(_) = guest_files(["bios.bin", "initramfs-drivers.cpio.gz"]) else { return };
    if !have_tools(&["syslinux", "mkfs.vfat", "mcopy", "sfdisk", "mkfs.ext4", "debugfs", "e2fsck", "qemu-img"]) {
        return;
    }
    let dir = Scratch::new("storage-qcow2");
    let (data_q, data_r) = (payload(300_000, 11), payload(100_000, 13));
    let raw_q = data_disk(&dir, "data-q.raw", &data_q);
    let raw = data_disk(&dir, "data-r.img", &data_r);
    let boot_raw = dir.path("boot.raw");
    boot_media("disk", &boot_raw, &(write_script(&[1, 2]) + "sleep 600"), &[]);
    let (boot, qcow) = (dir.path("boot.qcow2"), dir.path("data.qcow2"));
    for (src, dst) in [(&boot_raw, &boot), (&raw_q, &qcow)] {
        check(tool("qemu-img").unwrap().args(["convert", "-f", "raw", "-O", "qcow2"]).arg(src).arg(dst));
    }
    let args = ferrite_args(&[
        "-drive", &format!("file={},if=ide,index=0", boot.display()),
        "-drive", &format!("file={},format=qcow2,index=1", qcow.display()),
        "-drive", &format!("file={},format=raw,index=2,cache=writeback", raw.display()),
    ]);
    let run = run_ferrite(&args, TIMEOUT, &["FERRITE-INIT-OK"], Some("GUEST-SYNCED"));
    assert_booted_through_seabios(&run, "Hard Disk");
    let tail = run.tail(3000);
    assert!(run.output.contains("GUEST-SYNCED"), "the guest never synced:\n{tail}");
    assert_eq!(run.printed("payload-0"), Some(sha256(&data_q).as_str()), "qcow2 read:\n{tail}");
    assert_eq!(run.printed("payload-1"), Some(sha256(&data_r).as_str()), "raw read:\n{tail}");
    for img in [&boot, &qcow] {
        check(tool("qemu-img").unwrap().args(["check", "-f", "qcow2"]).arg(img));
    }
    // Recover the journals (the guest never unmounted) on copies, then read the files.
    let flat_q = dir.path("data-q.after");
    check(tool("qemu-img").unwrap().args(["convert", "-f", "qcow2", "-O", "raw"]).arg(&qcow).arg(&flat_q));
    let flat_r = dir.path("data-r.after");
    std::fs::copy(&raw, &flat_r).unwrap();
    for (i, img) in [&flat_q, &flat_r].into_iter().enumerate() {
        let fsck = tool("e2fsck").unwrap().arg("-fy").arg(img).output().unwrap();
        // 0: clean, 1: errors corrected (the journal replay counts as one).
        assert!(matches!(fsck.status.code(), Some(0 | 1)), "e2fsck -fy disk {i}: {}", String::from_utf8_lossy(&fsck.stdout));
        assert_eq!(debugfs_cat(img, "/new.txt"), format!("written-by-ferrite-{i}\n").into_bytes(), "disk {i}");
        let random = debugfs_cat(img, "/random.bin");
        assert_eq!(Some(sha256(&random).as_str()), run.printed(&format!("random-{i}")), "disk {i}: synced data lost");
    }
}

#[test]
fn seabios_boots_an_iso_from_the_cdrom_and_linux_reads_it() {
    let Some(_) = guest_files(["bios.bin", "initramfs-drivers.cpio.gz"]) else { return };
    if !have_tools(&["xorriso"]) {
        return;
    }
    let dir = Scratch::new("storage-iso");
    let file = dir.path("hello.txt");
    let text = payload(50_000, 3);
    std::fs::write(&file, &text).unwrap();
    let iso = dir.path("cd.iso");
    let script = "mkdir -p /mnt; mount -t iso9660 -o ro /dev/sr0 /mnt && echo cd-file=$(sha256sum /mnt/ferrite/hello.bin | cut -d' ' -f1); \
                  echo cd-size=$(cat /sys/block/sr0/size)";
    boot_media("iso", &iso, script, &[(&file, "ferrite/hello.bin")]);
    let args = ferrite_args(&["-cdrom", &iso.display().to_string(), "-boot", "d"]);
    let run = run_ferrite(&args, TIMEOUT, &["FERRITE-INIT-OK"], None);
    println!("CD boot: init after {:?} s, exit after {:.1} s", run.marks[0], run.elapsed);
    assert_booted_through_seabios(&run, "DVD/CD");
    let tail = run.tail(3000);
    assert_eq!(run.printed("cd-file"), Some(sha256(&text).as_str()), "the guest read other bytes from the CD:\n{tail}");
    let sectors = std::fs::metadata(&iso).unwrap().len() / 512;
    assert_eq!(run.printed("cd-size"), Some(sectors.to_string().as_str()), "sr0's size:\n{tail}");
    assert_eq!(run.status, Some(0), "ferrite did not exit 0:\n{tail}");
}

/// Broken or busy images: ferrite exits non-zero before the guest runs, names the image and
/// the reason, and leaves every byte of it as it was.
#[test]
fn bad_images_are_clear_errors_and_stay_untouched() {
    if !have_tools(&["qemu-img"]) {
        return;
    }
    let dir = Scratch::new("storage-bad");
    let qemu_img = |args: &[&str]| check(tool("qemu-img").unwrap().current_dir(&dir.0).args(args));
    qemu_img(&["create", "-q", "-f", "qcow2", "good.qcow2", "16M"]);
    std::fs::copy(dir.path("good.qcow2"), dir.path("truncated.qcow2")).unwrap();
    std::fs::OpenOptions::new().write(true).open(dir.path("truncated.qcow2")).unwrap().set_len(60).unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "loop-b.qcow2", "-F", "qcow2", "loop-a.qcow2", "16M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "loop-a.qcow2", "-F", "qcow2", "loop-b.qcow2", "16M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "orphan.qcow2", "16M"]);
    std::fs::write(dir.path("raw.img"), payload(1 << 20, 5)).unwrap();
    std::fs::create_dir(dir.path("a-directory")).unwrap();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["-hda", "truncated.qcow2"], "truncated.qcow2", "truncated"),
        (&["-hda", "loop-a.qcow2"], "loop-", "loop"),
        (&["-hda", "orphan.qcow2"], "gone.qcow2", ""),
        (&["-hda", "a-directory"], "a-directory", "directory"),
        (&["-hda", "missing.img"], "missing.img", "no such file"),
        (&["-drive", "file=raw.img,format=qcow2"], "raw.img", "qcow2"),
        (&["-drive", "file=raw.img,format=raw", "-drive", "file=raw.img,format=raw"], "raw.img", "lock"),
    ];
    let hashes = |names: &[&str]| -> Vec<String> { names.iter().map(|n| sha256(&std::fs::read(dir.path(n)).unwrap())).collect() };
    let images = ["good.qcow2", "truncated.qcow2", "loop-a.qcow2", "loop-b.qcow2", "orphan.qcow2", "raw.img"];
    let before = hashes(&images);
    for (args, names, says) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite")).current_dir(&dir.0).args(["-m", "64", "-nographic"]).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail; stderr:\n{stderr}");
        assert!(out.status.code().is_some(), "{args:?} crashed: {:?}\n{stderr}", out.status);
        assert!(stderr.contains(names), "{args:?}: the error does not name {names}:\n{stderr}");
        assert!(stderr.to_lowercase().contains(says), "{args:?}: the error does not say '{says}':\n{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("SeaBIOS"), "{args:?}: the guest ran");
    }
    assert_eq!(hashes(&images), before, "a refused image changed");

    // QEMU's own tools see ferrite's locks: qemu-img refuses an image ferrite is writing.
    let mut running = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .current_dir(&dir.0)
        .args(["-m", "64", "-nographic", "-drive", "file=good.qcow2,format=qcow2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let busy = tool("qemu-img").unwrap().current_dir(&dir.0).args(["check", "good.qcow2"]).output().unwrap();
    let _ = running.kill();
    let _ = running.wait();
    assert!(!busy.status.success(), "qemu-img check ran on an image ferrite holds open for writing");
    assert!(String::from_utf8_lossy(&busy.stderr).contains("lock"), "{}", String::from_utf8_lossy(&busy.stderr));
    check(tool("qemu-img").unwrap().current_dir(&dir.0).args(["check", "good.qcow2"]));
}
