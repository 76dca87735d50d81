//! A small reader over a JSON object that turns every type or range mistake into an error that
//! names the key, the bad value and what is allowed, and refuses keys nobody reads.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::ConfigError;

/// Reads typed values from one JSON object; `prefix` makes nested keys read `buffer.maxBytes`.
pub struct Reader<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    seen: BTreeSet<&'static str>,
}

fn show(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

impl<'a> Reader<'a> {
    /// A reader for the top-level object.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Reader {
            map,
            prefix: String::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Full dotted name of `key`.
    pub fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// An error about `key`.
    pub fn error(&self, key: &str, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(format!("config key \"{}\": {problem}", self.name(key)))
    }

    /// The raw value, `None` for missing, `null` and `""` (Kanto writes empty strings for unset).
    fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.insert(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        }
    }

    /// An optional string.
    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.error(key, format!("{} is not a string", show(v)))),
        }
    }

    /// A string that must be present.
    pub fn required_string(
        &mut self,
        key: &'static str,
        hint: &str,
    ) -> Result<String, ConfigError> {
        self.string(key)?
            .ok_or_else(|| self.error(key, format!("is required: {hint}")))
    }

    /// An optional list of strings; a single string is split on spaces and commas (Kanto's flags).
    pub fn string_list(&mut self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.raw(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split([' ', ','])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => {
                        Err(self.error(key, format!("element {} is not a string", show(other))))
                    }
                })
                .collect(),
            Some(v) => Err(self.error(key, format!("{} is not a list of strings", show(v)))),
        }
    }

    /// An integer in `min..=max`, `default` when absent.
    pub fn integer(
        &mut self,
        key: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(self.error(
                    key,
                    format!("{} is not an integer from {min} to {max}", show(v)),
                )),
            },
        }
    }

    /// An optional integer in `1..=max` (absent: `None`); 0 is left to the caller, who knows
    /// what it would mean.
    pub fn optional_integer(
        &mut self,
        key: &'static str,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(self.error(
                    key,
                    format!("{} is not an integer from 1 to {max}", show(v)),
                )),
            },
        }
    }

    /// A fraction from 0 up to (not including) 1, `default` when absent.
    pub fn fraction(&mut self, key: &'static str, default: f64) -> Result<f64, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => match v.as_f64() {
                Some(x) if (0.0..1.0).contains(&x) => Ok(x),
                _ => Err(self.error(
                    key,
                    format!(
                        "{} is not a fraction from 0 up to 1 (e.g. 0.2 for 20 %)",
                        show(v)
                    ),
                )),
            },
        }
    }

    /// A TPM persistent handle: a JSON number (Kanto writes `tpmHandle` in decimal) or a string
    /// (`"0x81000001"`).
    pub fn tpm_handle(&mut self, key: &'static str) -> Result<Option<u32>, ConfigError> {
        use awslink_actors::tpm::keyfile;
        let checked = match self.raw(key) {
            None => return Ok(None),
            Some(Value::String(s)) => keyfile::parse_persistent_handle(s),
            Some(v) => match v.as_u64() {
                // Kanto writes 0 for "no TPM".
                Some(0) => return Ok(None),
                Some(n) => keyfile::check_persistent(n),
                None => Err(format!("{} is not a TPM handle", show(v))),
            },
        };
        checked.map(Some).map_err(|e| self.error(key, e))
    }

    /// A boolean, `default` when absent.
    pub fn boolean(&mut self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.error(key, format!("{} is not true or false", show(v)))),
        }
    }

    /// One of `allowed` (case-sensitive), `default` when absent.
    pub fn one_of(
        &mut self,
        key: &'static str,
        allowed: &[&'static str],
        default: &'static str,
    ) -> Result<&'static str, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(default);
        };
        let text = v.as_str().unwrap_or_default();
        allowed
            .iter()
            .find(|a| **a == text)
            .copied()
            .ok_or_else(|| {
                let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
                self.error(
                    key,
                    format!("{} is not one of {}", show(v), list.join(", ")),
                )
            })
    }

    /// A nested object, read with its own reader (an absent object reads as empty).
    pub fn object<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&mut Reader<'_>) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let map = match self.raw(key) {
            None => EMPTY.get_or_init(Map::new),
            Some(Value::Object(m)) => m,
            Some(v) => return Err(self.error(key, format!("{} is not an object", show(v)))),
        };
        let mut nested = Reader {
            map,
            prefix: format!("{}.", self.name(key)),
            seen: BTreeSet::new(),
        };
        let value = read(&mut nested)?;
        nested.finish()?;
        Ok(value)
    }

    /// An optional list of objects, each read with its own reader (keys read `routes[0].filter`).
    pub fn objects<T>(
        &mut self,
        key: &'static str,
        mut read: impl FnMut(&mut Reader<'_>) -> Result<T, ConfigError>,
    ) -> Result<Vec<T>, ConfigError> {
        let items = match self.raw(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(v) => return Err(self.error(key, format!("{} is not a list of objects", show(v)))),
        };
        let mut values = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(map) = item else {
                return Err(self.error(
                    key,
                    format!("element {i} ({}) is not an object", show(item)),
                ));
            };
            let mut nested = Reader {
                map,
                prefix: format!("{}[{i}].", self.name(key)),
                seen: BTreeSet::new(),
            };
            values.push(read(&mut nested)?);
            nested.finish()?;
        }
        Ok(values)
    }

    /// Fails on the first key that no one read: a typo must not pass silently.
    pub fn finish(&self) -> Result<(), ConfigError> {
        for key in self.map.keys() {
            if !self.seen.contains(key.as_str()) {
                let known: Vec<&str> = self.seen.iter().copied().collect();
                let hint = match closest(key, &known) {
                    Some(k) => format!("did you mean \"{}\"?", self.name(k)),
                    None => format!("known keys here: {}", known.join(", ")),
                };
                return Err(ConfigError::new(format!(
                    "config key \"{}\" is unknown; {hint}",
                    self.name(key)
                )));
            }
        }
        Ok(())
    }
}

/// The known key nearest to `key` by edit distance, if it is close (a likely typo).
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(&key.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
