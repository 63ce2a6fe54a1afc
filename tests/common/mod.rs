//! Running ferrite on a guest from an end-to-end test: the guest cache, the serial output
//! collected as it arrives, markers timed, and the emulator stopped on a marker (for
//! kill -9 tests) or a timeout.

#![allow(dead_code)]

pub mod disk;
pub mod http;
pub mod qmp;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Where `scripts/fetch-guests` leaves the guest images.
/// Why KVM cannot be used here, if it cannot.
pub fn kvm_unusable() -> Option<String> {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm: {e}")),
    }
}

pub fn guest_dir() -> PathBuf {
    std::env::var("FERRITE_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ferrite/guests"))
}

/// The guest files `names` in the cache, or `None` after printing why the test skips.
pub fn guest_files<const N: usize>(names: [&str; N]) -> Option<[PathBuf; N]> {
    let dir = guest_dir();
    let paths = names.map(|n| dir.join(n));
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        println!("SKIPPED: no {} (run scripts/fetch-guests)", missing.display());
        return None;
    }
    Some(paths)
}

/// `%XX`-escapes everything but unreserved characters, for `ferrite.cmd=`.
pub fn escape(cmd: &str) -> String {
    cmd.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"/-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// How a run ended.
pub struct Run {
    pub output: String,
    /// Exit status; `None` if ferrite was killed (timeout or `kill_on`).
    pub status: Option<i32>,
    /// Seconds from start to the first occurrence of each watched marker.
    pub marks: Vec<Option<f64>>,
    pub elapsed: f64,
}

impl Run {
    /// The value the guest printed on a line of its own as `key=value`.
    pub fn printed(&self, key: &str) -> Option<&str> {
        self.output.lines().find_map(|l| l.trim().strip_prefix(&format!("{key}=")).map(|v| v.trim()))
    }

    /// The last `n` characters of the output, for assertion messages.
    pub fn tail(&self, n: usize) -> String {
        let skip = self.output.chars().count().saturating_sub(n);
        self.output.chars().skip(skip).collect()
    }
}

fn spawn_reader(child: &mut Child) -> Receiver<Vec<u8>> {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs ferrite with `args` until it exits, `timeout` passes, or `kill_on` appears in the
/// output (then it is killed with SIGKILL at once). `marks` are timed.
pub fn run_ferrite(args: &[String], timeout: Duration, marks: &[&str], kill_on: Option<&str>) -> Run {
    run_ferrite_with(args, timeout, marks, kill_on, Vec::new())
}

/// Host-side work started (on its own thread) when its marker appears in the guest's output,
/// e.g. connecting to a port the guest now listens on. It gets ferrite's process id.
pub type Hook = (&'static str, Box<dyn FnOnce(u32) + Send>);

/// Starts ferrite with `args`, its output piped to the receiver.
fn spawn_ferrite(args: &[String]) -> (Child, Receiver<Vec<u8>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ferrite starts");
    let rx = spawn_reader(&mut child);
    (child, rx)
}

/// [`run_ferrite`] with hooks.
pub fn run_ferrite_with(args: &[String], timeout: Duration, marks: &[&str], kill_on: Option<&str>, mut hooks: Vec<Hook>) -> Run {
    let start = Instant::now();
    let (mut child, rx) = spawn_ferrite(args);
    let mut out = Vec::new();
    let mut times = vec![None; marks.len()];
    let status = loop {
        while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(50)) {
            out.extend(bytes);
            let text = String::from_utf8_lossy(&out);
            for (t, m) in times.iter_mut().zip(marks) {
                if t.is_none() && text.contains(m) {
                    *t = Some(start.elapsed().as_secs_f64());
                }
            }
            let (due, waiting): (Vec<Hook>, Vec<Hook>) = hooks.into_iter().partition(|(m, _)| text.contains(m));
            hooks = waiting;
            let pid = child.id();
            for (_, hook) in due {
                std::thread::spawn(move || hook(pid));
            }
            if kill_on.is_some_and(|k| text.contains(k)) {
                let _ = child.kill();
                let _ = child.wait();
                return Run { output: text.into_owned(), status: None, marks: times, elapsed: start.elapsed().as_secs_f64() };
            }
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    // What the guest wrote just before exiting.
    while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(200)) {
        out.extend(bytes);
    }
    Run { output: String::from_utf8_lossy(&out).into_owned(), status, marks: times, elapsed: start.elapsed().as_secs_f64() }
}

/// A ferrite process a test acts on while it runs (through its monitors), its output
/// collected as it arrives. Killed when dropped, if still running.
pub struct Spawned {
    child: Child,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Spawned {
    pub fn start(args: &[String]) -> Spawned {
        let (child, rx) = spawn_ferrite(args);
        let output: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
        let sink = output.clone();
        std::thread::spawn(move || {
            for bytes in rx {
                sink.lock().unwrap().extend(bytes);
            }
        });
        Spawned { child, output }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `done` holds for the output (true), or `timeout` passes (false).
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(&self.output()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        done(&self.output())
    }

    /// Waits for the process to exit: its status, or `None` after `timeout` (then killed).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every thread's stack of process `pid`, by gdb (when installed), for a test that found
/// ferrite hung: a hang on a loaded CI machine then explains itself.
pub fn thread_stacks(pid: u32) -> String {
    let out = Command::new("gdb").args(["-p", &pid.to_string(), "-batch", "-nx", "-ex", "thread apply all bt 30"]).stdin(Stdio::null()).output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with('#') || l.starts_with("Thread")).collect::<Vec<_>>().join("\n"),
        Err(e) => format!("(no thread stacks: gdb: {e})"),
    }
}

/// Runs a host tool; `None` (after printing a skip notice) if it is not installed.
pub fn tool(name: &str) -> Option<Command> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        println!("SKIPPED: {name} is not installed (scripts/install-deps)");
        return None;
    }
    let mut c = Command::new(name);
    c.env("PATH", format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default()));
    Some(c)
}

/// Feeds `data` to a host program and returns what it printed.
fn filter(program: &str, args: &[&str], data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect(program);
    let mut stdin = child.stdin.take().expect("piped");
    let data = data.to_vec();
    // Written from another thread, so a large input cannot deadlock against the output.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect(program);
    writer.join().expect("writer").expect("write to filter");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// SHA-256 in hex, by coreutils' sha256sum (as the guest's busybox computes it).
pub fn sha256(data: &[u8]) -> String {
    filter("sha256sum", &[], data).split_whitespace().next().expect("a hash").to_string()
}

/// Base64 on one line, for `ferrite.cmd64=`.
pub fn base64(data: &[u8]) -> String {
    filter("base64", &["-w0"], data).trim().to_string()
}

/// Deterministic bytes that do not compress.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Resident set size and its peak, in KiB, from /proc (None once the process is gone).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}

/// One human-monitor command over the monitor's unix socket (`-monitor unix:PATH,...`):
/// waits for the banner's prompt, sends `command`, returns the reply up to the next prompt.
pub fn monitor(path: &std::path::Path, command: &str) -> String {
    use std::io::{BufRead, Write};
    let until_prompt = |r: &mut std::io::BufReader<std::os::unix::net::UnixStream>| {
        let mut text = Vec::new();
        while !text.ends_with(b"(ferrite) ") {
            if r.read_until(b' ', &mut text).unwrap_or(0) == 0 {
                break;
            }
        }
        String::from_utf8_lossy(&text).trim_end_matches("(ferrite) ").to_string()
    };
    let mut s = std::os::unix::net::UnixStream::connect(path).expect("the monitor listens");
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    until_prompt(&mut r); // the banner
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    until_prompt(&mut r)
}
