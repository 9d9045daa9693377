//! The control socket: how an operator reaches a running node.
//!
//! `control_socket: PATH` makes the node listen on a Unix-domain stream socket there.
//! A client writes one line, a command, and reads one reply (JSON) until the node
//! closes the connection:
//!
//! - `status`: counters, runs, the primary's silence, the takeover's progress;
//! - `takeover`: start a takeover and reply with its report once it is done (or why it
//!   could not start).
//!
//! Anything else is answered `{"error": ...}` naming the commands. The socket is served
//! by a thread of its own, outside EAL, pinned to a CPU other than the poll loop's
//! (`core_affinity`; threads made after `rte_eal_init` inherit the main lcore's CPU
//! otherwise). It hands each command to the poll loop through a channel the loop polls
//! with a non-blocking receive between bursts; the loop answers through the reply
//! channel that came with it. The poll loop never blocks on the socket.
//!
//! `taphold-backup status --control PATH` and `taphold-backup takeover --control PATH`
//! are the client ([`client`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What an operator asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Status,
    Takeover,
}

impl Request {
    pub fn parse(line: &str) -> Result<Request, String> {
        match line.trim() {
            "status" => Ok(Request::Status),
            "takeover" => Ok(Request::Takeover),
            "" => Err("an empty command: the commands are `status` and `takeover`".into()),
            other => Err(format!(
                "unknown command `{}`: the commands are `status` and `takeover`",
                other.chars().take(64).collect::<String>()
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Takeover => "takeover",
        }
    }
}

/// A request handed to the poll loop, with where its reply goes.
pub struct Command {
    pub request: Request,
    pub reply: mpsc::Sender<String>,
}

/// The socket's thread.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long a client may take to send its command.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// An `{"error": ...}` reply.
pub fn error_reply(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Which CPU the control thread goes on: one the process may use (`allowed`, read
/// before EAL pinned the main thread) other than the poll loop's (`hot`). None when
/// there is no other.
pub fn off_hot_core(
    allowed: &[core_affinity::CoreId],
    hot: Option<u32>,
) -> Option<core_affinity::CoreId> {
    allowed
        .iter()
        .copied()
        .find(|c| hot.is_none_or(|h| c.id != h as usize))
}

impl Server {
    /// Listens at `path` (a stale socket of a stopped node is replaced; a live one, or
    /// a file that is not a socket, is an error) and serves it on a thread pinned to
    /// `core`. Commands go to `to_loop`.
    pub fn start(
        path: &Path,
        core: Option<core_affinity::CoreId>,
        to_loop: mpsc::Sender<Command>,
    ) -> io::Result<Server> {
        let listener = bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("taphold-control".into())
            .spawn(move || {
                match core {
                    Some(c) if core_affinity::set_for_current(c) => {
                        log::info!("control socket thread on CPU {}", c.id)
                    }
                    Some(c) => log::warn!(
                        "control socket thread: could not pin it to CPU {}; it shares the poll loop's",
                        c.id
                    ),
                    None => log::warn!(
                        "control socket thread: no CPU other than the poll loop's; it shares it (it sleeps while idle)"
                    ),
                }
                accept_loop(&listener, &flag, &to_loop);
            })?;
        Ok(Server {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "control socket {}: a file that is not a socket is there; not replacing it",
                    path.display()
                ),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "control socket {}: a running process answers on it (another node?)",
                    path.display()
                ),
            ));
        }
        // A socket nobody answers on: left by a node that stopped without removing it.
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("control socket {}: {e}", path.display())))?;
    // The operator (the node's user) only: a takeover is not for anyone on the box.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

fn accept_loop(l: &UnixListener, stop: &AtomicBool, to_loop: &mpsc::Sender<Command>) {
    while !stop.load(Ordering::Acquire) {
        match l.accept() {
            Ok((stream, _)) => {
                let to_loop = to_loop.clone();
                // One thread per connection (it inherits this thread's CPU): a
                // takeover's reply can take a while, and `status` must not wait for it.
                let spawned = std::thread::Builder::new()
                    .name("taphold-control-conn".into())
                    .spawn(move || serve(stream, &to_loop));
                if let Err(e) = spawned {
                    log::warn!("control socket: cannot serve a connection: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                log::warn!("control socket: accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// One connection: a command in, a reply out.
fn serve(stream: UnixStream, to_loop: &mpsc::Sender<Command>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut line = String::new();
    let read = BufReader::new(&stream).take(256).read_line(&mut line);
    let reply = match read {
        Err(e) => error_reply(&format!("could not read the command: {e}")),
        Ok(_) => match Request::parse(&line) {
            Err(e) => error_reply(&e),
            Ok(request) => {
                let (tx, rx) = mpsc::channel();
                let sent = to_loop.send(Command { request, reply: tx });
                match sent.ok().and_then(|_| rx.recv().ok()) {
                    Some(r) => r,
                    None => error_reply("the node is stopping: no answer"),
                }
            }
        },
    };
    let _ = (&stream).write_all(reply.as_bytes());
    let _ = (&stream).write_all(b"\n");
}

/// The client: sends `request` to the node at `path`; the reply, or why there is none.
pub fn client(path: &Path, request: Request) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the node at {}: {e} (is it running, with control_socket: {}?)",
            path.display(),
            path.display()
        )
    })?;
    s.write_all(format!("{}\n", request.name()).as_bytes())
        .and_then(|_| s.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if reply.trim().is_empty() {
        return Err(format!(
            "{}: the node closed without a reply",
            path.display()
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_anything_else_is_named() {
        assert_eq!(Request::parse("status\n"), Ok(Request::Status));
        assert_eq!(Request::parse("  takeover "), Ok(Request::Takeover));
        let e = Request::parse("reboot\n").unwrap_err();
        assert!(
            e.contains("unknown command `reboot`") && e.contains("`status`"),
            "{e}"
        );
        assert!(Request::parse("").unwrap_err().contains("empty"));
    }

    #[test]
    fn the_control_thread_goes_off_the_hot_core() {
        let cores: Vec<core_affinity::CoreId> =
            [0, 1, 2].map(|id| core_affinity::CoreId { id }).to_vec();
        assert_eq!(off_hot_core(&cores, Some(0)).map(|c| c.id), Some(1));
        assert_eq!(off_hot_core(&cores, Some(1)).map(|c| c.id), Some(0));
        assert_eq!(off_hot_core(&cores[..1], Some(0)), None);
        assert_eq!(off_hot_core(&cores, None).map(|c| c.id), Some(0));
    }

    #[test]
    fn a_socket_serves_commands_through_the_loop_and_errors_on_bad_ones() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("c.sock");
        let (tx, rx) = mpsc::channel::<Command>();
        let server = Server::start(&path, None, tx).unwrap();
        // The poll loop's side, on a thread here.
        let looper = std::thread::spawn(move || {
            for c in rx.iter().take(2) {
                c.reply
                    .send(format!("{{\"got\":\"{}\"}}", c.request.name()))
                    .unwrap();
            }
        });
        assert_eq!(
            client(&path, Request::Status).unwrap().trim(),
            r#"{"got":"status"}"#
        );
        assert_eq!(
            client(&path, Request::Takeover).unwrap().trim(),
            r#"{"got":"takeover"}"#
        );
        looper.join().unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"frobnicate\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("unknown command `frobnicate`"),
            "{v}"
        );
        // A second server on a live socket is refused; a stale one is replaced.
        let (tx2, _rx2) = mpsc::channel::<Command>();
        let e = Server::start(&path, None, tx2.clone()).err().unwrap();
        assert!(e.to_string().contains("a running process answers"), "{e}");
        drop(server);
        assert!(!path.exists(), "removed at stop");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let again = Server::start(&path, None, tx2).unwrap();
        // The loop is gone (its receiver dropped): the client hears why.
        drop(_rx2);
        let r = client(again.path(), Request::Status).unwrap();
        assert!(r.contains("the node is stopping"), "{r}");
        // Not a socket: never replaced.
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let (tx3, _rx3) = mpsc::channel::<Command>();
        assert!(Server::start(&file, None, tx3).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        let e = client(&t.path().join("none.sock"), Request::Status).unwrap_err();
        assert!(e.contains("cannot reach the node"), "{e}");
    }
}
