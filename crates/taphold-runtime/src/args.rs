//! The options a taphold program takes after EAL's `--`: a flag, then its
//! value; every mistake is an error that says which flag and shows the usage.

pub struct Args<'a> {
    it: std::slice::Iter<'a, String>,
    usage: &'static str,
}

impl<'a> Args<'a> {
    pub fn new(args: &'a [String], usage: &'static str) -> Args<'a> {
        Args {
            it: args.iter(),
            usage,
        }
    }

    /// The next flag, if any.
    pub fn flag(&mut self) -> Option<&'a str> {
        self.it.next().map(String::as_str)
    }

    /// The value that must follow `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.it
            .next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value\n{}", self.usage))
    }

    /// A number that must follow `flag`.
    pub fn number(&mut self, flag: &str) -> Result<u64, String> {
        let v = self.value(flag)?;
        v.parse()
            .map_err(|_| format!("{flag}: `{v}` is not a number"))
    }

    /// The error for a flag nobody knows (or the usage, for -h/--help).
    pub fn unknown(&self, flag: &str) -> String {
        if flag == "-h" || flag == "--help" {
            self.usage.to_string()
        } else {
            format!("unknown argument `{flag}`\n{}", self.usage)
        }
    }
}

/// The version line every binary prints for `--version`: its name, the
/// workspace version and the commit it was built from.
pub fn version_line(name: &str) -> String {
    format!(
        "{name} {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        env!("TAPHOLD_COMMIT")
    )
}

/// What `--help` or `--version` asks for, if anything, anywhere in the
/// command line (before or after EAL's `--`): answered before EAL starts,
/// so neither needs hugepages, devices or root.
pub fn early(args: &[String], name: &str, usage: &str) -> Option<String> {
    let after = args
        .iter()
        .position(|a| a == "--")
        .map_or(args.len(), |i| i + 1);
    // Before `--`, `-h`/`--help` would be EAL's own: answer with ours and
    // say where EAL's is.
    let ours = |a: &String| a == "--help" || a == "-h";
    if args[after.min(args.len())..].iter().any(ours)
        || args[1.min(args.len())..after.min(args.len())]
            .iter()
            .any(ours)
    {
        // A DPDK program (its usage mentions EAL) says where EAL's help is.
        return Some(if usage.contains("[EAL args]") {
            format!(
                "{usage}\n\nEAL arguments go before `--` (see the DPDK EAL documentation; `{name} --help` shows this text, not EAL's)."
            )
        } else {
            usage.to_string()
        });
    }
    args.iter()
        .skip(1)
        .any(|a| a == "--version" || a == "-V")
        .then(|| version_line(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn help_and_version_are_answered_from_anywhere_on_the_line() {
        let help = early(
            &v("prog -l 0,1 -- --config c.yaml --help"),
            "prog",
            "usage: prog [EAL args] --",
        );
        assert!(help.as_deref().unwrap().starts_with("usage: prog"));
        assert!(help.unwrap().contains("EAL arguments go before"));
        assert_eq!(
            early(&v("prog --help"), "prog", "usage: prog").as_deref(),
            Some("usage: prog"),
            "no EAL, no EAL hint"
        );
        assert!(early(&v("prog --help"), "prog", "usage: prog").is_some());
        assert!(early(&v("prog -h --"), "prog", "usage: prog").is_some());
        let version = early(&v("prog --version"), "prog", "u").unwrap();
        assert!(version.starts_with("prog 0."), "{version}");
        assert!(version.contains("commit "), "{version}");
        assert_eq!(
            early(&v("prog -l 0,1 -- --config c.yaml"), "prog", "u"),
            None
        );
        // A value that merely contains the word is not a request.
        assert_eq!(
            early(&v("prog -- --config --helpful.yaml"), "prog", "u"),
            None
        );
    }

    #[test]
    fn flags_values_numbers_and_mistakes() {
        let v: Vec<String> = ["--a", "x", "--n", "12", "--m", "soon", "--z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut a = Args::new(&v, "usage: t");
        assert_eq!(a.flag(), Some("--a"));
        assert_eq!(a.value("--a").unwrap(), "x");
        assert_eq!(a.flag(), Some("--n"));
        assert_eq!(a.number("--n").unwrap(), 12);
        assert_eq!(a.flag(), Some("--m"));
        assert!(a.number("--m").unwrap_err().contains("not a number"));
        assert_eq!(a.flag(), Some("--z"));
        assert!(a.value("--z").unwrap_err().contains("--z needs a value"));
        assert!(a.unknown("--q").contains("unknown argument `--q`"));
        assert_eq!(a.unknown("--help"), "usage: t");
        assert_eq!(a.flag(), None);
    }
}
