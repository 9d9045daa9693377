//! YAML configuration with errors that name the field and the line.
//!
//! serde_yaml reports a path and a position; for values refused by our own
//! parsers (a MAC, a key) it points at the enclosing mapping instead, so the
//! refused value, which our messages quote in backticks, finds the real line.
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
    /// An error about `path` (a dotted field path), located in `text`.
    pub fn at(file: &str, text: &str, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: line_of(text, path),
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
    serde_yaml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        // serde_yaml says "<path>: <message> at line L column C"; keep the
        // path as the field and the line as ours.
        let (field, rest) = match msg.split_once(": ") {
            Some((p, r)) if !p.contains(' ') => (p.to_string(), r.to_string()),
            _ => ("(document)".to_string(), msg.clone()),
        };
        let message = match rest.rfind(" at line ") {
            Some(i) => rest[..i].to_string(),
            None => rest,
        };
        let mut line = e.location().map(|l| l.line());
        // serde_yaml places errors from our own value parsers at the start
        // of the enclosing mapping; the refused value, quoted in the
        // message, finds its real line.
        if let Some(value) = message.split('`').nth(1).filter(|v| !v.is_empty()) {
            let from = line.unwrap_or(1).saturating_sub(1);
            if let Some(i) = text
                .lines()
                .enumerate()
                .skip(from)
                .find(|(_, l)| l.contains(value))
                .map(|(i, _)| i)
            {
                line = Some(i + 1);
            }
        } else if message.starts_with("the digest key") {
            line = line_of(text, "digest_key");
        }
        // A value our own parsers refused is reported at the struct's path;
        // the key on the error's line names the field itself.
        let key = line
            .and_then(|l| text.lines().nth(l.saturating_sub(1)))
            .and_then(|l| l.trim_start().trim_start_matches("- ").split_once(':'))
            .map(|(k, _)| k.trim().to_string())
            .filter(|k| !k.is_empty() && !k.contains(' '));
        let field = match key {
            Some(k) if field == "(document)" => k,
            Some(k) if !field.ends_with(&k) && !message.contains(&format!("`{k}`")) => {
                format!("{field}.{k}")
            }
            _ => field,
        };
        ConfigError {
            file: file.to_string(),
            line,
            field,
            message,
        }
    })
}

/// A MAC address field (`02:00:00:00:00:01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub EthernetAddress);

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EthernetAddress::from_str(&s).map(Mac).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not a MAC address (want aa:bb:cc:dd:ee:ff)"
            ))
        })
    }
}

/// The digest key field.
#[derive(Debug, Clone)]
pub struct Hex128(pub DigestKey);

impl<'de> Deserialize<'de> for Hex128 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DigestKey::from_hex(&s).map(Hex128).map_err(|_| {
            serde::de::Error::custom("the digest key must be exactly 32 hex digits (128 bits)")
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
        assert!(e.message.contains("mtu") && e.line == Some(5), "{e}");
        let e = parse::<T>("t.yaml", &GOOD.replace("  name: b1\n", "")).unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
    }

    #[test]
    fn at_locates_a_path() {
        let e = ConfigError::at("t.yaml", GOOD, "link.mac", "bad");
        assert_eq!(e.to_string(), "t.yaml:4: link.mac: bad");
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
