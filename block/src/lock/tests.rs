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

/// `lock_image` with locking on: the lock, or why not.
fn lock(p: &std::path::Path, role: LockRole, locking: Locking) -> Result<ImageLock, OpenError> {
    lock_image(&open(p), p, role, locking).map(|l| l.expect("locking is on"))
}

const WRITER: LockRole = LockRole::Writer { resize: true };

#[test]
fn roles_exclude_like_qemu() {
    let p = scratch("roles");
    let w = lock(&p, LockRole::Writer { resize: false }, Locking::Active).unwrap();
    // A second writer and a reader are refused while the writer is there...
    let e = lock(&p, WRITER, Locking::Active).unwrap_err();
    assert!(matches!(e, OpenError::Locked { perm: "write", shared: false, .. }), "{e}");
    let e = lock(&p, LockRole::Reader, Locking::Active).unwrap_err();
    assert!(matches!(e, OpenError::Locked { perm: "write", shared: true, .. }), "{e}");
    // ...readers share once it has gone, and keep a writer out.
    drop(w);
    let r1 = lock(&p, LockRole::Reader, Locking::Active).unwrap();
    let r2 = lock(&p, LockRole::Reader, Locking::Active).unwrap();
    assert!(lock(&p, LockRole::Writer { resize: false }, Locking::Active).is_err());
    // Dropping the locks releases them even while their file stays open.
    let keep_open = open(&p);
    let r3 = lock_image(&keep_open, &p, LockRole::Reader, Locking::Active).unwrap();
    drop((r1, r2, r3));
    lock(&p, LockRole::Writer { resize: false }, Locking::Active).unwrap();
    drop(keep_open);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn inactive_locks_let_the_active_side_write() {
    let p = scratch("handover");
    // A migration's destination waits inactive while the source writes...
    let mut source = lock(&p, WRITER, Locking::Active).unwrap();
    let mut dest = lock(&p, WRITER, Locking::Inactive).unwrap();
    // ...and cannot take the image while the source has it; it stays inactive.
    let e = dest.activate().unwrap_err();
    assert!(matches!(e, OpenError::Locked { perm: "write", .. }), "{e}");
    // Once the source has let go, it can.
    source.inactivate();
    dest.activate().unwrap();
    // Now the source cannot take it back, nor can anyone write or read consistently.
    let e = source.activate().unwrap_err();
    assert!(matches!(e, OpenError::Locked { perm: "write", .. }), "{e}");
    assert!(lock(&p, LockRole::Reader, Locking::Active).is_err());
    // An inactive opener still reads consistently: nobody may refuse it that.
    assert!(lock(&p, LockRole::Reader, Locking::Inactive).is_ok());
    // A failed activation left nothing behind: once the destination has gone, a writer opens.
    drop(dest);
    lock(&p, WRITER, Locking::Active).unwrap();
    drop(source);
    std::fs::remove_file(&p).unwrap();
}
