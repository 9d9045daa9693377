//! rte_telemetry commands: what an operator reads from a running program with
//! `dpdk-telemetry.py` (or the socket `/var/run/dpdk/PREFIX/dpdk_telemetry.v2`).
//!
//! DPDK runs command handlers on its telemetry thread, never on an lcore, so a
//! handler may lock and allocate; it must only read what the lcores publish.
//! C cannot call a closure, so every command goes through one trampoline that
//! finds the handler by the command's name.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The dictionary a handler fills: the command's JSON answer, one level deep.
pub struct Dict {
    d: *mut dpdk_sys::rte_tel_data,
    full: bool,
}

/// Key names DPDK accepts: letters, digits, `_`, `-`, `/`, at most 63 bytes.
/// Anything else is replaced by `_` (link names come from the config).
fn key(name: &str) -> CString {
    let k: String = name
        .chars()
        .take(63)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    CString::new(k).expect("no NUL after the mapping above")
}

impl Dict {
    fn check(&mut self, rc: c_int) {
        // -ENOSPC: past RTE_TEL_MAX_DICT_ENTRIES; the answer says so once.
        if rc != 0 {
            self.full = true;
        }
    }

    pub fn u64(&mut self, name: &str, v: u64) {
        let k = key(name);
        // SAFETY: `d` is the dict DPDK handed this call and started below;
        // `k` outlives the call (DPDK copies the name).
        let rc = unsafe { dpdk_sys::rte_tel_data_add_dict_u64(self.d, k.as_ptr(), v) };
        self.check(rc);
    }

    pub fn string(&mut self, name: &str, v: &str) {
        let k = key(name);
        // Longer strings are refused by DPDK: cut (at a char boundary).
        let mut end = v.len().min(127);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        let val = CString::new(v[..end].replace('\0', " ")).expect("NULs replaced");
        // SAFETY: as in `u64`; DPDK copies the value too.
        let rc =
            unsafe { dpdk_sys::rte_tel_data_add_dict_string(self.d, k.as_ptr(), val.as_ptr()) };
        self.check(rc);
    }
}

/// What `rte_telemetry_register_cmd` accepts as a command name.
fn valid_command(cmd: &str) -> bool {
    cmd.starts_with('/')
        && cmd.len() <= 56
        && cmd
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
}

type Handler = Box<dyn Fn(&str, &mut Dict) + Send + Sync>;

/// Registered commands: (name, handler). Read by the telemetry thread only.
static HANDLERS: Mutex<Vec<(String, Handler)>> = Mutex::new(Vec::new());

extern "C" fn trampoline(
    cmd: *const c_char,
    params: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    // A panic must not unwind into C: it becomes an error answer.
    let answered = std::panic::catch_unwind(|| {
        // SAFETY: DPDK passes NUL-terminated strings valid for this call
        // (params may be NULL when the command had none).
        let cmd = unsafe { CStr::from_ptr(cmd) }
            .to_string_lossy()
            .into_owned();
        let params = if params.is_null() {
            String::new()
        } else {
            // SAFETY: as above.
            unsafe { CStr::from_ptr(params) }
                .to_string_lossy()
                .into_owned()
        };
        let handlers = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, f)) = handlers.iter().find(|(name, _)| *name == cmd) else {
            return -1;
        };
        // SAFETY: `d` is the answer DPDK gave this call.
        unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
        let mut dict = Dict { d, full: false };
        f(&params, &mut dict);
        if dict.full {
            log::warn!("telemetry {cmd}: answer cut at DPDK's 256 entries");
        }
        0
    });
    answered.unwrap_or(-1)
}

/// Registers `cmd` (`/app/what`: letters, digits, `_`, `/`) with its `help`
/// line. Call after EAL init, once per command.
pub fn register(
    cmd: &str,
    help: &str,
    f: impl Fn(&str, &mut Dict) + Send + Sync + 'static,
) -> Result<()> {
    let op = format!("rte_telemetry_register_cmd({cmd})");
    // DPDK's own rule, said before it refuses with a bare EINVAL.
    if !valid_command(cmd) {
        return Err(Error::other(
            &op,
            "a command is `/` then letters, digits, `_` and `/` (no `-`), at most 56 bytes",
        ));
    }
    let c = CString::new(cmd).map_err(|_| Error::other(&op, "a NUL in the command"))?;
    let h = CString::new(help).map_err(|_| Error::other(&op, "a NUL in the help"))?;
    HANDLERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((cmd.to_string(), Box::new(f)));
    // SAFETY: both strings are valid for the call (DPDK copies them), and
    // `trampoline` is a plain extern "C" fn that lives for the program.
    let rc =
        unsafe { dpdk_sys::rte_telemetry_register_cmd(c.as_ptr(), Some(trampoline), h.as_ptr()) };
    if rc != 0 {
        return Err(Error::from_ret(op, rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_what_dpdk_accepts() {
        assert_eq!(key("b1_state").to_str().unwrap(), "b1_state");
        assert_eq!(key("link b.1").to_str().unwrap(), "link_b_1");
        assert_eq!(key(&"x".repeat(100)).to_bytes().len(), 63);
    }

    #[test]
    fn commands_are_what_dpdk_registers() {
        assert!(valid_command("/taphold/stats"));
        assert!(valid_command("/taphold_backup/journal"));
        assert!(!valid_command("/taphold-backup/stats"), "DPDK refuses '-'");
        assert!(!valid_command("taphold/stats"));
        assert!(!valid_command(&format!("/{}", "x".repeat(60))));
    }
}
