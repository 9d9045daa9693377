//! Ethernet ports (ethdev), looked up by device name.
//!
//! A port is found by the name its vdev or PCI device was given on the EAL
//! command line (`net_pcap0`, `net_af_packet1`, `0000:3b:00.0`), configured
//! with a queue count and one pool, started, and then used only through
//! `rx_burst` / `tx_burst` on the hot path. `Port` is `Sync` because DPDK's
//! rule is per queue, not per port: each queue must be polled by one lcore at
//! a time, which taphold's role map guarantees (one role owns each queue).

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex};

use crate::{Burst, Eal, Error, Mempool, Result};

/// Queue layout for `Port::configure`.
#[derive(Clone, Copy, Debug)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Receive everything, not just frames for the port's MAC. Ports that see
    /// mirrored traffic (taps) and virtual ports need it.
    pub promiscuous: bool,
    /// The MTU the port must take (IP packet size, without the Ethernet
    /// header), if it matters: refused with a clear error when the device's
    /// maximum is lower; skipped for devices that have no MTU to set
    /// (net_pcap, net_ring: they take any frame).
    pub mtu: Option<u16>,
    /// Have the device verify IPv4 header and UDP checksums on receive, if it offers both
    /// (`RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | _UDP_CKSUM`); see [`Port::rx_checksum_offload`]
    /// and [`crate::Mbuf::rx_checksums_good`]. Devices that do not offer them (net_pcap,
    /// net_ring, net_memif) are configured without, and the software checks stay.
    pub rx_checksum_offload: bool,
}

/// `RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM` (built with
/// `RTE_BIT64`, which bindgen does not emit).
const RX_OFFLOAD_IPV4_UDP_CKSUM: u64 = (1 << 1) | (1 << 2);

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            promiscuous: true,
            mtu: None,
            rx_checksum_offload: false,
        }
    }
}

/// Basic counters of a port (rte_eth_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Received packets dropped by the hardware/driver (no descriptors).
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

pub struct Port {
    id: u16,
    name: String,
    started: bool,
    /// The pool the rx queues allocate from must outlive them.
    pool: Option<Mempool>,
    /// The device verifies IPv4 and UDP checksums on receive (configured so).
    rx_checksums: bool,
    /// Memory the device depends on (the rings behind a ring port).
    _keep_alive: Option<Arc<dyn Send + Sync>>,
    _eal: Eal,
}

/// Ports with a live `Port` owner: a second owner would close the device twice.
static OWNED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

impl Port {
    /// The port whose device name is `name`. A vdev that failed to probe does
    /// not fail `rte_eal_init` (EAL only warns), so this is where it surfaces,
    /// naming the device.
    pub fn by_name(eal: &Eal, name: &str) -> Result<Port> {
        let cname =
            CString::new(name).map_err(|_| Error::other("port lookup", "NUL in device name"))?;
        let mut id: u16 = 0;
        // SAFETY: cname is a valid C string; id is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            let known = Self::device_names(eal).join(", ");
            return Err(Error::other(
                format!("port {name}"),
                format!(
                    "no such ethdev: the device was not given to EAL (--vdev/-a) or failed to probe; ports that exist: [{known}]"
                ),
            ));
        }
        Self::own(eal, id, name)
    }

    /// The NUMA socket of the device named `name`, without opening it (to
    /// place a pool before the ports are opened); None if unknown.
    pub fn socket_of_name(name: &str) -> Option<u32> {
        let cname = CString::new(name).ok()?;
        let mut id: u16 = 0;
        // SAFETY: cname is a valid C string; id is a valid out-pointer.
        if unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } != 0 {
            return None;
        }
        // SAFETY: a valid port id, just looked up.
        u32::try_from(unsafe { dpdk_sys::rte_eth_dev_socket_id(id) }).ok()
    }

    /// Takes ownership of port `id` (a valid ethdev), refusing a second owner.
    pub(crate) fn own(eal: &Eal, id: u16, name: &str) -> Result<Port> {
        if !OWNED.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            return Err(Error::other(
                format!("port {name}"),
                "already opened in this process",
            ));
        }
        Ok(Port {
            id,
            name: name.to_string(),
            started: false,
            pool: None,
            rx_checksums: false,
            _keep_alive: None,
            _eal: eal.clone(),
        })
    }

    /// Names of every probed ethdev.
    pub fn device_names(_eal: &Eal) -> Vec<String> {
        let mut out = Vec::new();
        // SAFETY: rte_eth_find_next only reads the ethdev table.
        let mut id = unsafe { dpdk_sys::rte_eth_find_next(0) } as u32;
        while id < dpdk_sys::RTE_MAX_ETHPORTS {
            let mut buf = [0 as std::ffi::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
            // SAFETY: buf is RTE_ETH_NAME_MAX_LEN bytes as the API requires.
            if unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id as u16, buf.as_mut_ptr()) } == 0 {
                // SAFETY: on success DPDK wrote a NUL-terminated name into buf.
                out.push(
                    unsafe { CStr::from_ptr(buf.as_ptr()) }
                        .to_string_lossy()
                        .into_owned(),
                );
            }
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_eth_find_next(id as u16 + 1) } as u32;
        }
        out
    }

    pub(crate) fn keep_alive(mut self, what: Arc<dyn Send + Sync>) -> Port {
        self._keep_alive = Some(what);
        self
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn op(&self, what: &str) -> String {
        format!("{what}({})", self.name)
    }

    /// Configures queues (every rx queue allocating from `pool`). May be called
    /// again after `stop`.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<()> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: id is a valid port; info is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) };
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_dev_info_get"), ret));
        }
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::other(
                self.op("rte_eth_dev_configure"),
                format!(
                    "asked for {} rx / {} tx queues, the device has at most {} / {}",
                    cfg.rx_queues, cfg.tx_queues, info.max_rx_queues, info.max_tx_queues
                ),
            ));
        }
        if let Some(mtu) = cfg.mtu {
            // Ethernet header and CRC around the MTU: what the device must
            // take as one frame (DPDK's own check, said before it refuses).
            const OVERHEAD: u32 = 18;
            let max = info.max_mtu.min(
                u16::try_from(info.max_rx_pktlen.saturating_sub(OVERHEAD)).unwrap_or(u16::MAX),
            );
            if mtu > max {
                return Err(Error::other(
                    self.op("MTU"),
                    format!(
                        "the device takes at most MTU {max} and {mtu} is needed (primary.max_payload sets it: lower it, or give the port jumbo frames)"
                    ),
                ));
            }
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let rx_checksums = cfg.rx_checksum_offload
            && info.rx_offload_capa & RX_OFFLOAD_IPV4_UDP_CKSUM == RX_OFFLOAD_IPV4_UDP_CKSUM;
        if rx_checksums {
            conf.rxmode.offloads |= RX_OFFLOAD_IPV4_UDP_CKSUM;
        }
        // SAFETY: valid port id and a configuration that is all defaults but for offloads
        // the device said it has.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf)
        };
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_dev_configure"), ret));
        }
        let (mut rxd, mut txd) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port; rxd/txd are valid in/out pointers.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rxd, &mut txd) };
        if ret != 0 {
            return Err(Error::from_ret(
                self.op("rte_eth_dev_adjust_nb_rx_tx_desc"),
                ret,
            ));
        }
        // SAFETY: valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 {
            dpdk_sys::SOCKET_ID_ANY
        } else {
            socket
        };
        for q in 0..cfg.rx_queues {
            // SAFETY: the port is configured with rx_queues queues; the pool is
            // alive and we keep a clone of it for as long as the port exists.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rxd,
                    socket as u32,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if ret != 0 {
                return Err(Error::from_ret(
                    self.op(&format!("rte_eth_rx_queue_setup q{q}")),
                    ret,
                ));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: the port is configured with tx_queues queues.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(self.id, q, txd, socket as u32, std::ptr::null())
            };
            if ret != 0 {
                return Err(Error::from_ret(
                    self.op(&format!("rte_eth_tx_queue_setup q{q}")),
                    ret,
                ));
            }
        }
        if let Some(mtu) = cfg.mtu {
            // SAFETY: valid, configured, not yet started port.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id, mtu) };
            if ret == -libc::ENOTSUP {
                log::debug!("{}: no MTU to set (virtual device)", self.name);
            } else if ret != 0 {
                return Err(Error::from_ret(
                    self.op(&format!("rte_eth_dev_set_mtu {mtu}")),
                    ret,
                ));
            }
        }
        if cfg.promiscuous {
            // SAFETY: valid port. Some virtual devices do not support it (-ENOTSUP), which is fine.
            unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
        }
        self.pool = Some(pool.clone());
        self.rx_checksums = rx_checksums;
        Ok(())
    }

    /// Whether the device was configured to verify IPv4 and UDP checksums on receive (asked
    /// for by [`PortConfig::rx_checksum_offload`] and offered by the device). Only then do
    /// received mbufs' checksum flags mean anything.
    pub fn rx_checksum_offload(&self) -> bool {
        self.rx_checksums
    }

    /// The NUMA socket the device is attached to (None: unknown, e.g. a
    /// virtual device).
    pub fn socket(&self) -> Option<u32> {
        // SAFETY: valid port id.
        let s = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) };
        u32::try_from(s).ok()
    }

    pub fn start(&mut self) -> Result<()> {
        // SAFETY: valid, configured port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_dev_start"), ret));
        }
        self.started = true;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<()> {
        if !self.started {
            return Ok(());
        }
        // SAFETY: valid, started port; callers stop ports only after the lcores
        // polling them have been joined.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        self.started = false;
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_dev_stop"), ret));
        }
        Ok(())
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port; a is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut a) };
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_macaddr_get"), ret));
        }
        Ok(a.addr_bytes)
    }

    pub fn link(&self) -> Result<LinkInfo> {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port; l is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_link_get_nowait"), ret));
        }
        Ok(LinkInfo {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }

    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port; s is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        if ret != 0 {
            return Err(Error::from_ret(self.op("rte_eth_stats_get"), ret));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Extended statistics, by name (the driver's own counters).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        // SAFETY: a NULL array asks for the count only.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        if n < 0 {
            return Err(Error::from_ret(self.op("rte_eth_xstats_get_names"), n));
        }
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n as usize];
        let mut vals = vec![dpdk_sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: both arrays hold n entries as the calls are told.
        let got_names =
            unsafe { dpdk_sys::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) };
        // SAFETY: as above.
        let got_vals =
            unsafe { dpdk_sys::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32) };
        if got_names < 0 || got_vals < 0 {
            return Err(Error::from_ret(
                self.op("rte_eth_xstats_get"),
                got_names.min(got_vals),
            ));
        }
        let k = (got_names.min(got_vals)) as usize;
        Ok(vals[..k]
            .iter()
            .map(|v| {
                let name = names.get(v.id as usize).map(|nm| {
                    // SAFETY: DPDK NUL-terminates names within RTE_ETH_XSTATS_NAME_SIZE.
                    unsafe { CStr::from_ptr(nm.name.as_ptr()) }
                        .to_string_lossy()
                        .into_owned()
                });
                (name.unwrap_or_else(|| format!("xstat{}", v.id)), v.value)
            })
            .collect())
    }

    /// Receives up to the burst's free room from rx queue `q`, appending to
    /// `burst`. Returns how many arrived.
    #[inline]
    pub fn rx_burst<const N: usize>(&self, q: u16, burst: &mut Burst<N>) -> usize {
        self.rx_burst_max(q, burst, N)
    }

    /// As `rx_burst`, taking at most `max` (backpressure: the hold ring's room).
    #[inline]
    pub fn rx_burst_max<const N: usize>(&self, q: u16, burst: &mut Burst<N>, max: usize) -> usize {
        let (ptr, room) = burst.spare_ptrs();
        let want = room.min(max);
        if want == 0 {
            return 0;
        }
        // SAFETY: ptr has `want` writable slots; the port is started and this
        // queue is polled only by the calling lcore (the role map's rule).
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.id, q, ptr, want as u16) } as usize;
        // SAFETY: the driver wrote n owned mbuf pointers into those slots.
        unsafe { burst.commit_spare(n) };
        n
    }

    /// Offers every mbuf in `burst` to tx queue `q`. The ones the driver took
    /// are its own now; the rest stay in `burst`, in order, still ours.
    /// Returns how many were sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&self, q: u16, burst: &mut Burst<N>) -> usize {
        let (ptr, n) = burst.owned_ptrs();
        if n == 0 {
            return 0;
        }
        // SAFETY: ptr holds n owned mbufs; the queue is used by this lcore only.
        let sent = unsafe { dpdk_sys::rte_eth_tx_burst(self.id, q, ptr, n as u16) } as usize;
        // The driver owns the first `sent` now (it frees them after transmit).
        burst.forget_front(sent);
        sent
    }
}

// SAFETY: DPDK's threading rule for ethdev is per queue (one lcore per queue at
// a time), and each queue has one owning role (roles/mod.rs). The calls that
// change the port's state (configure/start/stop/close) take &mut self, so they
// run only while no worker holds the port. The read-only control calls (`stats`,
// `link`, `mac`) are made by the main lcore while workers poll, as testpmd does
// for its stats display: they touch no queue; the PMDs used here (net_ring,
// net_pcap, af_packet) sum per-queue counters the data path updates, so a
// reading may be a burst stale, never torn memory the driver relies on.
unsafe impl Send for Port {}
unsafe impl Sync for Port {}

impl Drop for Port {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::warn!("{e}");
        }
        // SAFETY: no lcore polls the port any more (we are its only owner and it
        // is being dropped); close releases the driver's queues and their mbufs.
        unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        OWNED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}
