//! Secrets never reach a log line: a logger in front of env_logger that replaces every
//! configured secret (the cloud and local passwords, the base64 lines of the private keys) with
//! `[redacted]` in every record, whatever crate wrote it — paho-mqtt, for one, prints its whole
//! connect options, password included, at DEBUG. Records without a secret pass unchanged.

use log::{Log, Metadata, Record};

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not searched for (they would match ordinary words); the
/// configuration check asks for longer passwords anyway.
const MIN_SECRET_LEN: usize = 4;

/// A logger that redacts `secrets` from every record before `inner` writes it.
pub struct Redacting<L> {
    inner: L,
    secrets: Vec<String>,
}

impl<L: Log> Redacting<L> {
    /// Wraps `inner`; empty and very short secrets are ignored.
    pub fn new(inner: L, secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redacting { inner, secrets }
    }
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
