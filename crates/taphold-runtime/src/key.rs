//! The digest key: written in the config (`digest_key`) or read from a file of its own
//! (`digest_key_file`), exactly one of the two, for the appliance and the backup node alike.
//!
//! A key in the config file travels wherever the config does (a repository, a ticket, a
//! support bundle); a key file stays on the host, readable by its owner only. So a key
//! file readable or writable by its group or by others is refused, as ssh refuses a
//! private key: whoever can read the key can forge frames that confirm messages. The
//! file holds the 32 hex digits of `digest_key` (surrounding whitespace, a trailing
//! newline included, is ignored): `openssl rand -hex 16 > key; chmod 600 key`.
//!
//! Every refusal names the field and its line, and never quotes the file's content.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use taphold_wire::digest::{DigestKey, KeyRing};
use taphold_wire::payload::PayloadKey;

use crate::yaml::{ConfigError, Hex128};

/// The demo key the shipped configs carry (config/default.yaml, config/lab.yaml, the
/// backup node's example): public, so it protects nothing.
pub const DEMO_KEY_HEX: &str = "5461706f6c642d64656d6f2d6b657931";

/// Whether `key` is the shipped demo key.
pub fn is_demo(key: &DigestKey) -> bool {
    DigestKey::from_hex(DEMO_KEY_HEX).is_ok_and(|demo| demo == *key)
}

/// The start-up warning for a run on the demo key (logged by each binary).
pub const DEMO_WARNING: &str = "DEMO KEY IN USE: the digest key is the shipped demo key, which anyone with this repository has: a frame built with it can confirm a message. Generate one per deployment (`openssl rand -hex 16 > /etc/taphold/digest.key; chmod 600 /etc/taphold/digest.key`) and set digest_key_file on the appliance and every backup node";

/// Permission bits a key file must not have: any access by group or others.
const GROUP_OR_OTHERS: u32 = 0o077;

/// The key in use, from `digest_key` (already parsed) or `digest_key_file`. `file` is
/// the config file's path: a relative `digest_key_file` is relative to its directory.
/// `text` is the config's text, to locate errors.
pub fn resolve(
    file: &str,
    text: &str,
    inline: Option<&Hex128>,
    key_file: Option<&Path>,
) -> Result<Hex128, ConfigError> {
    match (inline, key_file) {
        (Some(k), None) => Ok(k.clone()),
        (None, Some(p)) => read_key_file(&relative_to(file, p))
            .map(Hex128)
            .map_err(|m| ConfigError::at(file, text, "digest_key_file", m)),
        (Some(_), Some(_)) => Err(ConfigError::at(
            file,
            text,
            "digest_key_file",
            "give the key once: digest_key or digest_key_file, not both",
        )),
        (None, None) => Err(ConfigError::at(
            file,
            text,
            "digest_key",
            "missing: give digest_key (32 hex digits) or digest_key_file (a file holding them, readable by its owner only)",
        )),
    }
}

/// A key file named by `field`, if it is given (relative to the config file's
/// directory, refused as [`read_key_file`] refuses).
pub fn optional_file(
    file: &str,
    text: &str,
    field: &str,
    path: Option<&Path>,
) -> Result<Option<DigestKey>, ConfigError> {
    path.map(|p| {
        read_key_file(&relative_to(file, p)).map_err(|m| ConfigError::at(file, text, field, m))
    })
    .transpose()
}

/// The key ring of one use: `current`, and the key in `next_field`'s file if given,
/// accepted at once and sealing from `from_field`'s UNIX second (never, if absent).
/// Refused: a `from_field` without `next_field`, or two keys with one id.
pub fn ring(
    file: &str,
    text: &str,
    current: DigestKey,
    (next_field, next): (&str, Option<&Path>),
    (from_field, from_s): (&str, Option<u64>),
) -> Result<KeyRing, ConfigError> {
    let Some(next) = optional_file(file, text, next_field, next)? else {
        if from_s.is_some() {
            return Err(ConfigError::at(
                file,
                text,
                from_field,
                format!(
                    "names when to start sealing with the next key, but there is no {next_field}"
                ),
            ));
        }
        return Ok(KeyRing::single(current));
    };
    let from_ns = from_s.map(|s| s.saturating_mul(1_000_000_000));
    KeyRing::with_next(current, next, from_ns).map_err(|id| {
        ConfigError::at(
            file,
            text,
            next_field,
            format!("the next key has the current key's id ({id:#04x}): a PDU could not say which sealed it; generate another (`taphold keygen`)"),
        )
    })
}

/// Refuses the demo key in `field` unless `allowed` (a replay, a lab, or
/// `allow_demo_key: true`): a deployment that forgot to set its own key fails at start,
/// not silently.
pub fn refuse_demo(
    file: &str,
    text: &str,
    field: &str,
    keys: &[DigestKey],
    allowed: bool,
) -> Result<(), ConfigError> {
    if allowed || !keys.iter().any(is_demo) {
        return Ok(());
    }
    Err(ConfigError::at(
        file,
        text,
        field,
        "is the public demo key, which anyone with this repository has: generate one (`taphold keygen --out FILE`) and give its file, or set `allow_demo_key: true` for a lab",
    ))
}

/// `taphold keygen`: a new random key, as a key file's text (32 hex digits and a
/// newline), from the OS's random source.
pub fn generate() -> Result<(DigestKey, String), String> {
    let (k, text) = random_hex::<16>()?;
    Ok((DigestKey(k), text))
}

/// `n` random bytes from the OS, and their hex with a newline.
fn random_hex<const N: usize>() -> Result<([u8; N], String), String> {
    use std::io::Read;
    let mut k = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    Ok((k, format!("{hex}\n")))
}

/// `taphold keygen --payload`: a new payload key file (64 hex digits), mode 0600,
/// never over an existing file. Returns the key's fingerprint.
pub fn write_new_payload_key_file(path: &Path) -> Result<u8, String> {
    let (k, text) = random_hex::<32>()?;
    write_new(path, &text)?;
    Ok(PayloadKey::new(&k).fingerprint())
}

fn write_new(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a new key file at `path`, mode 0600, refusing to overwrite one. Returns
/// the key's id.
pub fn write_new_key_file(path: &Path) -> Result<u8, String> {
    let (key, text) = generate()?;
    write_new(path, &text)?;
    Ok(key.id())
}

/// `p` as seen from the directory of the config file `file`.
fn relative_to(file: &str, p: &Path) -> PathBuf {
    match Path::new(file).parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// Reads a key file: 32 hex digits, whitespace around them ignored, the file not
/// readable or writable by group or others. The error never quotes the content.
pub fn read_key_file(path: &Path) -> Result<DigestKey, String> {
    let shown = path.display();
    let text = read_secret(path)?;
    DigestKey::from_hex(text.trim()).map_err(|_| {
        format!(
            "{shown}: does not hold a key: want exactly 32 hex digits (128 bits), found {} characters{}",
            text.trim().len(),
            if text.trim().is_empty() { " (empty)" } else { "" }
        )
    })
}

/// Reads a payload key file (`link_security: aead`): 64 hex digits (256 bits),
/// refused as [`read_key_file`] refuses.
pub fn read_payload_key_file(path: &Path) -> Result<PayloadKey, String> {
    let shown = path.display();
    let text = read_secret(path)?;
    PayloadKey::from_hex(text.trim()).map_err(|_| {
        format!(
            "{shown}: does not hold a payload key: want exactly 64 hex digits (256 bits), found {} characters",
            text.trim().len()
        )
    })
}

/// A payload key file named by `field`, relative to the config's directory.
pub fn payload_key(
    file: &str,
    text: &str,
    field: &str,
    path: &Path,
) -> Result<PayloadKey, ConfigError> {
    read_payload_key_file(&relative_to(file, path))
        .map_err(|m| ConfigError::at(file, text, field, m))
}

/// The text of a secret file, refused if group or others may read or write it.
fn read_secret(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & GROUP_OR_OTHERS != 0 {
        return Err(format!(
            "{shown}: mode {mode:04o} lets group or others read or write the key; `chmod 600 {shown}` (the key must be the owner's alone)"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f";
    const TEXT: &str = "stream_id: 1\ndigest_key_file: k\nother: 1\n";

    fn write(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_key_file_of_the_owner_alone_is_read_with_its_whitespace_trimmed() {
        let d = tempfile::tempdir().unwrap();
        for (content, mode) in [
            (KEY.to_string(), 0o600),
            (format!("{KEY}\n"), 0o400),
            (format!("  {}\r\n\n", KEY.to_uppercase()), 0o600),
        ] {
            let p = write(d.path(), "k", &content, mode);
            assert_eq!(
                read_key_file(&p).unwrap(),
                DigestKey::from_hex(KEY).unwrap()
            );
        }
    }

    #[test]
    fn keygen_writes_a_new_owner_only_key_file_and_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("new.key");
        let id = write_new_key_file(&p).unwrap();
        let k = read_key_file(&p).unwrap();
        assert_eq!(k.id(), id);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!is_demo(&k));
        let e = write_new_key_file(&p).unwrap_err();
        assert!(e.contains("exists"), "{e}");
        assert_eq!(read_key_file(&p).unwrap(), k, "left as it was");
        let pk = d.path().join("payload.key");
        write_new_payload_key_file(&pk).unwrap();
        read_payload_key_file(&pk).unwrap();
        assert!(read_key_file(&pk).unwrap_err().contains("32 hex digits"));
        assert!(read_payload_key_file(&p)
            .unwrap_err()
            .contains("64 hex digits"));
        let q = d.path().join("other.key");
        write_new_key_file(&q).unwrap();
        assert_ne!(read_key_file(&q).unwrap(), k);
    }

    #[test]
    fn the_demo_key_is_refused_unless_allowed() {
        let demo = DigestKey::from_hex(DEMO_KEY_HEX).unwrap();
        let other = DigestKey([9; 16]);
        let text = "a: 1\ndigest_key: x\n";
        let e = refuse_demo("c.yaml", text, "digest_key", &[other, demo], false).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("digest_key", Some(2)));
        assert!(e.message.contains("demo key"), "{e}");
        refuse_demo("c.yaml", text, "digest_key", &[other, demo], true).unwrap();
        refuse_demo("c.yaml", text, "digest_key", &[other], false).unwrap();
    }

    #[test]
    fn a_key_ring_from_files() {
        let d = tempfile::tempdir().unwrap();
        let cur = DigestKey([1; 16]);
        let next = write(d.path(), "n", "02020202020202020202020202020202", 0o600);
        let text = "next: n\nfrom: 5\n";
        let r = ring(
            "c.yaml",
            text,
            cur,
            ("next", Some(&next)),
            ("from", Some(5)),
        )
        .unwrap();
        assert_eq!(r.sealing(4_999_999_999), &cur);
        assert_eq!(r.sealing(5_000_000_000), &DigestKey([2; 16]));
        let e = ring("c.yaml", text, cur, ("next", None), ("from", Some(5))).unwrap_err();
        assert_eq!(e.field, "from");
        let r = ring("c.yaml", text, cur, ("next", None), ("from", None)).unwrap();
        assert_eq!(r, KeyRing::single(cur));
        let bad = write(d.path(), "b", "02020202020202020202020202020202", 0o644);
        let e = ring("c.yaml", text, cur, ("next", Some(&bad)), ("from", None)).unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("next", Some(1)));
    }

    #[test]
    fn a_key_file_anyone_else_can_read_or_write_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o644, 0o666] {
            let p = write(d.path(), "k", KEY, mode);
            let e = read_key_file(&p).unwrap_err();
            assert!(
                e.contains(&format!("mode {mode:04o}")) && e.contains("chmod 600"),
                "{mode:o}: {e}"
            );
        }
    }

    #[test]
    fn a_missing_or_malformed_key_file_is_refused_without_quoting_it() {
        let d = tempfile::tempdir().unwrap();
        let e = read_key_file(&d.path().join("absent")).unwrap_err();
        assert!(e.contains("absent") && e.contains("No such file"), "{e}");
        let e = read_key_file(d.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        for bad in [
            "",
            "\n",
            &KEY[..30],
            &format!("{KEY}00"),
            "zz0102030405060708090a0b0c0d0e0f",
            "00010203 04050607 08090a0b 0c0d0e0f",
            "digest_key: \"000102030405060708090a0b0c0d0e0f\"",
        ] {
            let p = write(d.path(), "k", bad, 0o600);
            let e = read_key_file(&p).unwrap_err();
            assert!(e.contains("32 hex digits"), "{bad:?}: {e}");
            assert!(bad.len() < 8 || !e.contains(&bad[2..8]), "quoted: {e}");
        }
    }

    #[test]
    fn exactly_one_of_the_two_fields_names_the_field_and_its_line() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("c.yaml");
        let cfg = cfg.to_str().unwrap();
        write(d.path(), "k", KEY, 0o600);
        // Relative to the config file's directory, not the working directory.
        let k = resolve(cfg, TEXT, None, Some(Path::new("k"))).unwrap();
        assert_eq!(k.0, DigestKey::from_hex(KEY).unwrap());
        let inline = Hex128(DigestKey::from_hex(KEY).unwrap());
        let e = resolve(cfg, TEXT, Some(&inline), Some(Path::new("k"))).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line),
            ("digest_key_file", Some(2)),
            "{e}"
        );
        assert!(e.message.contains("not both"), "{e}");
        let e = resolve(cfg, TEXT, None, None).unwrap_err();
        assert_eq!(e.field, "digest_key", "{e}");
        assert!(e.message.contains("digest_key_file"), "{e}");
        let e = resolve(cfg, TEXT, None, Some(Path::new("nope"))).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.line),
            ("digest_key_file", Some(2)),
            "{e}"
        );
        assert_eq!(resolve(cfg, TEXT, Some(&inline), None).unwrap().0, inline.0);
    }

    #[test]
    fn the_demo_key_is_recognised() {
        assert!(is_demo(&DigestKey::from_hex(DEMO_KEY_HEX).unwrap()));
        assert!(is_demo(
            &DigestKey::from_hex(&DEMO_KEY_HEX.to_uppercase()).unwrap()
        ));
        assert!(!is_demo(&DigestKey::from_hex(KEY).unwrap()));
        assert!(DEMO_WARNING.contains("DEMO"));
    }
}
