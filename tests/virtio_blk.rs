//! End to end, virtio-blk: Debian's kernel binds `-drive if=virtio` and
//! `-device virtio-blk-pci` disks with its own `virtio_pci` and `virtio_blk` modules, mounts
//! the ext4 file systems mkfs.ext4 made, checks a file's hash, writes, trims and syncs. The
//! host then judges the images with e2fsprogs and qemu-img, never with ferrite's own reading.
//!
//! Needs `scripts/fetch-guests` and `scripts/install-deps` (skips, saying so, without them).

mod common;

use common::disk::{check, data_disk, debugfs_cat, fsck_clean, have_tools, Scratch};
use common::{base64, guest_files, payload, run_ferrite, sha256, tool};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// A shell function `t SERIAL N` for the disk with serial SERIAL: what Linux reports about
/// it, its hash check, writes, a trim of freed blocks, unmount.
const DISK_SCRIPT: &str = "t() { d=; for s in /sys/block/vd*; do [ \"$(cat $s/serial)\" = $1 ] && d=${s##*/}; done; \
    q=/sys/block/$d/queue; m=/mnt/$2; \
    echo dev-$2=$d; echo queues-$2=$(ls /sys/block/$d/mq | wc -l); echo ro-$2=$(cat /sys/block/$d/ro); echo feat-$2=$(cat /sys/block/$d/device/features); \
    echo cache-$2=$(cat $q/write_cache); echo discard-$2=$(cat $q/discard_max_bytes); \
    mkdir -p $m; mount -t ext4 /dev/$d $m || exit 1; \
    echo payload-$2=$(sha256sum $m/payload.bin | cut -d' ' -f1); \
    echo written-by-ferrite-$2 > $m/new.txt; \
    dd if=/dev/urandom of=$m/random.bin bs=64k count=32 2>/dev/null; \
    echo random-$2=$(sha256sum $m/random.bin | cut -d' ' -f1); \
    dd if=/dev/zero of=$m/scratch bs=64k count=160 2>/dev/null; sync; rm $m/scratch; sync; \
    fstrim -v $m; sync; umount $m && echo unmounted-$2=yes; }; ";

/// A raw disk through `-drive if=virtio` (transitional device, discard=unmap) and a qcow2
/// disk through `-device virtio-blk-pci` (modern only, two queues, packed rings, cache=none).
#[test]
fn linux_uses_virtio_disks_raw_and_qcow2() {
    let Some([kernel, initrd]) = guest_files(["bzImage", "initramfs-drivers.cpio.gz"]) else { return };
    if !have_tools(&["mkfs.ext4", "debugfs", "e2fsck", "qemu-img"]) {
        println!("SKIPPED: mkfs.ext4, debugfs, e2fsck or qemu-img missing (scripts/install-deps)");
        return;
    }
    let dir = Scratch::new("virtio-blk");
    let (data_r, data_q) = (payload(300_000, 31), payload(500_000, 37));
    let raw = data_disk(&dir, "data.raw", &data_r);
    let flat_q = data_disk(&dir, "data-q.raw", &data_q);
    let qcow = dir.path("data.qcow2");
    check(tool("qemu-img").unwrap().args(["convert", "-f", "raw", "-O", "qcow2"]).arg(&flat_q).arg(&qcow));
    let script = DISK_SCRIPT.to_string() + "t FERRITE-RAW 0; t FERRITE-QCOW2 1";
    let append = format!("console=ttyS0 panic=-1 ferrite.cmd64={}", base64(script.as_bytes()));
    let args: Vec<String> = [
        "-m", "256", "-smp", "2", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", &kernel.display().to_string(), "-initrd", &initrd.display().to_string(), "-append", &append,
        "-drive", &format!("if=virtio,file={},format=raw,serial=FERRITE-RAW,discard=unmap", raw.display()),
        "-drive", &format!("if=none,id=q,file={},cache=none", qcow.display()),
        "-device", "virtio-blk-pci,drive=q,num-queues=2,serial=FERRITE-QCOW2,disable-legacy=on,packed=on",
    ]
    .map(String::from)
    .to_vec();
    let raw_blocks_before = std::fs::metadata(&raw).unwrap().blocks();
    let run = run_ferrite(&args, Duration::from_secs(900), &["FERRITE-INIT-OK", "unmounted-1"], None);
    let tail = run.tail(4000);
    println!("virtio-blk: init after {:?} s, done after {:?} s, exit after {:.1} s", run.marks[0], run.marks[1], run.elapsed);
    assert!(!run.output.contains("FERRITE-MODULE-FAILED"), "a module failed to load:\n{tail}");
    assert_eq!(run.printed("payload-0"), Some(sha256(&data_r).as_str()), "raw disk read:\n{tail}");
    assert_eq!(run.printed("payload-1"), Some(sha256(&data_q).as_str()), "qcow2 disk read:\n{tail}");
    assert_eq!(run.printed("queues-0"), Some("2"), "one queue per vCPU by default:\n{tail}");
    assert_eq!(run.printed("queues-1"), Some("2"), "num-queues=2:\n{tail}");
    assert_eq!(run.printed("ro-0"), Some("0"));
    // Feature bit 34: the packed ring, which only the second disk offers (packed=on).
    let packed = |n: usize| run.printed(&format!("feat-{n}")).and_then(|f| f.as_bytes().get(34).copied());
    assert_eq!((packed(0), packed(1)), (Some(b'0'), Some(b'1')), "packed ring negotiation:\n{tail}");
    assert_eq!(run.printed("cache-0"), Some("write back"), "{tail}");
    assert_ne!(run.printed("discard-0"), Some("0"), "discard offered:\n{tail}");
    assert_eq!(run.printed("unmounted-0"), Some("yes"), "{tail}");
    assert_eq!(run.printed("unmounted-1"), Some("yes"), "{tail}");
    assert_eq!(run.status, Some(0), "ferrite did not exit 0 after the guest powered off:\n{tail}");

    // The raw image, through e2fsprogs; fstrim punched the freed blocks out of it.
    assert_eq!(debugfs_cat(&raw, "/new.txt"), b"written-by-ferrite-0\n");
    assert_eq!(Some(sha256(&debugfs_cat(&raw, "/random.bin")).as_str()), run.printed("random-0"));
    let (clean, report) = fsck_clean(&raw);
    assert!(clean, "e2fsck -fn on the raw disk: {report}");
    let raw_blocks_after = std::fs::metadata(&raw).unwrap().blocks();
    println!("raw image: {} KiB allocated before, {} KiB after", raw_blocks_before / 2, raw_blocks_after / 2);
    // 2 MiB of random data stayed; the 10 MiB scratch file was trimmed away.
    assert!(raw_blocks_after * 512 < raw_blocks_before * 512 + (6 << 20), "fstrim did not free the scratch file's blocks");

    // The qcow2 image, through qemu-img and then e2fsprogs.
    check(tool("qemu-img").unwrap().args(["check", "-f", "qcow2"]).arg(&qcow));
    let after = dir.path("data-q.after");
    check(tool("qemu-img").unwrap().args(["convert", "-f", "qcow2", "-O", "raw"]).arg(&qcow).arg(&after));
    assert_eq!(debugfs_cat(&after, "/new.txt"), b"written-by-ferrite-1\n");
    assert_eq!(Some(sha256(&debugfs_cat(&after, "/random.bin")).as_str()), run.printed("random-1"));
    let (clean, report) = fsck_clean(&after);
    assert!(clean, "e2fsck -fn on the qcow2 disk: {report}");
}
