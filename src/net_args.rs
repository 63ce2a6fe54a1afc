//! QEMU's network options: `-netdev`, `-device e1000`, the `-nic` shorthand, the legacy
//! `-net nic` / `-net BACKEND` pair, and the pc machine's default card (an e1000 on user
//! networking unless `-nodefaults` or any network option is given).

use anyhow::{anyhow, bail, Result};
use ferrite_machine::config::{default_mac, NetdevConfig, NicConfig, NicModel};
use crate::virtio_args::{VirtioPciProps, TRANSPORT_OPTIONS};
use ferrite_net::NetdevOptions;

/// One card as written, before its backend is looked up.
#[derive(Debug)]
struct CardSpec {
    model: NicModel,
    mac: Option<[u8; 6]>,
    addr: Option<(u8, u8)>,
    netdev: Option<String>,
}

/// Collects the network options in command-line order, then resolves them.
#[derive(Debug, Default)]
pub struct Network {
    netdevs: Vec<NetdevConfig>,
    cards: Vec<CardSpec>,
    /// `-nic`, `-net` or `-netdev` was given: no default card.
    configured: bool,
    /// A `-net nic` waiting for the `-net` backend of the legacy hub.
    legacy_nic: Option<usize>,
    legacy_backend: Option<String>,
}

fn model(name: &str) -> Result<NicModel> {
    match name {
        "e1000" | "e1000-82540em" => Ok(NicModel::E1000),
        "virtio-net-pci" | "virtio-net" | "virtio" => Ok(NicModel::VirtioNet(Default::default())),
        other => bail!("unsupported network card model '{other}' (supported: e1000, virtio-net-pci)"),
    }
}

/// `52:54:00:12:34:56` (or with dashes); a multicast address cannot be a card's own.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split([':', '-'])
        .map(|b| if b.len() == 2 { u8::from_str_radix(b, 16).ok() } else { None })
        .collect::<Option<_>>()
        .filter(|v: &Vec<u8>| v.len() == 6)
        .ok_or_else(|| anyhow!("invalid MAC address '{s}' (expected six hex bytes, e.g. 52:54:00:12:34:56)"))?;
    if bytes[0] & 1 != 0 {
        bail!("MAC address '{s}' is a multicast address; a card needs a unicast one");
    }
    Ok(bytes.try_into().expect("six bytes"))
}

fn pci_addr(v: &str) -> Result<(u8, u8)> {
    crate::cli::parse_pci_addr(v)
}

impl Network {
    /// `-netdev TYPE,id=ID,...`
    pub fn netdev(&mut self, spec: &str) -> Result<()> {
        self.configured = true;
        let (id, options) = NetdevOptions::parse(spec).map_err(|e| anyhow!("-netdev {spec}: {e}"))?;
        if self.netdevs.iter().any(|n| n.id == id) {
            bail!("-netdev: duplicate id '{id}'");
        }
        self.netdevs.push(NetdevConfig { id, options });
        Ok(())
    }

    /// `-device e1000|virtio-net-pci,netdev=ID[,mac=MAC][,addr=SLOT.FN][,id=NAME]` (and the
    /// virtio transport options); `false` if `spec` is not a network card.
    pub fn device(&mut self, spec: &str) -> Result<bool> {
        let mut parts = spec.split(',');
        let name = parts.next().unwrap_or("");
        let Ok(model) = model(name) else { return Ok(false) };
        let mut card = CardSpec { model, mac: None, addr: None, netdev: None };
        let mut virtio = VirtioPciProps::default();
        for p in parts.filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match (k, model) {
                ("netdev", _) => card.netdev = Some(v.to_string()),
                ("mac", _) => card.mac = Some(parse_mac(v)?),
                // Accepted as QEMU users write them; no effect here.
                ("romfile" | "bootindex", _) => {}
                (_, NicModel::VirtioNet(_)) if virtio.take(k, v)? => {}
                ("addr", NicModel::E1000) => card.addr = Some(pci_addr(v)?),
                ("id", NicModel::E1000) => {}
                (_, NicModel::E1000) => bail!("-device {name}: unsupported option '{p}' (netdev=, mac=, addr=, id=)"),
                (_, NicModel::VirtioNet(_)) => bail!("-device {name}: unsupported option '{p}' (netdev=, mac=, {TRANSPORT_OPTIONS})"),
            }
        }
        if let NicModel::VirtioNet(_) = model {
            virtio.check(name)?;
            card.model = NicModel::VirtioNet(virtio.transport);
            card.addr = virtio.addr;
        }
        self.cards.push(card);
        Ok(true)
    }

    /// `-nic none` or `-nic [TYPE][,model=MODEL][,mac=MAC][,BACKEND OPTIONS]`: a card and its
    /// backend in one.
    pub fn nic(&mut self, spec: &str) -> Result<()> {
        self.configured = true;
        if spec == "none" {
            return Ok(());
        }
        let mut card = CardSpec { model: NicModel::E1000, mac: None, addr: None, netdev: None };
        let mut backend = Vec::new();
        for (i, p) in spec.split(',').enumerate() {
            match p.split_once('=') {
                Some(("model", v)) => card.model = model(v)?,
                Some(("mac", v)) => card.mac = Some(parse_mac(v)?),
                Some(("id", _)) => bail!("-nic: id= is not accepted (use -netdev and -device)"),
                _ if i == 0 && p.is_empty() => backend.push("user"),
                _ => backend.push(p),
            }
        }
        let id = format!("nic{}", self.cards.len());
        let mut backend_spec = vec![backend[0].to_string(), format!("id={id}")];
        backend_spec.extend(backend[1..].iter().map(|s| s.to_string()));
        self.netdev(&backend_spec.join(","))?;
        card.netdev = Some(id);
        self.cards.push(card);
        Ok(())
    }

    /// Legacy `-net nic[,model=][,macaddr=]`, `-net TYPE[,OPTIONS]` and `-net none`: one card
    /// and one backend on QEMU's hub 0.
    pub fn net(&mut self, spec: &str) -> Result<()> {
        self.configured = true;
        let (kind, rest) = spec.split_once(',').unwrap_or((spec, ""));
        match kind {
            "none" => Ok(()),
            "nic" => {
                if self.legacy_nic.is_some() {
                    bail!("-net nic: ferrite connects one -net nic to one -net backend; use -netdev and -device for more");
                }
                let mut card = CardSpec { model: NicModel::E1000, mac: None, addr: None, netdev: None };
                for p in rest.split(',').filter(|p| !p.is_empty()) {
                    match p.split_once('=') {
                        Some(("model", v)) => card.model = model(v)?,
                        Some(("macaddr", v)) => card.mac = Some(parse_mac(v)?),
                        Some(("addr", v)) => card.addr = Some(pci_addr(v)?),
                        Some(("netdev", v)) => card.netdev = Some(v.to_string()),
                        Some(("vlan" | "name" | "id", _)) => {}
                        _ => bail!("-net nic: unsupported option '{p}'"),
                    }
                }
                self.legacy_nic = Some(self.cards.len());
                self.cards.push(card);
                Ok(())
            }
            backend => {
                if self.legacy_backend.is_some() {
                    bail!("-net {backend}: ferrite connects one -net nic to one -net backend; use -netdev and -device for more");
                }
                let rest: Vec<&str> = rest.split(',').filter(|p| !p.is_empty() && !p.starts_with("vlan=") && !p.starts_with("name=")).collect();
                let id = "hub0".to_string();
                let spec = [backend, &format!("id={id}")].into_iter().chain(rest).collect::<Vec<_>>().join(",");
                self.netdev(&spec)?;
                self.legacy_backend = Some(id);
                Ok(())
            }
        }
    }

    /// The cards with their backends and MAC addresses, plus QEMU's default card.
    pub fn resolve(mut self, defaults: bool) -> Result<Vec<NicConfig>> {
        if let (Some(card), Some(backend)) = (self.legacy_nic, self.legacy_backend.take()) {
            self.cards[card].netdev.get_or_insert(backend);
        } else if let Some(id) = self.legacy_backend.take() {
            // As QEMU: a -net backend without a -net nic has no card to serve.
            eprintln!("ferrite: warning: -net backend '{id}' has no -net nic; it is not connected");
        }
        if !self.configured && defaults {
            // The machine's own card, created before any -device card, as QEMU does.
            self.netdev("user,id=net0")?;
            self.cards.insert(0, CardSpec { model: NicModel::E1000, mac: None, addr: None, netdev: Some("net0".into()) });
        }
        let mut auto_mac = 0u8;
        let mut used = Vec::new();
        let mut nics = Vec::new();
        for card in self.cards {
            let netdev = match &card.netdev {
                Some(id) => {
                    if used.contains(id) {
                        bail!("-netdev {id} is used by two cards; each card needs its own");
                    }
                    let n = self.netdevs.iter().find(|n| &n.id == id).ok_or_else(|| anyhow!("no -netdev with id={id}"))?;
                    used.push(id.clone());
                    Some(n.clone())
                }
                None => {
                    eprintln!("ferrite: warning: a network card has no netdev; its frames go nowhere");
                    None
                }
            };
            let mac = card.mac.unwrap_or_else(|| {
                auto_mac += 1;
                default_mac(auto_mac - 1)
            });
            nics.push(NicConfig { model: card.model, mac, addr: card.addr, netdev });
        }
        for n in self.netdevs.iter().filter(|n| !used.contains(&n.id)) {
            eprintln!("ferrite: warning: -netdev {} is not used by any card", n.id);
        }
        Ok(nics)
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::parse;
    use ferrite_machine::config::{NicConfig, NicModel};
    use ferrite_net::NetdevOptions;

    fn nics(args: &[&str]) -> anyhow::Result<Vec<NicConfig>> {
        parse(std::iter::once("ferrite").chain(args.iter().copied()).map(String::from)).map(|c| c.nics)
    }

    fn kind(n: &NicConfig) -> &'static str {
        match n.netdev.as_ref().map(|d| &d.options) {
            Some(NetdevOptions::User(_)) => "user",
            Some(NetdevOptions::Socket(_)) => "socket",
            Some(NetdevOptions::Tap(_)) => "tap",
            None => "none",
        }
    }

    #[test]
    fn default_card_as_qemu_gives_it() {
        let d = nics(&[]).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].model, d[0].mac, kind(&d[0])), (NicModel::E1000, [0x52, 0x54, 0, 0x12, 0x34, 0x56], "user"));
        for none in [&["-nodefaults"][..], &["-nic", "none"], &["-net", "none"]] {
            assert!(nics(none).unwrap().is_empty(), "{none:?}");
        }
    }

    #[test]
    fn spellings() {
        let n = nics(&["-nic", "user,hostfwd=tcp::2222-:22,model=e1000,mac=52:54:00:00:00:07"]).unwrap();
        assert_eq!((n.len(), n[0].mac[5], kind(&n[0])), (1, 7, "user"));
        // As QEMU creates them: the -nic cards during machine set-up, -device cards after.
        let n = nics(&["-netdev", "socket,id=s,listen=:5555", "-device", "e1000,netdev=s,addr=4", "-nic", "user"]).unwrap();
        assert_eq!((kind(&n[0]), kind(&n[1]), n[1].addr), ("user", "socket", Some((4, 0))));
        // Automatic MACs count up from QEMU's first one.
        assert_eq!((n[0].mac[5], n[1].mac[5]), (0x56, 0x57));
        let n = nics(&["-net", "nic,model=e1000,macaddr=52:54:00:aa:bb:cc", "-net", "user,hostfwd=tcp::8080-:80"]).unwrap();
        assert_eq!((n.len(), n[0].mac[3], kind(&n[0])), (1, 0xaa, "user"));
        // A card with no backend still exists; as in QEMU, -device alone keeps the default card.
        let n = nics(&["-device", "e1000"]).unwrap();
        assert_eq!((n.len(), kind(&n[0]), kind(&n[1])), (2, "user", "none"));
        // virtio-net-pci, as -nic model= and as -device with its transport options.
        let n = nics(&["-nic", "user,model=virtio-net-pci", "-netdev", "user,id=u", "-device", "virtio-net-pci,netdev=u,addr=5,disable-legacy=on,id=v"]).unwrap();
        let modern = ferrite_machine::config::VirtioTransport { disable_legacy: true, ..Default::default() };
        assert_eq!((n[0].model, n[1].model, n[1].addr), (NicModel::VirtioNet(Default::default()), NicModel::VirtioNet(modern), Some((5, 0))));
    }

    #[test]
    fn bad_network_options() {
        for (args, says) in [
            (&["-netdev", "user,id=a", "-netdev", "user,id=a"][..], "duplicate"),
            (&["-netdev", "user,id=a", "-device", "e1000,netdev=a", "-device", "e1000,netdev=a"], "two cards"),
            (&["-device", "e1000,netdev=nope"], "nope"),
            (&["-device", "e1000,speed=10"], "speed"),
            (&["-nic", "user,model=rtl8139"], "rtl8139"),
            (&["-device", "virtio-net-pci,disable-legacy=on,disable-modern=on"], "no interface"),
            (&["-device", "virtio-net-pci,speed=10"], "speed"),
            (&["-nic", "user,mac=52:54:00:00:00"], "MAC"),
            (&["-nic", "user,id=x"], "id="),
            (&["-net", "nic", "-net", "nic"], "one -net nic"),
            (&["-netdev", "bridge,id=b"], "bridge"),
        ] {
            let msg = format!("{:#}", nics(args).expect_err(&format!("{args:?} must be refused")));
            assert!(msg.contains(says), "{args:?}: '{msg}' does not mention '{says}'");
        }
    }
}
