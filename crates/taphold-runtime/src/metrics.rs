//! The Prometheus text endpoint both DPDK programs serve (`--metrics-listen
//! ADDR:PORT`): a thread of its own, off the poll loops' cores, answering
//! `GET /metrics` with what `render` returns. And, for a program whose state
//! is a JSON document (the backup node's status), that document as metrics
//! and as flat key/value pairs (what rte_telemetry dictionaries take).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Serves `render()` on `addr` from a thread named `name`, pinned to `cpu`
/// when given. Returns the address it listens on (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    name: &str,
    cpu: Option<usize>,
    render: impl Fn() -> String + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(id) = cpu {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    log::warn!("metrics server: could not pin to CPU {id}");
                }
            }
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => {
                        if let Err(e) = answer(c, &render) {
                            log::debug!("metrics: {e}");
                        }
                    }
                    Err(e) => log::warn!("metrics: accept: {e}"),
                }
            }
        })?;
    Ok(bound)
}

/// One exchange: any GET of /metrics (or /) gets the text, then close.
fn answer(mut c: TcpStream, render: &dyn Fn() -> String) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request = String::new();
    BufReader::new(&c).read_line(&mut request)?;
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if request.starts_with("GET ") && (path == "/metrics" || path == "/") {
        ("200 OK", render())
    } else {
        ("404 Not Found", "GET /metrics\n".to_string())
    };
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A metric name Prometheus accepts: `[a-zA-Z0-9_]`, the rest `_`.
pub fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value, quoted: `\`, `"` and newlines escaped.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One leaf of a JSON document, named by its path (`a_b_0_c`).
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf {
    Number(f64),
    Text(String),
}

/// Every number, boolean (0/1) and string of `v`, by path joined with `_`,
/// at most `depth` levels down; nulls are left out.
pub fn flatten(v: &Value, depth: usize) -> Vec<(String, Leaf)> {
    let mut out = Vec::new();
    walk(v, String::new(), depth, &mut out);
    out
}

fn walk(v: &Value, path: String, depth: usize, out: &mut Vec<(String, Leaf)>) {
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}_{k}")
        }
    };
    match v {
        Value::Number(n) => out.push((path, Leaf::Number(n.as_f64().unwrap_or(0.0)))),
        Value::Bool(b) => out.push((path, Leaf::Number(f64::from(u8::from(*b))))),
        Value::String(s) => out.push((path, Leaf::Text(s.clone()))),
        Value::Object(m) if depth > 0 => {
            for (k, v) in m {
                walk(v, child(k), depth - 1, out);
            }
        }
        Value::Array(a) if depth > 0 => {
            for (i, v) in a.iter().enumerate() {
                walk(v, child(&i.to_string()), depth - 1, out);
            }
        }
        _ => {}
    }
}

/// The numeric leaves of `v` as Prometheus text, each `PREFIX_path` (untyped:
/// the document does not say which are counters).
pub fn prometheus_of(prefix: &str, v: &Value) -> String {
    let mut out = String::new();
    for (path, leaf) in flatten(v, 4) {
        if let Leaf::Number(n) = leaf {
            let name = metric_name(&format!("{prefix}_{path}"));
            out.push_str(&format!("# TYPE {name} untyped\n{name} {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_flattens_to_paths_and_metrics() {
        let v = serde_json::json!({
            "acks_sent": 3,
            "journal": {"records": 10, "dir": "/j", "ok": true, "none": null},
            "runs": [{"epoch": 7}],
        });
        let leaves = flatten(&v, 4);
        assert!(leaves.contains(&("acks_sent".into(), Leaf::Number(3.0))));
        assert!(leaves.contains(&("journal_records".into(), Leaf::Number(10.0))));
        assert!(leaves.contains(&("journal_dir".into(), Leaf::Text("/j".into()))));
        assert!(leaves.contains(&("journal_ok".into(), Leaf::Number(1.0))));
        assert!(leaves.contains(&("runs_0_epoch".into(), Leaf::Number(7.0))));
        assert!(!leaves.iter().any(|(k, _)| k == "journal_none"));
        assert_eq!(flatten(&v, 1).len(), 1, "depth 1: top-level leaves only");
        let text = prometheus_of("taphold_backup", &v);
        assert!(
            text.contains("taphold_backup_journal_records 10\n"),
            "{text}"
        );
        assert!(!text.contains("journal_dir"), "strings are not metrics");
        assert_eq!(metric_name("a-b.c"), "a_b_c");
        assert_eq!(label_value("b\"1"), "b\\\"1");
    }

    #[test]
    fn the_endpoint_answers_get_metrics_and_nothing_else() {
        let addr = serve("127.0.0.1:0".parse().unwrap(), "t-metrics", None, || {
            "x 1\n".to_string()
        })
        .unwrap();
        let get = |req: &str| {
            use std::io::Read;
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(req.as_bytes()).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let ok = get("GET /metrics HTTP/1.0\r\n\r\n");
        assert!(
            ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("\r\n\r\nx 1\n"),
            "{ok}"
        );
        assert!(get("GET /other HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404"));
    }
}
