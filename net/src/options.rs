//! QEMU's `-netdev TYPE,id=ID,...` options (QEMU 7.2's documented syntax) as plain data.
//!
//! Parsing checks everything that can be checked without touching the host (addresses,
//! ports, which options go together); [`crate::NetBackend::open`] does the rest.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::PathBuf;

/// Why a `-netdev` value was refused. Messages name the offending option or value; the
/// caller adds which `-netdev` it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("the backend type is missing (e.g. user,id=net0)")]
    MissingType,
    #[error("unsupported network backend type '{0}' (ferrite supports user, socket and tap)")]
    UnknownType(String),
    #[error("id= is missing")]
    MissingId,
    #[error("invalid id '{0}' (letters, digits, '-', '.', '_', starting with a letter)")]
    InvalidId(String),
    #[error("'{kind}' has no option '{option}' (its options: {valid})")]
    UnknownOption { kind: &'static str, option: String, valid: &'static str },
    #[error("{0}= needs a value")]
    MissingValue(String),
    #[error("{option}={value}: {expected}")]
    InvalidValue { option: String, value: String, expected: String },
    #[error("{what} is not supported by ferrite{hint}")]
    Unsupported { what: String, hint: &'static str },
    #[error("ferrite does not run network scripts ({option}={value}): give {option}=no and set the tap device up beforehand (ip tuntap add NAME mode tap user $USER; ip link set NAME up)")]
    Script { option: &'static str, value: String },
    /// Options that do not go together, or a required one that is missing.
    #[error("{0}")]
    Inconsistent(String),
}

/// One `-netdev` backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetdevOptions {
    User(UserOptions),
    Socket(SocketOptions),
    Tap(TapOptions),
}

impl NetdevOptions {
    /// The backend's `-netdev` type name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            NetdevOptions::User(_) => "user",
            NetdevOptions::Socket(_) => "socket",
            NetdevOptions::Tap(_) => "tap",
        }
    }
}

/// `-netdev user`: libslirp's user-mode network stack, with QEMU's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserOptions {
    /// `ipv4=` (default on).
    pub ipv4: bool,
    /// `net=ADDR[/MASK]`: the guest network (default 10.0.2.0/24).
    pub net: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// `host=`: the gateway, which is the host as the guest sees it (default x.x.x.2).
    pub host: Ipv4Addr,
    /// `dhcpstart=`: the first address the DHCP server hands out (default x.x.x.15).
    pub dhcpstart: Ipv4Addr,
    /// `dns=`: the DNS forwarder's address (default x.x.x.3).
    pub dns: Ipv4Addr,
    /// `ipv6=` (default on).
    pub ipv6: bool,
    /// `ipv6-net=ADDR[/LEN]` (or `ipv6-prefix=` and `ipv6-prefixlen=`): default fec0::/64.
    pub ipv6_prefix: Ipv6Addr,
    pub ipv6_prefix_len: u8,
    /// `ipv6-host=` (default PREFIX::2).
    pub ipv6_host: Ipv6Addr,
    /// `ipv6-dns=` (default PREFIX::3).
    pub ipv6_dns: Ipv6Addr,
    /// `restrict=on`: the guest reaches only the host-forwarded ports, nothing outside.
    pub restrict: bool,
    /// `hostname=`: the name the DHCP server gives the guest.
    pub hostname: Option<String>,
    /// `domainname=`: the domain the DHCP server advertises.
    pub domainname: Option<String>,
    /// `dnssearch=` (repeatable): DHCP's domain search list.
    pub dnssearch: Vec<String>,
    /// `tftp=DIR`: the built-in TFTP server's root.
    pub tftp: Option<PathBuf>,
    /// `tftp-server-name=`: advertised in DHCP (option 66).
    pub tftp_server_name: Option<String>,
    /// `bootfile=`: advertised in DHCP replies (PXE boot).
    pub bootfile: Option<String>,
    /// `hostfwd=` (repeatable), with defaults filled in.
    pub hostfwd: Vec<HostFwd>,
}

impl Default for UserOptions {
    fn default() -> Self {
        let prefix = Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0);
        UserOptions {
            ipv4: true,
            net: Ipv4Addr::new(10, 0, 2, 0),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            host: Ipv4Addr::new(10, 0, 2, 2),
            dhcpstart: Ipv4Addr::new(10, 0, 2, 15),
            dns: Ipv4Addr::new(10, 0, 2, 3),
            ipv6: true,
            ipv6_prefix: prefix,
            ipv6_prefix_len: 64,
            ipv6_host: Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 2),
            ipv6_dns: Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 3),
            restrict: false,
            hostname: None,
            domainname: None,
            dnssearch: Vec::new(),
            tftp: None,
            tftp_server_name: None,
            bootfile: None,
            hostfwd: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwdProtocol {
    Tcp,
    Udp,
}

/// `hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`: connections to the host
/// address go to the guest address. Defaults: tcp, 0.0.0.0 (every host address), the
/// first DHCP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFwd {
    pub protocol: FwdProtocol,
    pub host: SocketAddrV4,
    pub guest: SocketAddrV4,
}

impl fmt::Display for HostFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            FwdProtocol::Tcp => "tcp",
            FwdProtocol::Udp => "udp",
        };
        write!(f, "{proto}:{}-{}", self.host, self.guest)
    }
}

/// A `HOST:PORT` as written; the host is resolved when the backend opens. An empty host
/// means every local address (listen) or this host (connect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `-netdev socket`: frames over a host socket, to another emulator (QEMU or ferrite).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketOptions {
    /// `listen=[HOST]:PORT`: TCP, one peer at a time, each frame after a 4-byte big-endian length.
    Listen(HostPort),
    /// `connect=HOST:PORT`: TCP to a `listen` peer, reconnecting when it goes away.
    Connect(HostPort),
    /// `mcast=MADDR:PORT[,localaddr=ADDR]`: one frame per UDP datagram to a multicast group
    /// that every member (on this host, too) receives.
    Mcast { group: SocketAddrV4, localaddr: Option<Ipv4Addr> },
    /// `udp=HOST:PORT,localaddr=HOST:PORT`: one frame per unicast UDP datagram.
    Udp { remote: HostPort, local: HostPort },
}

/// `-netdev tap`: a host tap device (`ifname=`; the kernel picks `tapN` without it), with
/// `script=no,downscript=no` (also assumed when not given: ferrite runs no scripts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapOptions {
    pub ifname: Option<String>,
}


impl NetdevOptions {
    /// QEMU's `-netdev TYPE,id=ID,...` value (the part after -netdev); returns (id, options).
    /// `TYPE` may also be given as `type=TYPE`; `,,` is a comma inside a value.
    pub fn parse(spec: &str) -> Result<(String, NetdevOptions), crate::NetError> {
        Ok(Self::parse_options(spec)?)
    }

    fn parse_options(spec: &str) -> Result<(String, NetdevOptions), OptionError> {
        let mut kind = None;
        let mut id = None;
        let mut opts = Vec::new();
        for (i, item) in split_items(spec).into_iter().enumerate() {
            match item.split_once('=') {
                _ if item.is_empty() => {}
                None if i == 0 => kind = Some(item),
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("id", v)) => id = Some(v.to_string()),
                Some((k, v)) => opts.push(Opt { key: k.to_string(), value: Some(v.to_string()) }),
                None => opts.push(Opt { key: item, value: None }),
            }
        }
        let kind = kind.ok_or(OptionError::MissingType)?;
        if !matches!(kind.as_str(), "user" | "socket" | "tap") {
            return Err(OptionError::UnknownType(kind));
        }
        let id = id.ok_or(OptionError::MissingId)?;
        if !id_wellformed(&id) {
            return Err(OptionError::InvalidId(id));
        }
        let options = match kind.as_str() {
            "user" => NetdevOptions::User(parse_user(&opts)?),
            "socket" => NetdevOptions::Socket(parse_socket(&opts)?),
            _ => NetdevOptions::Tap(parse_tap(&opts)?),
        };
        Ok((id, options))
    }
}

/// Splits QEMU's option syntax at commas; `,,` is a literal comma inside a value.
fn split_items(spec: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' && chars.peek() != Some(&',') {
            items.push(String::new());
            continue;
        }
        if c == ',' {
            chars.next();
        }
        items.last_mut().expect("never empty").push(c);
    }
    items
}

/// QEMU's rule for ids: a letter, then letters, digits, '-', '.', '_'.
fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// One `key[=value]` item.
struct Opt {
    key: String,
    value: Option<String>,
}

impl Opt {
    fn invalid(&self, expected: impl Into<String>) -> OptionError {
        OptionError::InvalidValue {
            option: self.key.clone(),
            value: self.value.clone().unwrap_or_default(),
            expected: expected.into(),
        }
    }

    fn value(&self) -> Result<&str, OptionError> {
        self.value.as_deref().ok_or_else(|| OptionError::MissingValue(self.key.clone()))
    }

    /// A value that must not be empty.
    fn text(&self) -> Result<String, OptionError> {
        match self.value()? {
            "" => Err(self.invalid("must not be empty")),
            v => Ok(v.to_string()),
        }
    }

    /// QEMU's booleans; a bare `key` means on.
    fn flag(&self) -> Result<bool, OptionError> {
        match self.value.as_deref() {
            None | Some("on" | "yes" | "true" | "y") => Ok(true),
            Some("off" | "no" | "false" | "n") => Ok(false),
            Some(_) => Err(self.invalid("expected on or off")),
        }
    }

    fn number(&self) -> Result<u64, OptionError> {
        self.value()?.parse().map_err(|_| self.invalid("expected a number"))
    }

    fn ipv4(&self) -> Result<Ipv4Addr, OptionError> {
        self.value()?.parse().map_err(|_| self.invalid("expected an IPv4 address (e.g. 10.0.2.2)"))
    }

    fn ipv6(&self) -> Result<Ipv6Addr, OptionError> {
        self.value()?.parse().map_err(|_| self.invalid("expected an IPv6 address (e.g. fec0::2)"))
    }

    /// `HOST:PORT` or `[V6ADDR]:PORT`; an empty host is allowed.
    fn host_port(&self) -> Result<HostPort, OptionError> {
        let v = self.value()?;
        let (host, port) = v.rsplit_once(':').ok_or_else(|| self.invalid("expected HOST:PORT"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match port.parse::<u16>() {
            Ok(port) if port != 0 => Ok(HostPort { host: host.to_string(), port }),
            _ => Err(self.invalid(format!("'{port}' is not a port number (1-65535)"))),
        }
    }
}

const USER_OPTIONS: &str = "ipv4, net, host, dhcpstart, dns, ipv6, ipv6-net, ipv6-prefix, ipv6-prefixlen, \
     ipv6-host, ipv6-dns, restrict, hostname, domainname, dnssearch, tftp, tftp-server-name, bootfile, hostfwd";

fn parse_user(opts: &[Opt]) -> Result<UserOptions, OptionError> {
    let mut u = UserOptions::default();
    let (mut ipv4, mut ipv6) = (None, None);
    let (mut net, mut host, mut dhcpstart, mut dns) = (None, None, None, None);
    let (mut v6prefix, mut v6len, mut v6host, mut v6dns) = (None, None, None, None);
    let mut hostfwd = Vec::new();
    for o in opts {
        match o.key.as_str() {
            "ipv4" => ipv4 = Some(o.flag()?),
            "ipv6" => ipv6 = Some(o.flag()?),
            "net" => net = Some(parse_net(o)?),
            "host" => host = Some(o.ipv4()?),
            "dhcpstart" => dhcpstart = Some(o.ipv4()?),
            "dns" => dns = Some(o.ipv4()?),
            "ipv6-net" => {
                let v = o.value()?;
                let (addr, len) = v.split_once('/').map_or((v, None), |(a, l)| (a, Some(l)));
                v6prefix = Some(addr.parse().map_err(|_| o.invalid("expected an IPv6 prefix (e.g. fec0::/64)"))?);
                if let Some(len) = len {
                    v6len = Some(prefix_len6(o, len)?);
                }
            }
            "ipv6-prefix" => v6prefix = Some(o.ipv6()?),
            "ipv6-prefixlen" => v6len = Some(prefix_len6(o, o.value()?)?),
            "ipv6-host" => v6host = Some(o.ipv6()?),
            "ipv6-dns" => v6dns = Some(o.ipv6()?),
            "restrict" => u.restrict = o.flag()?,
            "hostname" => u.hostname = Some(o.text()?),
            "domainname" => u.domainname = Some(o.text()?),
            "dnssearch" => u.dnssearch.push(o.text()?),
            "tftp" => u.tftp = Some(PathBuf::from(o.text()?)),
            "tftp-server-name" => u.tftp_server_name = Some(o.text()?),
            "bootfile" => u.bootfile = Some(o.text()?),
            "hostfwd" => hostfwd.push(o),
            "guestfwd" => {
                return Err(OptionError::Unsupported {
                    what: "guestfwd=".into(),
                    hint: " (use hostfwd=, or a socket or tap backend)",
                })
            }
            "smb" | "smbserver" => {
                return Err(OptionError::Unsupported { what: format!("{}= (QEMU's built-in Samba share)", o.key), hint: "" })
            }
            _ => return Err(OptionError::UnknownOption { kind: "user", option: o.key.clone(), valid: USER_OPTIONS }),
        }
    }

    // QEMU's rule: with neither given both are on; `ipv4=on` alone means IPv4 only, and
    // `ipv6=on` alone IPv6 only.
    u.ipv4 = !(ipv4 == Some(false) || (ipv4.is_none() && ipv6 == Some(true)));
    u.ipv6 = !(ipv6 == Some(false) || (ipv6.is_none() && ipv4 == Some(true)));
    if !u.ipv4 && !u.ipv6 {
        return Err(OptionError::Inconsistent("IPv4 and IPv6 cannot both be off".into()));
    }
    let v4_given = net.is_some() || host.is_some() || dhcpstart.is_some() || dns.is_some() || !hostfwd.is_empty();
    if !u.ipv4 && v4_given {
        return Err(OptionError::Inconsistent("IPv4 is off, but net=, host=, dhcpstart=, dns= or hostfwd= is given".into()));
    }
    let v6_given = v6prefix.is_some() || v6len.is_some() || v6host.is_some() || v6dns.is_some();
    if !u.ipv6 && v6_given {
        return Err(OptionError::Inconsistent("IPv6 is off, but ipv6-net=, ipv6-host= or ipv6-dns= is given".into()));
    }

    if let Some((addr, mask)) = net {
        u.netmask = mask;
        u.net = Ipv4Addr::from(u32::from(addr) & u32::from(mask));
    }
    let base = u32::from(u.net);
    u.host = host.unwrap_or(Ipv4Addr::from(base | 2));
    u.dhcpstart = dhcpstart.unwrap_or(Ipv4Addr::from(base | 15));
    u.dns = dns.unwrap_or(Ipv4Addr::from(base | 3));
    check_in_net(&u, "host", u.host)?;
    check_in_net(&u, "dns", u.dns)?;
    check_in_net(&u, "dhcpstart", u.dhcpstart)?;
    if u.dns == u.host {
        return Err(OptionError::Inconsistent(format!("the DNS address {} must differ from the host address", u.dns)));
    }
    if u.dhcpstart == u.host || u.dhcpstart == u.dns {
        return Err(OptionError::Inconsistent(format!(
            "the DHCP start address {} must differ from the host and DNS addresses",
            u.dhcpstart
        )));
    }

    u.ipv6_prefix_len = v6len.unwrap_or(64);
    let mask6 = u128::MAX.checked_shl(128 - u32::from(u.ipv6_prefix_len)).unwrap_or(0);
    let prefix = u128::from(v6prefix.unwrap_or(u.ipv6_prefix)) & mask6;
    u.ipv6_prefix = Ipv6Addr::from(prefix);
    u.ipv6_host = v6host.unwrap_or(Ipv6Addr::from(prefix | 2));
    u.ipv6_dns = v6dns.unwrap_or(Ipv6Addr::from(prefix | 3));
    for (what, addr) in [("ipv6-host", u.ipv6_host), ("ipv6-dns", u.ipv6_dns)] {
        if u128::from(addr) & mask6 != prefix {
            return Err(OptionError::Inconsistent(format!(
                "the {what} address {addr} is outside the IPv6 network {}/{}",
                u.ipv6_prefix, u.ipv6_prefix_len
            )));
        }
    }

    for o in hostfwd {
        u.hostfwd.push(parse_hostfwd(o, u.dhcpstart)?);
    }
    Ok(u)
}

/// `net=ADDR[/MASK]` with MASK a prefix length or a dotted mask; without one, the classful
/// mask of the address (as QEMU does).
fn parse_net(o: &Opt) -> Result<(Ipv4Addr, Ipv4Addr), OptionError> {
    let v = o.value()?;
    let (addr, mask) = v.split_once('/').map_or((v, None), |(a, m)| (a, Some(m)));
    let addr: Ipv4Addr = addr.parse().map_err(|_| o.invalid("expected ADDR[/MASK] (e.g. 10.0.2.0/24)"))?;
    let bad_mask = || o.invalid("the mask must be a prefix length (1-30) or a netmask like 255.255.255.0");
    let mask = match mask {
        None => {
            let a = u32::from(addr);
            let len = match a >> 24 {
                0..=127 => 8,
                172 if a & 0x00f0_0000 == 0x0010_0000 => 12,
                128..=191 => 16,
                192 if a & 0x00ff_0000 == 0x00a8_0000 => 16,
                _ => 24,
            };
            Ipv4Addr::from(u32::MAX << (32 - len))
        }
        Some(m) if m.contains('.') => {
            let m: Ipv4Addr = m.parse().map_err(|_| bad_mask())?;
            let bits = u32::from(m);
            // Contiguous ones from the top, and room for a host part.
            if bits.leading_ones() + bits.trailing_zeros() != 32 || !(1..=30).contains(&bits.leading_ones()) {
                return Err(bad_mask());
            }
            m
        }
        Some(len) => match len.parse::<u32>() {
            Ok(len @ 1..=30) => Ipv4Addr::from(u32::MAX << (32 - len)),
            _ => return Err(bad_mask()),
        },
    };
    Ok((addr, mask))
}

fn prefix_len6(o: &Opt, len: &str) -> Result<u8, OptionError> {
    match len.parse::<u8>() {
        Ok(len @ 1..=126) => Ok(len),
        _ => Err(o.invalid(format!("'{len}' is not an IPv6 prefix length (1-126)"))),
    }
}

/// An address of the guest network must be inside it and neither its network nor its
/// broadcast address.
fn check_in_net(u: &UserOptions, what: &str, addr: Ipv4Addr) -> Result<(), OptionError> {
    let (a, net, mask) = (u32::from(addr), u32::from(u.net), u32::from(u.netmask));
    if a & mask != net || a == net || a == net | !mask {
        return Err(OptionError::Inconsistent(format!(
            "the {what} address {addr} is not a usable address of the network {}/{}",
            u.net,
            mask.leading_ones()
        )));
    }
    Ok(())
}

/// `[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`
fn parse_hostfwd(o: &Opt, default_guest: Ipv4Addr) -> Result<HostFwd, OptionError> {
    const FORM: &str = "expected [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (e.g. tcp::5555-:22)";
    let rule = o.value()?;
    let (host_side, guest_side) = rule.split_once('-').ok_or_else(|| o.invalid(FORM))?;
    let mut parts = host_side.splitn(3, ':');
    let (Some(proto), Some(haddr), Some(hport)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(o.invalid(FORM));
    };
    let (gaddr, gport) = guest_side.rsplit_once(':').ok_or_else(|| o.invalid(FORM))?;
    let protocol = match proto {
        "" | "tcp" => FwdProtocol::Tcp,
        "udp" => FwdProtocol::Udp,
        _ => return Err(o.invalid(format!("unknown protocol '{proto}' (tcp or udp)"))),
    };
    let addr = |s: &str, default: Ipv4Addr| -> Result<Ipv4Addr, OptionError> {
        if s.is_empty() {
            return Ok(default);
        }
        s.parse().map_err(|_| o.invalid(format!("'{s}' is not an IPv4 address")))
    };
    let port = |s: &str, side: &str| -> Result<u16, OptionError> {
        match s.parse::<u16>() {
            Ok(0) if side == "host" => Err(OptionError::Unsupported {
                what: format!("hostfwd={rule}: host port 0 (any free port)"),
                hint: " (it could not tell which port the host picked); give a port number",
            }),
            Ok(p) if p != 0 => Ok(p),
            _ => Err(o.invalid(format!("'{s}' is not a {side} port number (1-65535)"))),
        }
    };
    Ok(HostFwd {
        protocol,
        host: SocketAddrV4::new(addr(haddr, Ipv4Addr::UNSPECIFIED)?, port(hport, "host")?),
        guest: SocketAddrV4::new(addr(gaddr, default_guest)?, port(gport, "guest")?),
    })
}

const SOCKET_OPTIONS: &str = "listen, connect, mcast, udp, localaddr";

fn parse_socket(opts: &[Opt]) -> Result<SocketOptions, OptionError> {
    let mut mode: Option<&Opt> = None;
    let mut localaddr: Option<&Opt> = None;
    for o in opts {
        match o.key.as_str() {
            "listen" | "connect" | "mcast" | "udp" => {
                if let Some(m) = mode.filter(|m| m.key != o.key) {
                    return Err(OptionError::Inconsistent(format!(
                        "{}= and {}= do not go together (give exactly one of listen=, connect=, mcast= or udp=)",
                        m.key, o.key
                    )));
                }
                mode = Some(o);
            }
            "localaddr" => localaddr = Some(o),
            "fd" => {
                return Err(OptionError::Unsupported {
                    what: "fd= (a socket passed by the caller)".into(),
                    hint: "; use listen=, connect=, mcast= or udp=",
                })
            }
            _ => return Err(OptionError::UnknownOption { kind: "socket", option: o.key.clone(), valid: SOCKET_OPTIONS }),
        }
    }
    let mode = mode.ok_or_else(|| OptionError::Inconsistent("exactly one of listen=, connect=, mcast= or udp= is required".into()))?;
    match (mode.key.as_str(), localaddr) {
        ("listen" | "connect", Some(_)) => {
            Err(OptionError::Inconsistent(format!("localaddr= goes only with mcast= or udp=, not with {}=", mode.key)))
        }
        ("listen", None) => Ok(SocketOptions::Listen(mode.host_port()?)),
        ("connect", None) => Ok(SocketOptions::Connect(mode.host_port()?)),
        ("mcast", local) => {
            let group: SocketAddrV4 =
                mode.value()?.parse().map_err(|_| mode.invalid("expected MULTICASTADDR:PORT (e.g. 230.0.0.1:1234)"))?;
            if !group.ip().is_multicast() || group.port() == 0 {
                return Err(mode.invalid("expected a multicast address (224.0.0.0-239.255.255.255) and a port"));
            }
            Ok(SocketOptions::Mcast { group, localaddr: local.map(Opt::ipv4).transpose()? })
        }
        (_, None) => Err(OptionError::Inconsistent("udp= needs localaddr=HOST:PORT (the local end)".into())),
        (_, Some(local)) => {
            let remote = mode.host_port()?;
            // The local port may be 0 (any free port): the remote end learns it from the datagrams.
            let local = match local.value()?.rsplit_once(':') {
                Some((h, "0")) => HostPort { host: h.to_string(), port: 0 },
                _ => local.host_port()?,
            };
            Ok(SocketOptions::Udp { remote, local })
        }
    }
}

const TAP_OPTIONS: &str = "ifname, script, downscript, vnet_hdr, vhost, vhostforce, sndbuf, queues, poll-us";

fn parse_tap(opts: &[Opt]) -> Result<TapOptions, OptionError> {
    let mut tap = TapOptions { ifname: None };
    for o in opts {
        match o.key.as_str() {
            "ifname" => {
                let name = o.value()?;
                if name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\t', '\n']) {
                    return Err(o.invalid("expected an interface name of at most 15 characters"));
                }
                tap.ifname = (!name.is_empty()).then(|| name.to_string());
            }
            "script" | "downscript" => {
                let v = o.value()?;
                if !matches!(v, "no" | "") {
                    let option = if o.key == "script" { "script" } else { "downscript" };
                    return Err(OptionError::Script { option, value: v.to_string() });
                }
            }
            "vnet_hdr" | "vhost" | "vhostforce" => {
                if o.flag()? {
                    return Err(OptionError::Unsupported { what: format!("{}=on", o.key), hint: " (use the default, off)" });
                }
            }
            // The socket send buffer limit and busy polling are host tuning QEMU offers;
            // accepted for compatible command lines, with no effect here.
            "sndbuf" | "poll-us" => {
                o.number()?;
            }
            "queues" => {
                if o.number()? != 1 {
                    return Err(OptionError::Unsupported { what: "queues= other than 1 (multiqueue tap)".into(), hint: "" });
                }
            }
            "fd" | "fds" | "vhostfd" | "vhostfds" | "helper" | "br" => {
                return Err(OptionError::Unsupported {
                    what: format!("{}=", o.key),
                    hint: "; use ifname= with a tap device ferrite may create or attach to",
                })
            }
            _ => return Err(OptionError::UnknownOption { kind: "tap", option: o.key.clone(), valid: TAP_OPTIONS }),
        }
    }
    Ok(tap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<(String, NetdevOptions), OptionError> {
        NetdevOptions::parse_options(spec)
    }

    fn user(spec: &str) -> UserOptions {
        match parse(spec) {
            Ok((_, NetdevOptions::User(u))) => u,
            other => panic!("{spec}: {other:?}"),
        }
    }

    fn err(spec: &str) -> String {
        match parse(spec) {
            Err(e) => e.to_string(),
            Ok(o) => panic!("{spec}: accepted as {o:?}"),
        }
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn user_defaults_are_qemus() {
        let (id, opts) = parse("user,id=net0").unwrap();
        assert_eq!(id, "net0");
        let NetdevOptions::User(u) = opts else { panic!() };
        assert_eq!(u, UserOptions::default());
        assert_eq!((u.net, u.netmask), (v4("10.0.2.0"), v4("255.255.255.0")));
        assert_eq!((u.host, u.dhcpstart, u.dns), (v4("10.0.2.2"), v4("10.0.2.15"), v4("10.0.2.3")));
        assert!(u.ipv4 && u.ipv6 && !u.restrict);
        assert_eq!(u.ipv6_prefix.to_string(), "fec0::");
        assert_eq!((u.ipv6_prefix_len, u.ipv6_host.to_string(), u.ipv6_dns.to_string()), (64, "fec0::2".into(), "fec0::3".into()));
        // type= and id= in any position.
        assert_eq!(parse("id=n1,type=user").unwrap(), ("n1".into(), NetdevOptions::User(UserOptions::default())));
    }

    #[test]
    fn user_addresses_follow_net() {
        let u = user("user,id=a,net=192.168.76.0/24");
        assert_eq!((u.host, u.dhcpstart, u.dns), (v4("192.168.76.2"), v4("192.168.76.15"), v4("192.168.76.3")));
        let u = user("user,id=a,net=172.20.0.0/255.255.0.0,host=172.20.0.1,dhcpstart=172.20.1.10,dns=172.20.0.53");
        assert_eq!(u.netmask, v4("255.255.0.0"));
        assert_eq!((u.host, u.dhcpstart, u.dns), (v4("172.20.0.1"), v4("172.20.1.10"), v4("172.20.0.53")));
        // Host bits in net= are masked off; no mask: the classful one.
        assert_eq!(user("user,id=a,net=10.0.3.7/24").net, v4("10.0.3.0"));
        assert_eq!(user("user,id=a,net=10.1.0.0").netmask, v4("255.0.0.0"));
        assert_eq!(user("user,id=a,net=192.168.5.0").netmask, v4("255.255.0.0"));
        assert_eq!(user("user,id=a,net=172.16.0.0").netmask, v4("255.240.0.0"));
        let u = user("user,id=a,ipv6-net=fd00:1::/48,restrict=on,hostname=guest,domainname=example.org,dnssearch=a.org,dnssearch=b.org");
        assert_eq!((u.ipv6_prefix.to_string(), u.ipv6_prefix_len), ("fd00:1::".into(), 48));
        assert_eq!(u.ipv6_host.to_string(), "fd00:1::2");
        assert!(u.restrict);
        assert_eq!(u.hostname.as_deref(), Some("guest"));
        assert_eq!(u.domainname.as_deref(), Some("example.org"));
        assert_eq!(u.dnssearch, ["a.org", "b.org"]);
        let u = user("user,id=a,ipv6-prefix=fd00::,ipv6-prefixlen=56,ipv6-host=fd00::1,ipv6-dns=fd00::53,tftp=/srv/tftp,bootfile=pxelinux.0");
        assert_eq!((u.ipv6_prefix_len, u.ipv6_host.to_string(), u.ipv6_dns.to_string()), (56, "fd00::1".into(), "fd00::53".into()));
        assert_eq!(u.tftp, Some(PathBuf::from("/srv/tftp")));
        assert!(!user("user,id=a,restrict=off").restrict);
        assert!(user("user,id=a,restrict").restrict);
        // A comma inside a value is doubled.
        assert_eq!(user("user,id=a,hostname=a,,b").hostname.as_deref(), Some("a,b"));
    }

    #[test]
    fn ipv4_ipv6_switches_follow_qemu() {
        let both = |s| {
            let u = user(s);
            (u.ipv4, u.ipv6)
        };
        assert_eq!(both("user,id=a"), (true, true));
        assert_eq!(both("user,id=a,ipv4=on"), (true, false));
        assert_eq!(both("user,id=a,ipv6=on"), (false, true));
        assert_eq!(both("user,id=a,ipv4=on,ipv6=on"), (true, true));
        assert_eq!(both("user,id=a,ipv6=off"), (true, false));
        assert_eq!(both("user,id=a,ipv4=off"), (false, true));
        assert!(err("user,id=a,ipv4=off,ipv6=off").contains("both be off"));
        assert!(err("user,id=a,ipv4=off,net=10.0.3.0/24").contains("IPv4 is off"));
        assert!(err("user,id=a,ipv6=off,ipv6-host=fec0::5").contains("IPv6 is off"));
    }

    #[test]
    fn hostfwd_forms() {
        let fwd = |rule: &str| user(&format!("user,id=a,hostfwd={rule}")).hostfwd[0].clone();
        let tcp = FwdProtocol::Tcp;
        assert_eq!(fwd("tcp::5555-:22"), HostFwd { protocol: tcp, host: sa("0.0.0.0:5555"), guest: sa("10.0.2.15:22") });
        assert_eq!(fwd("::5555-:22"), HostFwd { protocol: tcp, host: sa("0.0.0.0:5555"), guest: sa("10.0.2.15:22") });
        assert_eq!(
            fwd("tcp:127.0.0.1:8080-10.0.2.20:80"),
            HostFwd { protocol: tcp, host: sa("127.0.0.1:8080"), guest: sa("10.0.2.20:80") }
        );
        assert_eq!(
            fwd("udp:127.0.0.1:5353-:53"),
            HostFwd { protocol: FwdProtocol::Udp, host: sa("127.0.0.1:5353"), guest: sa("10.0.2.15:53") }
        );
        assert_eq!(fwd("tcp::1-:2").to_string(), "tcp:0.0.0.0:1-10.0.2.15:2");
        // The default guest address follows dhcpstart, whatever the option order.
        let u = user("user,id=a,hostfwd=tcp::2222-:22,net=192.168.9.0/24,hostfwd=udp::6000-:6000");
        assert_eq!(u.hostfwd.len(), 2);
        assert_eq!(u.hostfwd[0].guest, sa("192.168.9.15:22"));
        assert_eq!(u.hostfwd[1].protocol, FwdProtocol::Udp);

        for bad in [
            "5555-:22",
            "tcp:5555-:22",
            "tcp::5555",
            "tcp::5555-22",
            "sctp::5555-:22",
            "tcp::70000-:22",
            "tcp::5555-:0",
            "tcp:localhost:5555-:22",
            "tcp::x-:22",
        ] {
            let e = err(&format!("user,id=a,hostfwd={bad}"));
            assert!(e.starts_with("hostfwd="), "{bad}: {e}");
        }
        assert!(err("user,id=a,hostfwd=tcp::0-:22").contains("host port 0"));
        assert_eq!(err("user,id=a,hostfwd"), "hostfwd= needs a value");
    }

    #[test]
    fn user_rejections_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("user,id=a,foo=1", "'user' has no option 'foo'"),
            ("user,id=a,guestfwd=tcp:10.0.2.100:1234-cmd:nc x 1", "guestfwd= is not supported"),
            ("user,id=a,smb=/tmp", "smb="),
            ("user,id=a,net=10.0.2.0/33", "net=10.0.2.0/33"),
            ("user,id=a,net=10.0.2.0/255.0.255.0", "net="),
            ("user,id=a,net=banana", "net=banana"),
            ("user,id=a,host=10.0.3.2", "host address 10.0.3.2"),
            ("user,id=a,dns=10.0.2.255", "dns address 10.0.2.255"),
            ("user,id=a,dhcpstart=10.0.2.2", "must differ"),
            ("user,id=a,dns=10.0.2.2", "must differ"),
            ("user,id=a,restrict=maybe", "restrict=maybe: expected on or off"),
            ("user,id=a,hostname=", "hostname=: must not be empty"),
            ("user,id=a,ipv6-net=fec0::/127", "ipv6-net"),
            ("user,id=a,ipv6-host=fd00::2", "outside the IPv6 network"),
            ("user,id=a,net", "net= needs a value"),
        ];
        for (spec, want) in cases {
            let e = err(spec);
            assert!(e.contains(want), "{spec}: '{e}' lacks '{want}'");
        }
    }

    #[test]
    fn types_and_ids() {
        assert_eq!(err("vde,id=a"), "unsupported network backend type 'vde' (ferrite supports user, socket and tap)");
        assert!(err("bridge,id=a,br=br0").contains("'bridge'"));
        assert!(err("type=l2tpv3,id=a").contains("'l2tpv3'"));
        assert_eq!(err("id=a"), "the backend type is missing (e.g. user,id=net0)");
        assert_eq!(err(""), "the backend type is missing (e.g. user,id=net0)");
        assert_eq!(err("user"), "id= is missing");
        assert!(err("user,id=0bad").contains("invalid id '0bad'"));
        assert_eq!(parse("user,id=my-net.0_x").unwrap().0, "my-net.0_x");
    }

    #[test]
    fn socket_forms() {
        let sock = |s: &str| match parse(s) {
            Ok((_, NetdevOptions::Socket(o))) => o,
            other => panic!("{s}: {other:?}"),
        };
        let hp = |h: &str, p| HostPort { host: h.into(), port: p };
        assert_eq!(sock("socket,id=s,listen=:1234"), SocketOptions::Listen(hp("", 1234)));
        assert_eq!(sock("socket,id=s,listen=127.0.0.1:1234"), SocketOptions::Listen(hp("127.0.0.1", 1234)));
        assert_eq!(sock("socket,id=s,connect=localhost:1234"), SocketOptions::Connect(hp("localhost", 1234)));
        assert_eq!(sock("socket,id=s,connect=[::1]:1234"), SocketOptions::Connect(hp("::1", 1234)));
        assert_eq!(hp("::1", 1234).to_string(), "[::1]:1234");
        assert_eq!(
            sock("socket,id=s,mcast=230.0.0.1:1234"),
            SocketOptions::Mcast { group: sa("230.0.0.1:1234"), localaddr: None }
        );
        assert_eq!(
            sock("socket,id=s,mcast=230.0.0.1:1234,localaddr=127.0.0.1"),
            SocketOptions::Mcast { group: sa("230.0.0.1:1234"), localaddr: Some(v4("127.0.0.1")) }
        );
        assert_eq!(
            sock("socket,id=s,udp=10.1.1.1:5000,localaddr=:5001"),
            SocketOptions::Udp { remote: hp("10.1.1.1", 5000), local: hp("", 5001) }
        );
        assert_eq!(
            sock("socket,id=s,udp=10.1.1.1:5000,localaddr=0.0.0.0:0"),
            SocketOptions::Udp { remote: hp("10.1.1.1", 5000), local: hp("0.0.0.0", 0) }
        );
        let cases: &[(&str, &str)] = &[
            ("socket,id=s", "exactly one of listen=, connect=, mcast= or udp= is required"),
            ("socket,id=s,listen=:1,connect=h:2", "listen= and connect= do not go together"),
            ("socket,id=s,listen=1234", "listen=1234: expected HOST:PORT"),
            ("socket,id=s,listen=:0", "not a port number"),
            ("socket,id=s,connect=h:99999", "not a port number"),
            ("socket,id=s,mcast=10.0.0.1:1234", "multicast address"),
            ("socket,id=s,mcast=230.0.0.1", "MULTICASTADDR:PORT"),
            ("socket,id=s,udp=h:1", "udp= needs localaddr="),
            ("socket,id=s,connect=h:1,localaddr=:2", "localaddr= goes only with mcast= or udp="),
            ("socket,id=s,fd=3", "fd= (a socket passed by the caller) is not supported"),
            ("socket,id=s,listen=:1,reconnect=1", "'socket' has no option 'reconnect'"),
        ];
        for (spec, want) in cases {
            let e = err(spec);
            assert!(e.contains(want), "{spec}: '{e}' lacks '{want}'");
        }
    }

    #[test]
    fn tap_forms() {
        let tap = |s: &str| match parse(s) {
            Ok((_, NetdevOptions::Tap(o))) => o,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(tap("tap,id=t,ifname=tap0,script=no,downscript=no").ifname.as_deref(), Some("tap0"));
        assert_eq!(tap("tap,id=t").ifname, None);
        assert_eq!(tap("tap,id=t,ifname=tap1,vnet_hdr=off,vhost=off,sndbuf=1048576,queues=1").ifname.as_deref(), Some("tap1"));
        let e = err("tap,id=t,ifname=tap0,script=/etc/qemu-ifup");
        assert!(e.starts_with("ferrite does not run network scripts (script=/etc/qemu-ifup)"), "{e}");
        assert!(err("tap,id=t,downscript=/etc/qemu-ifdown").contains("(downscript=/etc/qemu-ifdown)"));
        assert!(err("tap,id=t,ifname=averyveryverylongname").contains("at most 15"));
        assert!(err("tap,id=t,vnet_hdr=on").contains("vnet_hdr=on is not supported"));
        assert!(err("tap,id=t,vhost=on").contains("vhost=on is not supported"));
        assert!(err("tap,id=t,fd=3").contains("fd= is not supported"));
        assert!(err("tap,id=t,br=br0").contains("br= is not supported"));
        assert!(err("tap,id=t,queues=4").contains("multiqueue"));
        assert!(err("tap,id=t,mode=x").contains("'tap' has no option 'mode'"));
    }
}
