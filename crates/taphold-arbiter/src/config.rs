//! The arbiter binary's configuration: one YAML file, read and validated before any socket
//! is opened. Unknown fields are errors, and every error names the field and its line (the
//! same rules, and the same error mapping, as the appliance's and the backup node's).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use taphold_arbiter::{
    ArbiterConfig, OnGap, MAX_EPOCHS, MAX_INPUTS, MAX_PAYLOAD_LIMIT, MAX_WINDOW,
};
use taphold_runtime::yaml::{self, ConfigError, Hex128};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The stream delivered; datagrams of another stream are refused (`wrong_stream`).
    pub stream: u32,
    /// 32 hex digits: the arbiter key (target confirmations and resend requests; the
    /// appliance's and the nodes' `arbiter_key_file`). Written here, or in
    /// `digest_key_file`: exactly one of the two.
    #[serde(rename = "digest_key", default)]
    digest_key_inline: Option<Hex128>,
    /// A file holding the key's 32 hex digits, readable by its owner only.
    #[serde(default)]
    pub digest_key_file: Option<std::path::PathBuf>,
    /// The key in use (`Config::parse` resolves it).
    #[serde(skip, default = "unresolved_key")]
    pub digest_key: Hex128,
    /// Run on the public demo key (a lab or a test).
    #[serde(default)]
    pub allow_demo_key: bool,
    /// Where the copies arrive: A (the appliance's `destination`) first, then B...
    pub inputs: Vec<Input>,
    /// Where the ordered stream goes.
    pub deliver: Deliver,
    /// Target confirmations go to each: the appliance's `primary.ip:target_confirm_port`
    /// and each backup node's address.
    #[serde(default)]
    pub confirm_to: Vec<Addr>,
    /// Resend requests go to each backup node.
    #[serde(default)]
    pub resend_to: Vec<Addr>,
    /// The input whose socket sends resend requests (and target confirmations), so that
    /// the answers, sent back to the request's source, arrive on that input. Required with
    /// `resend_to`.
    #[serde(default)]
    pub resend_from: Option<String>,
    #[serde(default = "default_window")]
    pub window: u32,
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    #[serde(default = "default_max_epochs")]
    pub max_epochs: usize,
    #[serde(default = "default_gap_timeout_ms")]
    pub gap_timeout_ms: u64,
    #[serde(default = "default_resend_interval_ms")]
    pub resend_interval_ms: u64,
    #[serde(default = "default_resend_tries")]
    pub resend_tries: u32,
    #[serde(default = "default_resend_max_count")]
    pub resend_max_count: u32,
    #[serde(default = "default_on_gap")]
    pub on_gap: OnGap,
    #[serde(default = "default_confirm_interval_ms")]
    pub confirm_interval_ms: u64,
    #[serde(default = "default_confirm_idle_ms")]
    pub confirm_idle_ms: u64,
    /// The delivered-through state file lives here (`arbiter-stream-S.state`).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A short name (letters, digits, `-`, `_`): counters and deliveries say which input.
    pub name: String,
    /// The UDP address this input listens on.
    pub bind: Addr,
}

/// `IP:port` (IPv4 or `[IPv6]:port`), parsed where it is written so a mistake names its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr(pub SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        yaml::from_str_with(d, "an address IP:port", |s| {
            SocketAddr::from_str(s)
                .map(Addr)
                .map_err(|_| format!("`{s}` is not an address (want IP:port, e.g. 127.0.0.1:9200)"))
        })
    }
}

/// Where delivered messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deliver {
    /// One UDP datagram per message; with `header`, the delivery header (the winning
    /// copy's) in front of the payload, as the appliance sent it.
    Udp { to: Addr, header: bool },
    /// One JSON line per message on stdout.
    Stdout,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliverUdp {
    udp: Addr,
    #[serde(default = "yes")]
    header: bool,
}

impl<'de> Deserialize<'de> for Deliver {
    /// `deliver: stdout`, or a mapping `{udp: IP:port, header: true|false}`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Deliver;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`stdout`, or `udp: IP:port` with `header: true|false`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Deliver, E> {
                match s {
                    "stdout" => Ok(Deliver::Stdout),
                    _ => Err(E::custom(format!(
                        "`{s}`: want `stdout`, or `udp: IP:port` with `header: true|false`"
                    ))),
                }
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Deliver, M::Error> {
                let u = DeliverUdp::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(Deliver::Udp {
                    to: u.udp,
                    header: u.header,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn yes() -> bool {
    true
}
fn default_window() -> u32 {
    4096
}
fn default_max_payload() -> usize {
    2048
}
fn default_max_epochs() -> usize {
    4
}
fn default_gap_timeout_ms() -> u64 {
    5
}
fn default_resend_interval_ms() -> u64 {
    20
}
fn default_resend_tries() -> u32 {
    5
}
fn default_resend_max_count() -> u32 {
    1024
}
fn default_on_gap() -> OnGap {
    OnGap::Wait
}
fn default_confirm_interval_ms() -> u64 {
    100
}
fn default_confirm_idle_ms() -> u64 {
    10
}

/// Most memory the windows may take: a typo in `window` or `max_payload` should not become
/// a start-up that eats the host.
pub const MAX_WINDOW_BYTES: u64 = 4 << 30;

/// Until `Config::parse` resolves it: all zeros, never used.
fn unresolved_key() -> Hex128 {
    Hex128(taphold_wire::digest::DigestKey([0; 16]))
}

impl Config {
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        Config::parse(path, &yaml::read(path)?)
    }

    /// Parses and validates. `file` only labels the messages.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = yaml::parse_config(file, text)?;
        cfg.digest_key = taphold_runtime::key::resolve(
            file,
            text,
            cfg.digest_key_inline.as_ref(),
            cfg.digest_key_file.as_deref(),
        )?;
        let field = if cfg.digest_key_file.is_some() {
            "digest_key_file"
        } else {
            "digest_key"
        };
        taphold_runtime::key::refuse_demo(
            file,
            text,
            field,
            &[cfg.digest_key.0],
            cfg.allow_demo_key,
        )?;
        Ok(cfg)
    }

    /// The core's config (times in ns).
    pub fn arbiter(&self) -> ArbiterConfig {
        let ms = |v: u64| v.saturating_mul(1_000_000);
        ArbiterConfig {
            stream: self.stream,
            key: self.digest_key.0,
            window: self.window,
            max_payload: self.max_payload,
            max_epochs: self.max_epochs,
            gap_timeout_ns: ms(self.gap_timeout_ms),
            resend_interval_ns: ms(self.resend_interval_ms),
            resend_tries: self.resend_tries,
            resend_max_count: self.resend_max_count,
            on_gap: self.on_gap,
            confirm_interval_ns: ms(self.confirm_interval_ms),
            confirm_idle_ns: ms(self.confirm_idle_ms),
        }
    }

    /// The index of the input that sends resend requests and confirmations (the first
    /// input when `resend_from` is not given).
    pub fn control_input(&self) -> usize {
        self.resend_from
            .as_ref()
            .and_then(|n| self.inputs.iter().position(|i| &i.name == n))
            .unwrap_or(0)
    }
}

impl yaml::Validate for Config {
    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError> {
        let err = |path: &str, message: String| ConfigError::at(file, text, path, message);
        if self.inputs.is_empty() || self.inputs.len() > MAX_INPUTS {
            return Err(err(
                "inputs",
                format!("{} inputs: want 1..={MAX_INPUTS}", self.inputs.len()),
            ));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let ok = !input.name.is_empty()
                && input.name.len() <= 32
                && input
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(err(
                    &format!("inputs.{i}.name"),
                    format!("`{}`: want 1 to 32 letters, digits, `-` or `_`", input.name),
                ));
            }
            if let Some(j) = self.inputs[..i].iter().position(|o| o.name == input.name) {
                return Err(err(
                    &format!("inputs.{i}.name"),
                    format!("`{}` is already the name of inputs.{j}", input.name),
                ));
            }
            if let Some(j) = self.inputs[..i].iter().position(|o| o.bind == input.bind) {
                return Err(err(
                    &format!("inputs.{i}.bind"),
                    format!("{} is already inputs.{j}'s", input.bind.0),
                ));
            }
        }
        match &self.resend_from {
            Some(n) if !self.inputs.iter().any(|i| &i.name == n) => {
                return Err(err(
                    "resend_from",
                    format!(
                        "`{n}` is not an input (inputs: {})",
                        self.inputs
                            .iter()
                            .map(|i| i.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
            None if !self.resend_to.is_empty() => {
                return Err(err(
                    "resend_from",
                    "required with resend_to: the input whose socket asks, so that the answers arrive on it".into(),
                ))
            }
            _ => {}
        }
        if let Deliver::Udp { to, .. } = &self.deliver {
            if let Some(i) = self.inputs.iter().position(|i| i.bind == *to) {
                return Err(err(
                    "deliver.udp",
                    format!("{} is inputs.{i}'s own address: delivery would loop", to.0),
                ));
            }
        }
        if self.window == 0 || self.window > MAX_WINDOW {
            return Err(err(
                "window",
                format!("{} is not in 1..={MAX_WINDOW} messages", self.window),
            ));
        }
        if self.max_payload == 0 || self.max_payload > MAX_PAYLOAD_LIMIT {
            return Err(err(
                "max_payload",
                format!(
                    "{} is not in 1..={MAX_PAYLOAD_LIMIT} bytes (a UDP datagram less the delivery header)",
                    self.max_payload
                ),
            ));
        }
        if self.max_epochs == 0 || self.max_epochs > MAX_EPOCHS {
            return Err(err(
                "max_epochs",
                format!("{} is not in 1..={MAX_EPOCHS}", self.max_epochs),
            ));
        }
        let bytes = u64::from(self.window) * self.max_payload as u64 * self.max_epochs as u64;
        if bytes > MAX_WINDOW_BYTES {
            return Err(err(
                "window",
                format!(
                    "window {} × max_payload {} × max_epochs {} = {bytes} bytes, more than the {MAX_WINDOW_BYTES}-byte limit",
                    self.window, self.max_payload, self.max_epochs
                ),
            ));
        }
        if self.resend_tries == 0 {
            return Err(err("resend_tries", "must be at least 1".into()));
        }
        if self.resend_max_count == 0 {
            return Err(err("resend_max_count", "must be at least 1".into()));
        }
        for (name, v) in [
            ("gap_timeout_ms", self.gap_timeout_ms),
            ("resend_interval_ms", self.resend_interval_ms),
            ("confirm_interval_ms", self.confirm_interval_ms),
            ("confirm_idle_ms", self.confirm_idle_ms),
        ] {
            yaml::check_time(v, 1, yaml::HOUR_MS, "ms", "at most an hour; check the unit")
                .map_err(|e| err(name, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../arbiter.example.yaml");

    fn line(needle: &str) -> usize {
        GOOD.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    fn bad(edit: impl Fn(&str) -> String) -> ConfigError {
        let text = edit(GOOD);
        assert_ne!(text, GOOD, "the edit changed nothing");
        Config::parse("t.yaml", &text).unwrap_err()
    }

    #[test]
    fn the_example_config_is_valid_and_defaults_apply() {
        let c = Config::parse("arbiter.example.yaml", GOOD).unwrap();
        assert_eq!(c.inputs.len(), 2);
        assert_eq!(c.control_input(), 1);
        assert_eq!(
            c.deliver,
            Deliver::Udp {
                to: Addr("127.0.0.1:9300".parse().unwrap()),
                header: true
            }
        );
        let a = c.arbiter();
        assert_eq!(a.gap_timeout_ns, 5_000_000);
        let min = "stream: 1\ndigest_key: \"5461706f6c642d64656d6f2d6b657931\"\nallow_demo_key: true\ninputs:\n  - name: A\n    bind: 127.0.0.1:9100\ndeliver: stdout\nstate_dir: /tmp/s\n";
        let c = Config::parse("min.yaml", min).unwrap();
        assert_eq!(c.deliver, Deliver::Stdout);
        assert_eq!((c.window, c.max_payload, c.max_epochs), (4096, 2048, 4));
        assert_eq!(
            (c.gap_timeout_ms, c.resend_interval_ms, c.resend_tries),
            (5, 20, 5)
        );
        assert_eq!(c.on_gap, OnGap::Wait);
        assert_eq!((c.confirm_interval_ms, c.confirm_idle_ms), (100, 10));
        assert!(c.confirm_to.is_empty() && c.resend_to.is_empty());
        assert_eq!(c.control_input(), 0);
        let c = Config::parse(
            "t.yaml",
            &min.replace(
                "deliver: stdout",
                "deliver:\n  udp: 127.0.0.1:9\n  header: false",
            ),
        )
        .unwrap();
        assert_eq!(
            c.deliver,
            Deliver::Udp {
                to: Addr("127.0.0.1:9".parse().unwrap()),
                header: false
            }
        );
    }

    #[test]
    fn unknown_fields_are_named_with_their_line() {
        let e = bad(|s| s.replace("window: 1024", "window: 1024\nwindow_size: 9"));
        assert!(e.message.contains("unknown field `window_size`"), "{e}");
        assert_eq!(e.line, Some(line("window: 1024") + 1), "{e}");
        let e = bad(|s| {
            s.replace(
                "    bind: 127.0.0.1:9100",
                "    bind: 127.0.0.1:9100\n    mtu: 9000",
            )
        });
        assert!(e.message.contains("unknown field `mtu`"), "{e}");
        assert_eq!(e.line, Some(line("bind: 127.0.0.1:9100") + 1), "{e}");
        let e = bad(|s| s.replace("  header: true", "  header: true\n  framing: raw"));
        assert!(e.message.contains("unknown field `framing`"), "{e}");
        assert!(e.field.starts_with("deliver"), "{e}");
    }

    #[test]
    fn malformed_values_are_named_with_their_line() {
        let e = bad(|s| s.replace("bind: 127.0.0.1:9100", "bind: 127.0.0.1"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("inputs.0.bind", Some(line("9100"))),
            "{e}"
        );
        assert!(e.message.contains("not an address"), "{e}");
        let e = bad(|s| s.replace("  - 127.0.0.1:9401", "  - nowhere:1"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("confirm_to.1", Some(line("9401"))),
            "{e}"
        );
        let e = bad(|s| s.replace("resend_to:  ", "resend_to:\n  - 1.2.3.4\n# "));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("resend_to.0", Some(line("resend_to") + 1)),
            "{e}"
        );
        let e = bad(|s| s.replace("digest_key: \"", "digest_key: \"ab"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("digest_key", Some(line("digest_key"))),
            "{e}"
        );
        assert!(
            !e.to_string().contains("5461"),
            "the key is never quoted: {e}"
        );
        let e = bad(|s| s.replace("on_gap: wait", "on_gap: pray"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("on_gap", Some(line("on_gap: wait"))),
            "{e}"
        );
        let e = bad(|s| s.replace("  udp: 127.0.0.1:9300", "  udp: 127.0.0.1:x"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("deliver.udp", Some(line("9300"))),
            "{e}"
        );
        // The three lines of the deliver mapping, comments and all, become one scalar.
        let block: Vec<&str> = GOOD
            .lines()
            .skip_while(|l| !l.starts_with("deliver:"))
            .take(3)
            .collect();
        let e = bad(|s| s.replace(&block.join("\n"), "deliver: stderr"));
        assert_eq!(
            (e.field.as_str(), e.line),
            ("deliver", Some(line("deliver"))),
            "{e}"
        );
        assert!(e.message.contains("want `stdout`"), "{e}");
    }

    #[test]
    fn semantic_errors_name_field_and_line() {
        let cases: Vec<(&str, &str, &str, &str)> = vec![
            ("window: 1024", "window: 0", "window", "not in 1..="),
            (
                "max_payload: 2048",
                "max_payload: 70000",
                "max_payload",
                "not in 1..=",
            ),
            (
                "max_epochs: 2",
                "max_epochs: 0",
                "max_epochs",
                "not in 1..=",
            ),
            (
                "resend_tries: 5",
                "resend_tries: 0",
                "resend_tries",
                "at least 1",
            ),
            (
                "resend_max_count: 1024",
                "resend_max_count: 0",
                "resend_max_count",
                "at least 1",
            ),
            (
                "resend_from: B",
                "resend_from: C",
                "resend_from",
                "not an input",
            ),
            (
                "- name: B",
                "- name: A",
                "inputs.1.name",
                "already the name",
            ),
            (
                "- name: B",
                "- name: \"B C\"",
                "inputs.1.name",
                "letters, digits",
            ),
            (
                "bind: 127.0.0.1:9101",
                "bind: 127.0.0.1:9100",
                "inputs.1.bind",
                "already inputs.0",
            ),
            (
                "udp: 127.0.0.1:9300",
                "udp: 127.0.0.1:9101",
                "deliver.udp",
                "would loop",
            ),
        ];
        for (from, to, field, why) in cases {
            let e = bad(|s| s.replace(from, to));
            assert_eq!(e.field, field, "{from} -> {to}: {e}");
            assert_eq!(e.line, Some(line(from)), "{from} -> {to}: {e}");
            assert!(e.message.contains(why), "{from} -> {to}: {e}");
        }
        let e = bad(|s| {
            s.replace("window: 1024", "window: 1048576")
                .replace("max_payload: 2048", "max_payload: 9000")
        });
        assert_eq!(e.field, "window", "{e}");
        assert!(e.message.contains("limit"), "{e}");
        let from_line = GOOD.lines().find(|l| l.starts_with("resend_from")).unwrap();
        let e = bad(|s| s.replace(&format!("{from_line}\n"), ""));
        assert_eq!(e.field, "resend_from", "{e}");
        assert!(e.message.contains("required with resend_to"), "{e}");
        let e = bad(|s| s.replace("inputs:", "inputs: []\nold_inputs:"));
        assert!(e.to_string().contains("old_inputs"), "{e}");
    }

    #[test]
    fn times_are_bounded_so_they_convert_without_overflow() {
        for key in [
            "gap_timeout_ms",
            "resend_interval_ms",
            "confirm_interval_ms",
            "confirm_idle_ms",
        ] {
            let at = GOOD.lines().find(|l| l.starts_with(key)).unwrap();
            for v in ["0", "3600001", &u64::MAX.to_string()] {
                let e = bad(|s| s.replace(at, &format!("{key}: {v}")));
                assert_eq!((e.field.as_str(), e.line), (key, Some(line(key))), "{e}");
                let want = if v == "0" { "at least 1" } else { "more than" };
                assert!(e.message.contains(want), "{e}");
            }
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        let e = bad(|s| s.replace("state_dir:", "# state_dir:"));
        assert_eq!(e.field, "state_dir", "{e}");
        let e = bad(|s| s.replace("    bind: 127.0.0.1:9100\n", ""));
        assert_eq!(e.field, "inputs.0.bind", "{e}");
    }

    #[test]
    fn not_yaml_at_all_is_an_error_not_a_panic() {
        for junk in [
            "",
            ":::",
            "[1,2",
            "inputs: [",
            "\u{0}\u{1}",
            "deliver: {udp: 1}",
        ] {
            assert!(Config::parse("t.yaml", junk).is_err(), "{junk:?}");
        }
    }
}
