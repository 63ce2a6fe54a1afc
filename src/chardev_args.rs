//! QEMU's `-chardev`, `-monitor` and `-mon` options.

use crate::storage_args::on_off;
use anyhow::{anyhow, bail, Result};
use ferrite_machine::config::{ChardevBackend, ChardevConfig, MonitorConfig, MonitorMode, SocketAddress};
use std::path::PathBuf;

/// `-chardev socket,id=ID,path=P|host=H,port=N[,server=on|off][,wait=on|off]`,
/// `-chardev file,id=ID,path=P`, `-chardev null,id=ID`.
pub fn parse_chardev(spec: &str) -> Result<ChardevConfig> {
    let mut parts = spec.split(',');
    let kind = parts.next().unwrap_or("");
    let (mut id, mut path, mut host, mut port, mut server) = (None, None, None, None, false);
    for p in parts.filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').unwrap_or((p, "on"));
        match k {
            "id" => id = Some(v.to_string()),
            "path" => path = Some(PathBuf::from(v)),
            "host" => host = Some(v.to_string()),
            "port" => port = Some(v.parse::<u16>().map_err(|_| anyhow!("-chardev: port={v}: expected a port number"))?),
            "server" => server = on_off(k, v)?,
            // ferrite never waits for a client before starting the guest.
            "wait" | "nowait" => {}
            "telnet" | "logfile" | "mux" | "signal" | "logappend" if v == "off" => {}
            _ => bail!("-chardev {kind}: unsupported option '{p}'"),
        }
    }
    let id = id.ok_or_else(|| anyhow!("-chardev {kind}: id= is required"))?;
    let backend = match kind {
        "null" => ChardevBackend::Null,
        "file" => ChardevBackend::File(path.ok_or_else(|| anyhow!("-chardev file: path= is required"))?),
        "socket" => {
            let address = match (path, host, port) {
                (Some(p), None, None) => SocketAddress::Unix(p),
                (None, h, Some(port)) => SocketAddress::Tcp(format!("{}:{port}", h.as_deref().unwrap_or("127.0.0.1"))),
                _ => bail!("-chardev socket: give path= (Unix) or [host=,]port= (TCP)"),
            };
            ChardevBackend::Socket { address, server }
        }
        other => bail!("unsupported -chardev backend '{other}' (supported: socket, file, null)"),
    };
    Ok(ChardevConfig { id, backend })
}

/// `-monitor`/`-qmp` `unix:PATH[,server][,nowait]`, `tcp:[HOST]:PORT[,server][,nowait]` or
/// `none`: a chardev of its own, named `id`. `None` for `none`.
pub fn parse_monitor(flag: &str, spec: &str, id: &str) -> Result<Option<ChardevConfig>> {
    let mut parts = spec.split(',');
    let target = parts.next().unwrap_or("");
    let mut server = false;
    for p in parts.filter(|p| !p.is_empty()) {
        match p.split_once('=').unwrap_or((p, "on")) {
            ("server", v) => server = on_off("server", v)?,
            ("nowait" | "wait", _) => {}
            _ => bail!("{flag}: unsupported option '{p}'"),
        }
    }
    let address = if target == "none" {
        return Ok(None);
    } else if let Some(path) = target.strip_prefix("unix:") {
        SocketAddress::Unix(PathBuf::from(path))
    } else if let Some(addr) = target.strip_prefix("tcp:") {
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| anyhow!("{flag} tcp: expected tcp:[HOST]:PORT"))?;
        SocketAddress::Tcp(format!("{}:{port}", if host.is_empty() { "127.0.0.1" } else { host }))
    } else {
        bail!("{flag} {target}: supported are unix:PATH,server=on,wait=off, tcp:[HOST]:PORT,server=on,wait=off and none");
    };
    Ok(Some(ChardevConfig { id: id.into(), backend: ChardevBackend::Socket { address, server } }))
}

/// `-mon chardev=ID[,mode=readline|control][,pretty=on|off]`.
pub fn parse_mon(spec: &str) -> Result<MonitorConfig> {
    let (mut id, mut mode) = (None, MonitorMode::Readline);
    for p in spec.split(',').filter(|p| !p.is_empty()) {
        match p.split_once('=') {
            Some(("chardev", v)) => id = Some(v.to_string()),
            Some(("mode", "readline")) => mode = MonitorMode::Readline,
            Some(("mode", "control")) => mode = MonitorMode::Control,
            Some(("pretty", _)) => {}
            Some(("mode", m)) => bail!("-mon: mode={m}: expected readline or control"),
            _ => bail!("-mon: unsupported option '{p}'"),
        }
    }
    let chardev = id.ok_or_else(|| anyhow!("-mon: chardev=ID is required"))?;
    Ok(MonitorConfig { chardev, mode })
}
