//! Secrets never reach a log line: a logger in front of env_logger that replaces every
//! configured secret (the cloud and local passwords, the base64 lines of the private keys) with
//! `[redacted]` in every record, whatever crate wrote it — paho-mqtt, for one, prints its whole
//! connect options, password included, at DEBUG. Records without a secret pass unchanged.

use log::{Log, Metadata, Record};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are searched for only between quotes, as a Debug print shows
/// them (bare, they would match ordinary words).
const MIN_SECRET_LEN: usize = 4;

/// A logger that redacts `secrets` from every record before `inner` writes it.
pub struct Redacting<L> {
    inner: L,
    secrets: Vec<String>,
}

impl<L: Log> Redacting<L> {
    /// Wraps `inner`; every secret is searched for as written and as Debug prints it.
    pub fn new(inner: L, secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().flat_map(|s| needles(&s)).collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redacting { inner, secrets }
    }
}

/// The strings that give `secret` away in a log line: itself, and its Debug forms as `str` and
/// as `CString` (paho-mqtt prints its options with `{:?}`, which escapes quotes and
/// backslashes). Short secrets only with the quotes Debug puts around them.
fn needles(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let str_debug = format!("{secret:?}");
    let cstring_debug = std::ffi::CString::new(secret)
        .map(|c| format!("{c:?}"))
        .unwrap_or_else(|_| str_debug.clone());
    if secret.len() < MIN_SECRET_LEN {
        return vec![str_debug, cstring_debug];
    }
    let inner = |quoted: &str| quoted[1..quoted.len() - 1].to_string();
    vec![secret.to_string(), inner(&str_debug), inner(&cstring_debug)]
}

/// `text` with every secret replaced, or `None` when it holds none.
pub fn redact(text: &str, secrets: &[String]) -> Option<String> {
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return None;
    }
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    Some(out)
}

/// The lines of a PEM private key that carry key material (everything but the armour), so a
/// log line quoting any of them is redacted.
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

impl<L: Log> Log for Redacting<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if self.secrets.is_empty() {
            return self.inner.log(record);
        }
        let text = record.args().to_string();
        match redact(&text, &self.secrets) {
            None => self.inner.log(record),
            Some(clean) => self.inner.log(
                &Record::builder()
                    .metadata(record.metadata().clone())
                    .args(format_args!("{clean}"))
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn redaction_by_table() {
        let secrets = vec!["hunter2-long".to_string(), "hunter2".to_string()];
        let rows = [
            ("no secret here", None),
            (
                "password: Some(\"hunter2\")",
                Some("password: Some(\"[redacted]\")"),
            ),
            (
                "hunter2-long and hunter2",
                Some("[redacted] and [redacted]"),
            ),
        ];
        for (text, expected) in rows {
            assert_eq!(redact(text, &secrets).as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn debug_forms_and_short_secrets_are_redacted_too() {
        let logger_secrets: Vec<String> = ["it's\"p\\ss-long", "abc"]
            .iter()
            .flat_map(|s| needles(s))
            .collect();
        let mut sorted = logger_secrets.clone();
        sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let cstring = format!("{:?}", std::ffi::CString::new("it's\"p\\ss-long").unwrap());
        let rows = [
            (
                format!("password: Some({cstring})"),
                "password: Some(\"[redacted]\")",
            ),
            (
                format!("password: {:?}", "it's\"p\\ss-long"),
                "password: \"[redacted]\"",
            ),
            (
                "user: \"abc\" and abcdef".to_string(),
                "user: [redacted] and abcdef",
            ),
        ];
        for (text, expected) in rows {
            assert_eq!(redact(&text, &sorted).as_deref(), Some(expected), "{text}");
        }
    }

    #[test]
    fn pem_body_lines_skip_the_armour() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\nBBBB\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_body_lines(pem), vec!["AAAA", "BBBB"]);
    }

    /// A logger that keeps what it is asked to write.
    #[derive(Clone, Default)]
    struct Keep(Arc<Mutex<Vec<String>>>);

    impl Log for Keep {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &Record<'_>) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
        fn flush(&self) {}
    }

    #[test]
    fn the_logger_redacts_every_record_and_passes_the_rest() {
        let keep = Keep::default();
        let logger = Redacting::new(keep.clone(), ["s3cr3t-pass".to_string(), "ab".to_string()]);
        for text in [
            "Connect options: password: Some(\"s3cr3t-pass\")",
            "ab is too short to hide",
        ] {
            logger.log(
                &Record::builder()
                    .args(format_args!("{text}"))
                    .level(log::Level::Debug)
                    .target("paho_mqtt::async_client")
                    .build(),
            );
        }
        let lines = keep.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            vec![
                "Connect options: password: Some(\"[redacted]\")".to_string(),
                "ab is too short to hide".to_string()
            ]
        );
    }
}
