//! YAML configuration with errors that name the field and the line.
//!
//! serde_yaml reports a path and a position. For a field that is missing,
//! given twice or unknown it names the enclosing mapping, so the field is
//! added to the path; our own value parsers (a MAC, the key) run inside the
//! deserializer ([`from_str_with`]) so their errors carry the value's line.
//! Cross-field checks made after parsing use [`line_of`] to find theirs.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::EthernetAddress;

/// A configuration error: what is wrong, with the field path and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}: {}", self.file, l, self.field, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about `path` (a dotted field path), located in `text`. A
    /// field not written on a line of its own (a default, or inside a flow
    /// mapping `{a: 1}`) is located at its nearest enclosing mapping that is.
    pub fn at(file: &str, text: &str, path: &str, message: impl Into<String>) -> ConfigError {
        let mut line = None;
        let mut p = path;
        while line.is_none() && !p.is_empty() {
            line = line_of(text, p);
            p = p.rsplit_once('.').map_or("", |(parent, _)| parent);
        }
        ConfigError {
            file: file.to_string(),
            line,
            field: path.to_string(),
            message: message.into(),
        }
    }
}

/// Reads a config file's text; an unreadable file is a `ConfigError` too.
pub fn read(path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_string(),
        line: None,
        field: "(file)".into(),
        message: e.to_string(),
    })
}

/// A config type's own checks, made after parsing (cross-field rules,
/// ranges), each error located with [`ConfigError::at`].
pub trait Validate {
    fn validate(&self, file: &str, text: &str) -> Result<(), ConfigError>;
}

/// Parses and validates config text. `file` only labels the messages.
pub fn parse_config<T: DeserializeOwned + Validate>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    let cfg: T = parse(file, text)?;
    cfg.validate(file, text)?;
    Ok(cfg)
}

/// Deserialises YAML text; unknown fields are refused by the target types
/// (`deny_unknown_fields`). `file` only labels the messages.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    serde_yaml::from_str(text).map_err(|e| from_serde(file, text, &e))
}

/// Maps a serde_yaml error to the field it is about and that field's line.
fn from_serde(file: &str, text: &str, e: &serde_yaml::Error) -> ConfigError {
    let msg = e.to_string();
    // serde_yaml counts lines as YAML does, a lone CR (and NEL, U+2028, U+2029) ending
    // one too; editors, `line_of` and this message count `\n`. From the byte offset, a
    // line the reader can find (found by fuzzing: a line past the end of the file).
    let serde_line = e.location().map(|l| line_at(text, l.index()));
    // serde_yaml says "<path>: <message> at line L column C"; the path is
    // absent for the top-level mapping.
    let (path, rest) = match msg.split_once(": ") {
        Some((p, r)) if !p.contains(' ') => (dotted(p), r),
        _ => (String::new(), msg.as_str()),
    };
    let message = match rest.rfind(" at line ") {
        Some(i) => &rest[..i],
        None => rest,
    }
    .to_string();
    let child = |k: &str| match path.as_str() {
        "" => k.to_string(),
        p => format!("{p}.{k}"),
    };
    // For a field missing or given twice, serde names the mapping and points
    // at its start; the field belongs in the path. (An unknown field is
    // reported at the mapping it is not part of, on its own line: serde's.)
    let (field, line) = if let Some(k) = quoted_after(&message, "missing field ") {
        // Where it should go: the enclosing mapping (none for the top level).
        let line = match path.as_str() {
            "" => None,
            p => line_of(text, p).or(serde_line),
        };
        (child(k), line)
    } else if let Some(k) = quoted_after(&message, "duplicate field ") {
        let field = child(k);
        let line = second_line_of(text, &field).or(serde_line);
        (field, line)
    } else if path.is_empty() {
        ("(document)".to_string(), serde_line)
    } else {
        (path, serde_line)
    };
    ConfigError {
        file: file.to_string(),
        line,
        field,
        message,
    }
}

/// The 1-based line of byte offset `index` of `text`, lines ending at `\n`.
fn line_at(text: &str, index: usize) -> usize {
    let upto = &text.as_bytes()[..index.min(text.len())];
    upto.iter().filter(|&&b| b == b'\n').count() + 1
}

/// serde's path (`backup_links[1].mac`) in our dotted form (`backup_links.1.mac`).
fn dotted(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// `x` from a message that starts with `prefix` followed by `` `x` ``.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message
        .strip_prefix(prefix)?
        .strip_prefix('`')?
        .split('`')
        .next()
}

/// Deserialises a string scalar through `parse`. The parse runs inside the
/// deserializer, so serde_yaml reports a refusal at the value's own path and
/// line (an error raised after `String::deserialize` returns would only know
/// the enclosing mapping's).
pub fn from_str_with<'de, D, T, F>(d: D, expecting: &'static str, parse: F) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    F: FnOnce(&str) -> Result<T, String>,
{
    struct V<F>(&'static str, F);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> serde::de::Visitor<'de> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            (self.1)(s).map_err(E::custom)
        }
    }
    d.deserialize_str(V(expecting, parse))
}

/// An hour in microseconds and in milliseconds: the longest health
/// threshold, period or interval either program accepts. Longer is a typo
/// (or a unit mistake), and near `u64::MAX` it overflows once in ns.
pub const HOUR_US: u64 = 3_600_000_000;
pub const HOUR_MS: u64 = 3_600_000;

/// A config time in microseconds as nanoseconds. Saturates rather than
/// wraps; validation keeps every time far below that.
pub fn us_to_ns(us: u64) -> u64 {
    us.saturating_mul(1_000)
}

/// A time field's range, `min..=max` in its own `unit` (`us`, `ms`); `why`
/// says what the upper bound protects against.
pub fn check_time(v: u64, min: u64, max: u64, unit: &str, why: &str) -> Result<(), String> {
    if v < min {
        Err(format!("{v} {unit}: must be at least {min} {unit}"))
    } else if v > max {
        Err(format!("{v} {unit} is more than {max} {unit}: {why}"))
    } else {
        Ok(())
    }
}

/// DPDK 22.11's RTE_MEMPOOL_CACHE_MAX_SIZE (rte_config.h).
pub const MEMPOOL_CACHE_MAX: u32 = 512;

/// rte_mempool_create's rule for the per-lcore cache: at most
/// RTE_MEMPOOL_CACHE_MAX_SIZE, and its flush threshold (1.5 × cache,
/// rounded down) no more than the pool.
pub fn check_mempool_cache(cache: u32, mbufs: u32) -> Result<(), String> {
    if cache > MEMPOOL_CACHE_MAX {
        return Err(format!(
            "{cache} is above DPDK's limit of {MEMPOOL_CACHE_MAX} per lcore (256 suits most pools; 0 turns the cache off)"
        ));
    }
    let flush = cache + cache / 2;
    if flush > mbufs {
        return Err(format!(
            "{cache} is too large for mempool.mbufs {mbufs}: DPDK needs 1.5 x cache ({flush}) <= mbufs; use at most {}",
            u64::from(mbufs) * 2 / 3
        ));
    }
    Ok(())
}

/// A MAC address field (`02:00:00:00:00:01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub EthernetAddress);

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_with(d, "a MAC address", |s| {
            EthernetAddress::from_str(s)
                .map(Mac)
                .map_err(|_| format!("`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"))
        })
    }
}

/// The digest key field.
#[derive(Debug, Clone)]
pub struct Hex128(pub DigestKey);

impl<'de> Deserialize<'de> for Hex128 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The message never quotes the value: it is a secret.
        from_str_with(d, "32 hex digits", |s| {
            DigestKey::from_hex(s)
                .map(Hex128)
                .map_err(|_| "the digest key must be exactly 32 hex digits (128 bits)".to_string())
        })
    }
}

/// The 1-based line of a dotted field path (`backup_links.1.tap`) in YAML
/// text, found by walking keys and list items by indentation. `None` when the
/// path is absent (a missing field: the message says which).
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    let mut min_indent: i64 = -1;
    let mut found = None;
    for part in path.split('.') {
        let mut hit = None;
        if let Ok(idx) = part.parse::<usize>() {
            // The idx-th list item below the current key.
            let mut count = 0;
            let mut item_indent = None;
            for (i, l) in lines
                .iter()
                .enumerate()
                .skip(from + usize::from(found.is_some()))
            {
                let ind = indent(l) as i64;
                let t = l.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if ind <= min_indent && !t.starts_with('-') {
                    break;
                }
                if t.starts_with('-') && item_indent.is_none_or(|x| x == ind) {
                    item_indent = Some(ind);
                    if count == idx {
                        hit = Some((i, ind));
                        break;
                    }
                    count += 1;
                }
            }
        } else {
            for (i, l) in lines.iter().enumerate().skip(from) {
                let ind = indent(l) as i64;
                let t = l.trim_start().trim_start_matches("- ");
                if l.trim().is_empty() || l.trim_start().starts_with('#') {
                    continue;
                }
                if i > from && ind <= min_indent {
                    break;
                }
                if t.starts_with(&format!("{part}:")) {
                    hit = Some((i, ind));
                    break;
                }
            }
        }
        let (i, ind) = hit?;
        found = Some(i + 1);
        from = i;
        min_indent = ind;
    }
    found
}

/// The line of a field's second occurrence in its mapping (a duplicate key).
fn second_line_of(text: &str, path: &str) -> Option<usize> {
    let first = line_of(text, path)?;
    let key = path.rsplit('.').next()?;
    let lines: Vec<&str> = text.lines().collect();
    let col = key_column(lines[first - 1]);
    for (i, l) in lines.iter().enumerate().skip(first) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // Left of the mapping's keys: the mapping has ended.
        if indent(l) < col {
            break;
        }
        if key_column(l) == col && t.trim_start_matches("- ").starts_with(&format!("{key}:")) {
            return Some(i + 1);
        }
    }
    None
}

/// The column a line's key starts at, after any list-item dashes.
fn key_column(l: &str) -> usize {
    let mut t = l.trim_start();
    let mut col = indent(l);
    while let Some(rest) = t.strip_prefix("- ") {
        let r = rest.trim_start();
        col += t.len() - r.len();
        t = r;
    }
    col
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        digest_key: Hex128,
        link: L,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct L {
        name: String,
        mac: Mac,
    }

    const GOOD: &str =
        "digest_key: \"000102030405060708090a0b0c0d0e0f\"\nlink:\n  name: b1\n  mac: 02:00:00:00:00:01\n";

    #[test]
    fn good_text_parses() {
        parse::<T>("t.yaml", GOOD).unwrap();
    }

    #[test]
    fn refused_values_are_named_with_their_own_line() {
        let e = parse::<T>("t.yaml", &GOOD.replace("02:00:00:00:00:01", "02:zz")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("link.mac", Some(4)), "{e}");
        let e = parse::<T>("t.yaml", &GOOD.replace("0e0f", "0e")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("digest_key", Some(1)), "{e}");
        assert!(
            !e.to_string().contains("0102"),
            "the key is never quoted: {e}"
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = parse::<T>("t.yaml", &format!("{GOOD}  mtu: 9000\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("link", Some(5)), "{e}");
        assert!(e.message.contains("unknown field `mtu`"), "{e}");
        // A missing field is named in full, at the line of its mapping.
        let e = parse::<T>("t.yaml", &GOOD.replace("  name: b1\n", "")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("link.name", Some(2)), "{e}");
        let e = parse::<T>("t.yaml", &GOOD.replace("  mac: 02:00:00:00:00:01\n", "")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("link.mac", Some(2)), "{e}");
        // At the top level there is no mapping line to point at.
        let e = parse::<T>("t.yaml", &GOOD.replace("digest_key:", "# digest_key:")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("digest_key", None), "{e}");
    }

    #[test]
    fn fields_in_list_items_and_duplicates_are_named() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Ls {
            links: Vec<L>,
        }
        let y = "links:\n  - name: a\n    mac: 02:00:00:00:00:01\n  - name: b\n";
        let e = parse::<Ls>("t.yaml", y).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("links.1.mac", Some(4)), "{e}");
        let y = "links:\n  - name: a\n    mac: 02:00:00:00:00:01\n    name: b\n";
        let e = parse::<Ls>("t.yaml", y).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("links.0.name", Some(4)), "{e}");
        let y = "links:\n  - name: a\n    mac: 02:00:00:00:00:01\n  - name: b\n    mac: 02:zz\n";
        let e = parse::<Ls>("t.yaml", y).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("links.1.mac", Some(5)), "{e}");
        let e = parse::<T>("t.yaml", &format!("{GOOD}  name: b2\n")).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("link.name", Some(5)), "{e}");
    }

    /// Found by fuzzing (crates/taphold-fuzz/regressions/config_appliance/): YAML ends a
    /// line at a lone CR, so serde_yaml's line numbers ran past the end of a file whose
    /// lines a reader (and `line_of`) counts by `\n`.
    #[test]
    fn lines_are_counted_as_a_reader_counts_them() {
        for (text, line) in [
            // serde_yaml: line 3, of a 1-line file.
            ("link:\r  name: b1\r  mac: 02:zz\n", 1),
            // serde_yaml: line 6.
            (
                "digest_key: 000102030405060708090a0b0c0d0e0f\r\r\r\nlink:\n  name: b1\r  mac: 02:zz\n",
                3,
            ),
            ("link:\u{2028}  name: b1\u{2028}  mac: 02:zz\n", 1),
            // CRLF is one line end, for both.
            ("link:\r\n  name: b1\r\n  mac: 02:zz\r\n", 3),
        ] {
            let e = parse::<T>("t.yaml", text).unwrap_err();
            let lines = text.split('\n').count();
            assert!(e.line.is_some_and(|l| l <= lines), "{text:?}: {e}");
            assert_eq!(e.line, Some(line), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_refused_value_is_found_in_its_own_mapping() {
        // The same bad text in an earlier mapping must not take the line.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Two {
            a: L,
            b: L,
        }
        let y = "a:\n  name: x\n  mac: 02:00:00:00:00:01\nb:\n  name: 02:zz\n  mac: 02:zz\n";
        let e = parse::<Two>("t.yaml", y).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("b.mac", Some(6)), "{e}");
    }

    #[test]
    fn at_locates_a_path() {
        let e = ConfigError::at("t.yaml", GOOD, "link.mac", "bad");
        assert_eq!(e.to_string(), "t.yaml:4: link.mac: bad");
        // Not on a line of its own: its mapping's line.
        let e = ConfigError::at("t.yaml", GOOD, "link.mtu", "bad");
        assert_eq!(e.line, Some(2));
        let e = ConfigError::at("t.yaml", "link: {name: b1, mtu: 0}\n", "link.mtu", "bad");
        assert_eq!(e.line, Some(1));
        let e = ConfigError::at("t.yaml", GOOD, "nothing.here", "bad");
        assert_eq!(e.line, None);
    }

    #[test]
    fn mempool_cache_follows_rte_mempool_create() {
        assert!(check_mempool_cache(512, 768).is_ok());
        assert!(check_mempool_cache(0, 1).is_ok());
        let e = check_mempool_cache(513, 1 << 20).unwrap_err();
        assert!(e.contains("512"), "{e}");
        // 1.5 x 400 = 600 > 599; the message gives the largest that fits.
        let e = check_mempool_cache(400, 599).unwrap_err();
        assert!(e.contains("at most 399"), "{e}");
        assert!(check_mempool_cache(399, 599).is_ok());
        assert!(check_mempool_cache(512, u32::MAX).is_ok());
    }

    #[test]
    fn times_are_checked_against_their_range() {
        assert!(check_time(1, 1, HOUR_US, "us", "why").is_ok());
        assert!(check_time(HOUR_US, 1, HOUR_US, "us", "why").is_ok());
        let e = check_time(0, 1, HOUR_US, "us", "why").unwrap_err();
        assert!(e.contains("at least 1 us"), "{e}");
        let e = check_time(u64::MAX, 1, HOUR_US, "us", "the reason").unwrap_err();
        assert!(e.contains("more than 3600000000 us: the reason"), "{e}");
        assert_eq!(us_to_ns(HOUR_US), 3_600_000_000_000);
        assert_eq!(us_to_ns(u64::MAX / 1000 + 1), u64::MAX);
    }

    #[test]
    fn line_of_walks_nested_keys_and_list_items() {
        let y = "a:\n  b: 1\n  c:\n    - x: 1\n      y: 2\n    - x: 3\n      y: 4\nd: 5\n";
        assert_eq!(line_of(y, "a.b"), Some(2));
        assert_eq!(line_of(y, "a.c.0.y"), Some(5));
        assert_eq!(line_of(y, "a.c.1.x"), Some(6));
        assert_eq!(line_of(y, "a.c.1.y"), Some(7));
        assert_eq!(line_of(y, "d"), Some(8));
        assert_eq!(line_of(y, "a.zz"), None);
    }
}
