//! Generates bindings against the DPDK that pkg-config finds, and compiles
//! bindgen's wrappers for DPDK's `static inline` hot functions
//! (rte_eth_rx_burst, rte_pktmbuf_alloc, rte_ring_enqueue_burst, ...).

use std::env;
use std::path::PathBuf;

const MIN_DPDK: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!(
                "\nerror: DPDK >= {MIN_DPDK} not found through pkg-config ({e}).\n\
                 Install it with:  apt-get install -y dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config libpcap-dev\n\
                 or run scripts/setup.sh, which installs everything taphold needs.\n"
            );
            std::process::exit(1);
        }
    };
    // rte_eth_from_rings lives in the net_ring driver, which pkg-config does not list.
    println!("cargo:rustc-link-lib=rte_net_ring");
    println!("cargo:rustc-link-lib=rte_bus_vdev");

    // Same flags for bindgen and cc: -include rte_config.h and -march matter to
    // struct layouts and to which inline code paths are compiled.
    let cflags = cflags_from_pkg_config_cli();
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wrappers_c = out.join("inline_wrappers.c");

    let mut builder = bindgen::Builder::default()
        .header(crate_dir.join("wrapper.h").to_string_lossy())
        .clang_args(&cflags)
        .clang_args(dpdk.include_paths.iter().map(|p| format!("-I{}", p.display())))
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("inline_wrappers"))
        .allowlist_function("rte_(eal|lcore|mempool|pktmbuf|mbuf|eth|ring|strerror|get_|rdtsc|socket|vdev|dev_|tel_data_|telemetry_register).*")
        .allowlist_function("taphold_.*")
        .allowlist_type("rte_(mbuf|mempool|eth_.*|ring|ether_addr|tel_data)")
        .allowlist_type("telemetry_cb")
        .allowlist_var("RTE_(MAX_ETHPORTS|MAX_LCORE|ETH_NAME_MAX_LEN|PKTMBUF_HEADROOM|MBUF_DEFAULT_BUF_SIZE|ETHER_.*|ETH_LINK_.*|MBUF_F_.*)")
        .allowlist_var("RING_F_.*")
        .allowlist_var("MEMPOOL_F_.*")
        .allowlist_var("SOCKET_ID_ANY")
        // We never call these ring variants; skipping them halves the wrapper file.
        .blocklist_function("rte_ring_.*(_elem|_zc_|hts|rts).*")
        .blocklist_function("rte_eth_(tx_buffer|call_|fp_).*")
        .blocklist_function("rte_mempool_(ops|cache_).*")
        .no_debug("rte_flow_item_gtp_psc")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false);
    if env::var("DOCS_RS").is_ok() {
        builder = builder.clang_arg("-DDOCS_RS");
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on wrapper.h; is libclang-dev installed?");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    // bindgen's wrapper file #includes wrapper.h, so the crate dir goes on the path.
    let mut cc = cc::Build::new();
    cc.file(&wrappers_c)
        .file(crate_dir.join("shim.c"))
        .include(&crate_dir)
        .includes(&dpdk.include_paths)
        .opt_level(2)
        .debug(false)
        .warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("taphold_dpdk_inline");
}

fn cflags_from_pkg_config_cli() -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config --cflags libdpdk");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}
