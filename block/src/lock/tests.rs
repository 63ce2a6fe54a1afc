use super::*;
use std::fs::OpenOptions;

fn scratch(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ferrite-lock-{}-{name}", std::process::id()));
    std::fs::write(&p, [0u8; 512]).unwrap();
    p
}

fn open(p: &std::path::Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

#[test]
fn roles_exclude_like_qemu() {
    let p = scratch("roles");
    let w = lock_image(&open(&p), &p, LockRole::Writer { resize: false }).unwrap();
    // A second writer and a reader are refused while the writer is there...
    let e = lock_image(&open(&p), &p, LockRole::Writer { resize: true }).unwrap_err();
    assert!(matches!(e, OpenError::Locked { perm: "write", shared: false, .. }), "{e}");
    let e = lock_image(&open(&p), &p, LockRole::Reader).unwrap_err();
    assert!(matches!(e, OpenError::Locked { perm: "write", shared: true, .. }), "{e}");
    // ...readers share once it has gone, and keep a writer out.
    drop(w);
    let r1 = lock_image(&open(&p), &p, LockRole::Reader).unwrap();
    let r2 = lock_image(&open(&p), &p, LockRole::Reader).unwrap();
    assert!(lock_image(&open(&p), &p, LockRole::Writer { resize: false }).is_err());
    // Dropping the locks releases them even while their file stays open.
    let keep_open = open(&p);
    let r3 = lock_image(&keep_open, &p, LockRole::Reader).unwrap();
    drop((r1, r2, r3));
    lock_image(&open(&p), &p, LockRole::Writer { resize: false }).unwrap();
    drop(keep_open);
    std::fs::remove_file(&p).unwrap();
}
