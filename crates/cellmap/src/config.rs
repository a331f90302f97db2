//! `nova.conf` as oslo.config reads it: INI sections, `key = value` (or
//! `key: value`), `#` and `;` comment lines, indented continuation lines,
//! several files read in order with later values overriding earlier ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The files oslo.config looks for when none is given, first found wins.
pub const DEFAULT_FILES: &[&str] = &[
    "~/.nova/nova.conf",
    "~/nova.conf",
    "/etc/nova/nova.conf",
    "/etc/nova.conf",
];

/// What went wrong reading the configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// A file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is neither a section, an option, a comment nor a continuation.
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The parsed options: `(section, key)` → value. Section `DEFAULT` is
/// matched case-insensitively, as in oslo.config.
#[derive(Debug, Default, Clone)]
pub struct Config {
    values: HashMap<(String, String), String>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

fn section_key(section: &str) -> String {
    if section.eq_ignore_ascii_case("default") {
        "DEFAULT".to_owned()
    } else {
        section.to_owned()
    }
}

impl Config {
    /// Reads `files` in order; with none, the first of [`DEFAULT_FILES`]
    /// that exists (or nothing).
    pub fn load(files: &[PathBuf]) -> Result<Self, ConfigError> {
        let mut cfg = Config::default();
        let chosen: Vec<PathBuf> = if files.is_empty() {
            DEFAULT_FILES
                .iter()
                .map(|f| expand_home(f))
                .find(|p| p.is_file())
                .into_iter()
                .collect()
        } else {
            files.to_vec()
        };
        for path in chosen {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            cfg.parse(&path, &text)?;
            cfg.files.push(path);
        }
        Ok(cfg)
    }

    /// Adds the options of one file's text (later values win).
    pub fn parse(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let mut section: Option<String> = None;
        let mut last: Option<(String, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let syntax = || ConfigError::Syntax {
                path: path.to_owned(),
                line: i + 1,
            };
            if line.starts_with(char::is_whitespace) {
                // A continuation of the previous value.
                let key = last.clone().ok_or_else(syntax)?;
                let v = self.values.entry(key).or_default();
                v.push('\n');
                v.push_str(trimmed);
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest.strip_suffix(']').ok_or_else(syntax)?.trim();
                if name.is_empty() {
                    return Err(syntax());
                }
                section = Some(section_key(name));
                last = None;
                continue;
            }
            let sec = section.clone().ok_or_else(syntax)?;
            let split = trimmed.find(['=', ':']).ok_or_else(syntax)?;
            let (k, v) = trimmed.split_at(split);
            let key = (sec, k.trim().replace('-', "_"));
            self.values.insert(key.clone(), v[1..].trim().to_owned());
            last = Some(key);
        }
        Ok(())
    }

    /// The value of `key` in `section`, if set and not empty.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(section_key(section), key.to_owned()))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, .. } => {
                write!(f, "cannot read configuration file {}", path.display())
            }
            ConfigError::Syntax { path, line } => write!(
                f,
                "configuration file {} line {line}: not a section, option or comment",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Syntax { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_override_and_continuations_join() {
        let mut c = Config::default();
        c.parse(
            Path::new("a"),
            "[DEFAULT]\ntransport_url = rabbit://a\n# c\n[api_database]\nconnection=sqlite://\n[database]\nconnection: mysql://x\n  ?charset=utf8\n",
        )
        .unwrap();
        c.parse(Path::new("b"), "[default]\ntransport-url = rabbit://b\n")
            .unwrap();
        assert_eq!(c.get("DEFAULT", "transport_url"), Some("rabbit://b"));
        assert_eq!(c.get("api_database", "connection"), Some("sqlite://"));
        assert_eq!(
            c.get("database", "connection"),
            Some("mysql://x\n?charset=utf8")
        );
        assert_eq!(c.get("database", "missing"), None);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let mut c = Config::default();
        let e = c
            .parse(Path::new("f"), "key = before any section\n")
            .unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 1, .. }));
        let e = c.parse(Path::new("f"), "[s]\nnot an option\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }));
    }
}
