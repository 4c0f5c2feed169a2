//! [`LogCapture`]: collect what a `tracing` subscriber writes, to assert on structured (JSON) log lines.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// An in-memory log sink; clones share the same buffer.
#[derive(Debug, Clone, Default)]
pub struct LogCapture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Every line that parses as a JSON object (non-JSON lines are left out).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// Forgets what was captured.
    pub fn clear(&self) {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// A JSON subscriber (all levels, span fields flattened into each line) writing into this capture.
    pub fn json_subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(self.clone())
            .finish()
    }

    /// Installs [`json_subscriber`](Self::json_subscriber) for the current thread until the guard drops
    /// (use a current-thread runtime so every task logs on this thread).
    pub fn set_default(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(self.json_subscriber())
    }
}

/// The writer handed to `tracing_subscriber` for each event.
#[derive(Debug)]
pub struct CaptureWriter {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> Self::Writer {
        CaptureWriter {
            buf: self.buf.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_json_lines() {
        let cap = LogCapture::new();
        {
            let _g = cap.set_default();
            tracing::info!(request_id = "r1", "hello");
        }
        let lines = cap.json_lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["fields"]["request_id"], "r1");
        assert_eq!(lines[0]["fields"]["message"], "hello");
    }
}
