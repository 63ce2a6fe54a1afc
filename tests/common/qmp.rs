//! A bare QMP client for tests that need a command or two (tests/qmp.rs uses QEMU's own).

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    /// Events seen while waiting for replies.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying until the socket exists) and negotiates capabilities.
    pub fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("QMP at {}: {e}", path.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut q = Qmp { writer: stream.try_clone().unwrap(), reader: BufReader::new(stream), events: Vec::new() };
        let greeting = q.line();
        assert!(greeting.get("QMP").is_some(), "greeting: {greeting}");
        q.execute("qmp_capabilities", serde_json::json!({})).expect("negotiation");
        q
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("QMP reply");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("QMP sent '{l}': {e}"))
    }

    /// Runs a command: `Ok(return)` or `Err(error)`.
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value, Value> {
        let req = serde_json::json!({"execute": cmd, "arguments": args});
        self.writer.write_all(format!("{req}\n").as_bytes()).unwrap();
        loop {
            let v = self.line();
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(e.clone());
            }
            self.events.push(v);
        }
    }
}
