//! Register offsets, bits and descriptor layouts of the 82540EM, from the PCI/PCI-X Family of
//! Gigabit Ethernet Controllers Software Developer's Manual (8254x SDM): chapter 13 for the
//! registers, chapter 3 for the descriptors, chapter 5 for the EEPROM, chapter 8 for MDIC.
//! Offsets are byte offsets into BAR0.

// General registers (SDM 13.4).
/// Device Control (13.4.1).
pub const CTRL: u32 = 0x0000;
/// Device Status, read-only (13.4.2).
pub const STATUS: u32 = 0x0008;
/// EEPROM/Flash Control (13.4.3).
pub const EECD: u32 = 0x0010;
/// EEPROM Read (13.4.4).
pub const EERD: u32 = 0x0014;
/// Extended Device Control (13.4.6).
pub const CTRL_EXT: u32 = 0x0018;
/// Flash Access (13.4.5).
pub const FLA: u32 = 0x001C;
/// MDI Control (13.4.7).
pub const MDIC: u32 = 0x0020;
/// Flow Control Address Low/High and Type (13.4.8-13.4.9).
pub const FCAL: u32 = 0x0028;
pub const FCAH: u32 = 0x002C;
pub const FCT: u32 = 0x0030;
/// VLAN Ether Type (13.4.10).
pub const VET: u32 = 0x0038;
/// Interrupt Cause Read, Throttling, Cause Set, Mask Set/Read, Mask Clear (13.4.17-13.4.21).
pub const ICR: u32 = 0x00C0;
pub const ITR: u32 = 0x00C4;
pub const ICS: u32 = 0x00C8;
pub const IMS: u32 = 0x00D0;
pub const IMC: u32 = 0x00D8;
/// Receive Control (13.4.22).
pub const RCTL: u32 = 0x0100;
/// Flow Control Transmit Timer Value (13.4.11).
pub const FCTTV: u32 = 0x0170;
/// Transmit/Receive Configuration Word (TBI mode only; storage here).
pub const TXCW: u32 = 0x0178;
pub const RXCW: u32 = 0x0180;
/// Transmit Control (13.4.33).
pub const TCTL: u32 = 0x0400;
/// Transmit IPG (13.4.34).
pub const TIPG: u32 = 0x0410;
/// Adaptive IFS Throttle (13.4.35).
pub const AIT: u32 = 0x0458;
/// LED Control (13.4.13).
pub const LEDCTL: u32 = 0x0E00;
/// Packet Buffer Allocation (13.4.14).
pub const PBA: u32 = 0x1000;
/// Flow Control Receive Threshold Low/High (13.4.23-13.4.24).
pub const FCRTL: u32 = 0x2160;
pub const FCRTH: u32 = 0x2168;
/// Receive descriptor ring (13.4.25-13.4.32).
pub const RDBAL: u32 = 0x2800;
pub const RDBAH: u32 = 0x2804;
pub const RDLEN: u32 = 0x2808;
pub const RDH: u32 = 0x2810;
pub const RDT: u32 = 0x2818;
pub const RDTR: u32 = 0x2820;
pub const RXDCTL: u32 = 0x2828;
pub const RADV: u32 = 0x282C;
/// Receive Small Packet Detect Interrupt (13.4.32).
pub const RSRPD: u32 = 0x2C00;
/// Transmit DMA Control (13.4.36).
pub const TXDMAC: u32 = 0x3000;
/// Transmit descriptor ring (13.4.37-13.4.44).
pub const TDBAL: u32 = 0x3800;
pub const TDBAH: u32 = 0x3804;
pub const TDLEN: u32 = 0x3808;
pub const TDH: u32 = 0x3810;
pub const TDT: u32 = 0x3818;
pub const TIDV: u32 = 0x3820;
pub const TXDCTL: u32 = 0x3828;
pub const TADV: u32 = 0x382C;
/// TCP Segmentation Pad and Minimum Threshold (13.4.45).
pub const TSPMT: u32 = 0x3830;
/// Receive/transmit data FIFO head/tail registers (diagnostics; storage here).
pub const RDFH: u32 = 0x2410;
pub const RDFPC: u32 = 0x2430;
pub const TDFH: u32 = 0x3410;
pub const TDFPC: u32 = 0x3430;
/// Statistics registers, all read-to-clear (13.7).
pub const STATS_BASE: u32 = 0x4000;
pub const STATS_END: u32 = 0x4100;
/// Receive Checksum Control (13.4.27).
pub const RXCSUM: u32 = 0x5000;
/// Multicast Table Array, 128 dwords (13.5.1).
pub const MTA: u32 = 0x5200;
pub const MTA_END: u32 = 0x5400;
/// Receive Address Low/High pairs, 16 entries (13.5.2-13.5.3).
pub const RA: u32 = 0x5400;
pub const RA_END: u32 = 0x5480;
/// VLAN Filter Table Array, 128 dwords (13.5.4).
pub const VFTA: u32 = 0x5600;
pub const VFTA_END: u32 = 0x5800;
/// Wakeup Control, Filter Control, Status (13.6.1-13.6.3).
pub const WUC: u32 = 0x5800;
pub const WUFC: u32 = 0x5808;
pub const WUS: u32 = 0x5810;
/// Management Control (13.4.x).
pub const MANC: u32 = 0x5820;
/// Wakeup IP address valid/tables, packet length/memory, flexible filters (13.6.4-13.6.10).
pub const IPAV: u32 = 0x5838;
pub const IP4AT: u32 = 0x5840;
pub const IP4AT_END: u32 = 0x5858;
pub const IP6AT: u32 = 0x5880;
pub const IP6AT_END: u32 = 0x5890;
pub const WUPL: u32 = 0x5900;
pub const WUPM: u32 = 0x5A00;
pub const WUPM_END: u32 = 0x5A80;
pub const FFLT: u32 = 0x5F00;
pub const FFLT_END: u32 = 0x5F20;
pub const FFMT: u32 = 0x9000;
pub const FFMT_END: u32 = 0x9400;
pub const FFVT: u32 = 0x9800;
pub const FFVT_END: u32 = 0x9C00;

/// Size of the memory register window (BAR0) and of the I/O window (BAR1, SDM 13.2.1).
pub const MMIO_SIZE: u64 = 0x2_0000;
pub const IO_SIZE: u64 = 0x40;
/// I/O window: IOADDR selects a register, IODATA reads or writes it (SDM 13.2.1).
pub const IOADDR: u64 = 0x00;
pub const IODATA: u64 = 0x04;

// CTRL bits (13.4.1).
pub const CTRL_FD: u32 = 1 << 0;
pub const CTRL_ASDE: u32 = 1 << 5;
pub const CTRL_SLU: u32 = 1 << 6;
pub const CTRL_SPEED_1000: u32 = 2 << 8;
/// Device reset; self-clearing.
pub const CTRL_RST: u32 = 1 << 26;
/// VLAN mode enable: strip tags on receive, insert on VLE transmits.
pub const CTRL_VME: u32 = 1 << 30;
/// PHY reset (level: the PHY is held in reset while set).
pub const CTRL_PHY_RST: u32 = 1 << 31;

// STATUS bits (13.4.2).
pub const STATUS_FD: u32 = 1 << 0;
pub const STATUS_LU: u32 = 1 << 1;
pub const STATUS_SPEED_1000: u32 = 2 << 6;
/// Auto-speed detection value: 1000 Mb/s.
pub const STATUS_ASDV_1000: u32 = 2 << 8;

// EERD bits (13.4.4).
pub const EERD_START: u32 = 1 << 0;
pub const EERD_DONE: u32 = 1 << 4;
pub const EERD_ADDR_SHIFT: u32 = 8;
pub const EERD_DATA_SHIFT: u32 = 16;

// MDIC fields (13.4.7).
pub const MDIC_DATA: u32 = 0xFFFF;
pub const MDIC_REG_SHIFT: u32 = 16;
pub const MDIC_PHY_SHIFT: u32 = 21;
pub const MDIC_OP_SHIFT: u32 = 26;
pub const MDIC_OP_WRITE: u32 = 1;
pub const MDIC_OP_READ: u32 = 2;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_INT_EN: u32 = 1 << 29;
pub const MDIC_ERROR: u32 = 1 << 30;

// Interrupt causes, shared by ICR/ICS/IMS/IMC (13.4.17).
/// Transmit descriptor written back.
pub const ICR_TXDW: u32 = 1 << 0;
/// Transmit queue empty.
pub const ICR_TXQE: u32 = 1 << 1;
/// Link status change.
pub const ICR_LSC: u32 = 1 << 2;
pub const ICR_RXSEQ: u32 = 1 << 3;
/// Receive descriptor minimum threshold reached.
pub const ICR_RXDMT0: u32 = 1 << 4;
/// Receiver overrun.
pub const ICR_RXO: u32 = 1 << 6;
/// Receiver timer interrupt (a packet was stored).
pub const ICR_RXT0: u32 = 1 << 7;
/// MDI/O access complete.
pub const ICR_MDAC: u32 = 1 << 9;
/// Small receive packet detected.
pub const ICR_SRPD: u32 = 1 << 16;
/// Cause bits the 82540EM implements.
pub const ICR_VALID: u32 = 0x0001_FFDF;

// RCTL bits (13.4.22).
pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_UPE: u32 = 1 << 3;
pub const RCTL_MPE: u32 = 1 << 4;
pub const RCTL_LPE: u32 = 1 << 5;
pub const RCTL_RDMTS_SHIFT: u32 = 8;
pub const RCTL_MO_SHIFT: u32 = 12;
pub const RCTL_BAM: u32 = 1 << 15;
pub const RCTL_BSIZE_SHIFT: u32 = 16;
pub const RCTL_VFE: u32 = 1 << 18;
pub const RCTL_CFIEN: u32 = 1 << 19;
pub const RCTL_CFI: u32 = 1 << 20;
pub const RCTL_BSEX: u32 = 1 << 25;
/// Strip the Ethernet CRC from received packets.
pub const RCTL_SECRC: u32 = 1 << 26;

// TCTL bits (13.4.33).
pub const TCTL_EN: u32 = 1 << 1;
/// Pad short packets to the 64-byte minimum (60 bytes without the FCS).
pub const TCTL_PSP: u32 = 1 << 3;

// RXCSUM bits (13.4.27).
pub const RXCSUM_PCSS: u32 = 0xFF;
pub const RXCSUM_IPOFLD: u32 = 1 << 8;
pub const RXCSUM_TUOFLD: u32 = 1 << 9;

// RAH bits (13.5.3).
pub const RAH_AS: u32 = 3 << 16;
pub const RAH_AV: u32 = 1 << 31;

// RSRPD (13.4.32): packets of at most this size raise SRPD.
pub const RSRPD_SIZE: u32 = 0xFFF;

/// Descriptor size for both rings (3.2.3, 3.3.3).
pub const DESC_SIZE: u64 = 16;

// Transmit descriptor command bits, in byte 11 of legacy and data descriptors (3.3.3.1,
// 3.3.7.1), and TUCMD of the context descriptor (3.3.6).
pub const TXD_CMD_EOP: u8 = 1 << 0;
pub const TXD_CMD_IFCS: u8 = 1 << 1;
/// Legacy: insert checksum. Context TUCMD: TCP (clear for UDP).
pub const TXD_CMD_IC: u8 = 1 << 2;
pub const TXD_CMD_TCP: u8 = 1 << 0;
/// Context TUCMD: IPv4 (clear for IPv6).
pub const TXD_CMD_IP: u8 = 1 << 1;
/// Data and context: TCP segmentation enable.
pub const TXD_CMD_TSE: u8 = 1 << 2;
/// Report status: write DD back.
pub const TXD_CMD_RS: u8 = 1 << 3;
pub const TXD_CMD_DEXT: u8 = 1 << 5;
/// Insert a VLAN tag (with CTRL.VME).
pub const TXD_CMD_VLE: u8 = 1 << 6;
/// Descriptor types with DEXT set (3.3.5).
pub const TXD_DTYP_CONTEXT: u32 = 0;
pub const TXD_DTYP_DATA: u32 = 1;
/// POPTS of a data descriptor (3.3.7.1).
pub const TXD_POPTS_IXSM: u8 = 1 << 0;
pub const TXD_POPTS_TXSM: u8 = 1 << 1;
/// Transmit status: descriptor done.
pub const TXD_STAT_DD: u8 = 1 << 0;

// Receive descriptor status and error bits (3.2.3.1, 3.2.3.2).
pub const RXD_STAT_DD: u8 = 1 << 0;
pub const RXD_STAT_EOP: u8 = 1 << 1;
pub const RXD_STAT_IXSM: u8 = 1 << 2;
pub const RXD_STAT_VP: u8 = 1 << 3;
pub const RXD_STAT_TCPCS: u8 = 1 << 5;
pub const RXD_STAT_IPCS: u8 = 1 << 6;
pub const RXD_STAT_PIF: u8 = 1 << 7;
pub const RXD_ERR_TCPE: u8 = 1 << 5;
pub const RXD_ERR_IPE: u8 = 1 << 6;
/// Receive data error (used here when the buffer was outside guest RAM).
pub const RXD_ERR_RXE: u8 = 1 << 7;

// Statistics registers (13.7), as offsets from STATS_BASE.
pub const ST_CRCERRS: u32 = 0x00;
pub const ST_MPC: u32 = 0x10;
pub const ST_PRC64: u32 = 0x5C;
pub const ST_GPRC: u32 = 0x74;
pub const ST_BPRC: u32 = 0x78;
pub const ST_MPRC: u32 = 0x7C;
pub const ST_GPTC: u32 = 0x80;
/// 64-bit counters: the low half at this offset, the high half at +4; reading the high half
/// clears both (13.7.31).
pub const ST_GORCL: u32 = 0x88;
pub const ST_GOTCL: u32 = 0x90;
pub const ST_RNBC: u32 = 0xA0;
pub const ST_RUC: u32 = 0xA4;
pub const ST_ROC: u32 = 0xAC;
pub const ST_TORL: u32 = 0xC0;
pub const ST_TOTL: u32 = 0xC8;
pub const ST_TPR: u32 = 0xD0;
pub const ST_TPT: u32 = 0xD4;
pub const ST_PTC64: u32 = 0xD8;
pub const ST_MPTC: u32 = 0xF0;
pub const ST_BPTC: u32 = 0xF4;
pub const ST_TSCTC: u32 = 0xF8;
pub const ST_TSCTFC: u32 = 0xFC;
