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

#[cfg(test)]
mod tests {
    use super::*;

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
