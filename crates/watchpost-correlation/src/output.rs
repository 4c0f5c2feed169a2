//! [`LogOutput`]: where formatted log lines go, in batches.
//!
//! A line is appended to a pending buffer under a short lock; the batch reaches the sink (stdout
//! for [`crate::init`]) in one write:
//! - `flush_interval` after the first line of the batch (`WATCHPOST_LOG_FLUSH_MS`, 100 ms by
//!   default), from a background thread that sleeps while nothing is pending;
//! - at once when [`FLUSH_AT_BYTES`] are pending, by the thread whose line crossed the mark;
//! - at once for an `ERROR` line, with everything before it;
//! - on [`LogOutput::flush`] (the server calls [`crate::flush_logs`] when it stops, and the
//!   panic hook flushes before it reports) and when the last handle is dropped.
//!
//! Lines keep their order: one writer at a time takes the whole pending batch. Memory is bounded
//! by [`FLUSH_AT_BYTES`] plus one line per thread. A zero interval writes every line as it is
//! made, as `std::io::stdout` would. What a buffer can lose: the lines of the last interval when
//! the process is killed without a chance to flush (SIGKILL, the OOM killer).
//!
//! Why: with one `write(2)` per request line a busy server makes a system call per request for
//! its log alone, and when stdout is a pipe (a container runtime, journald) each call can wake
//! the reader. nginx offers the same trade for its access log (`buffer=` and `flush=`).

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Pending bytes at which the line that reaches the mark writes the batch itself.
pub const FLUSH_AT_BYTES: usize = 64 * 1024;

/// How long a line may wait for its batch by default (`WATCHPOST_LOG_FLUSH_MS`).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The longest interval accepted: past it a quiet line would wait longer than anyone tails for.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// A batching [`MakeWriter`]; clones share one buffer and one sink.
#[derive(Clone)]
pub struct LogOutput {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOutput")
            .field("flush_interval", &self.inner.interval)
            .field("pending_bytes", &lock(&self.inner.pending).len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// The sink, and the batch being written (swapped with `pending`, so no allocation per batch).
    sink: Mutex<Sink>,
    interval: Duration,
    /// The background flusher; unset when the interval is zero or the thread could not start.
    flusher: OnceLock<Thread>,
}

struct Sink {
    out: Box<dyn Write + Send>,
    batch: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogOutput {
    /// Lines to stdout, batched every `flush_interval` (zero: every line at once).
    pub fn stdout(flush_interval: Duration) -> Self {
        Self::new(io::stdout(), flush_interval)
    }

    /// Lines to `out`, batched every `flush_interval` (zero: every line at once). Intervals
    /// above [`MAX_FLUSH_INTERVAL`] are shortened to it.
    pub fn new(out: impl Write + Send + 'static, flush_interval: Duration) -> Self {
        let interval = flush_interval.min(MAX_FLUSH_INTERVAL);
        let inner = Arc::new(Inner {
            pending: Mutex::new(Vec::new()),
            sink: Mutex::new(Sink {
                out: Box::new(out),
                batch: Vec::new(),
            }),
            interval,
            flusher: OnceLock::new(),
        });
        if !interval.is_zero() {
            let weak = Arc::downgrade(&inner);
            // Without the thread every line is written at once: slower, never lost.
            if let Ok(handle) = std::thread::Builder::new()
                .name("watchpost-log-flush".to_owned())
                .spawn(move || run_flusher(&weak))
            {
                let _ = inner.flusher.set(handle.thread().clone());
            }
        }
        Self { inner }
    }

    /// The interval lines wait for their batch (zero: not batched).
    pub fn flush_interval(&self) -> Duration {
        if self.inner.flusher.get().is_some() {
            self.inner.interval
        } else {
            Duration::ZERO
        }
    }

    /// Writes every pending line now.
    pub fn flush(&self) {
        self.inner.flush();
    }
}

impl Inner {
    fn flush(&self) {
        let mut sink = lock(&self.sink);
        let sink = &mut *sink;
        {
            let mut pending = lock(&self.pending);
            if pending.is_empty() {
                return;
            }
            std::mem::swap(&mut *pending, &mut sink.batch);
        }
        // A log that cannot be written has nowhere to report it; the next batch tries again.
        let _ = sink.out.write_all(&sink.batch);
        let _ = sink.out.flush();
        sink.batch.clear();
        if sink.batch.capacity() > 4 * FLUSH_AT_BYTES {
            // One burst of huge lines does not pin its buffer for the process's life.
            sink.batch = Vec::new();
        }
    }

    fn append(&self, line: &[u8]) {
        if self.flusher.get().is_none() {
            let mut sink = lock(&self.sink);
            let _ = sink.out.write_all(line);
            let _ = sink.out.flush();
            return;
        }
        let (first, full) = {
            let mut pending = lock(&self.pending);
            let first = pending.is_empty();
            pending.extend_from_slice(line);
            (first, pending.len() >= FLUSH_AT_BYTES)
        };
        if full {
            self.flush();
        } else if first {
            // The first line of a batch schedules its flush; later lines ride along.
            if let Some(t) = self.flusher.get() {
                t.unpark();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
        if let Some(t) = self.flusher.get() {
            // The flusher finds the output gone and ends.
            t.unpark();
        }
    }
}

/// Waits for the first line of a batch, lets the interval pass, writes the batch; ends when the
/// output is dropped. Holds the output only while it writes.
fn run_flusher(output: &Weak<Inner>) {
    loop {
        std::thread::park();
        let Some(interval) = output.upgrade().map(|o| o.interval) else {
            return;
        };
        std::thread::sleep(interval);
        match output.upgrade() {
            Some(o) => o.flush(),
            None => return,
        }
    }
}

/// One event's writer: appends what it is given; an `ERROR` event flushes when it is done.
#[derive(Debug)]
pub struct Line<'a> {
    output: &'a LogOutput,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.inner.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.urgent {
            self.output.inner.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for LogOutput {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            output: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line {
            output: self,
            urgent: *meta.level() == Level::ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sink that records every write call.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn writes(&self) -> usize {
            lock(&self.0).len()
        }
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).concat()).unwrap()
        }
    }

    fn line(out: &LogOutput, text: &str) {
        out.make_writer().write_all(text.as_bytes()).unwrap();
    }

    fn wait_for(what: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !what() {
            assert!(Instant::now() < deadline, "not within 5 s");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn lines_wait_for_the_interval_and_leave_in_one_write_in_order() {
        let rec = Recorder::default();
        // Long enough that the 100 lines are in before it passes, even on a loaded machine.
        let out = LogOutput::new(rec.clone(), Duration::from_secs(1));
        assert_eq!(out.flush_interval(), Duration::from_secs(1));
        for i in 0..100 {
            line(&out, &format!("line {i}\n"));
        }
        assert_eq!(rec.writes(), 0, "held until the interval passes");
        wait_for(|| rec.writes() > 0);
        assert_eq!(rec.writes(), 1, "one write for the batch");
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(rec.text(), expected);

        // The next batch is scheduled again by its first line.
        line(&out, "later\n");
        wait_for(|| rec.writes() == 2);
        assert!(rec.text().ends_with("line 99\nlater\n"));
    }

    #[test]
    fn a_full_buffer_and_an_error_line_are_written_at_once() {
        let rec = Recorder::default();
        let out = LogOutput::new(rec.clone(), MAX_FLUSH_INTERVAL);
        let long = "x".repeat(1023) + "\n";
        for _ in 0..(FLUSH_AT_BYTES / 1024 - 1) {
            line(&out, &long);
        }
        assert_eq!(rec.writes(), 0);
        line(&out, &long);
        assert_eq!(rec.writes(), 1, "the line that filled the buffer wrote it");
        assert_eq!(rec.text().len(), FLUSH_AT_BYTES);

        // Through a subscriber, as `init` installs it: an INFO line waits, an ERROR line takes
        // it along at once.
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            assert_eq!(rec.writes(), 1);
            tracing::warn!("second");
            assert_eq!(rec.writes(), 1, "a warning waits for its batch");
            tracing::error!("third");
        });
        assert_eq!(
            rec.writes(),
            2,
            "the error line flushed with the lines before it"
        );
        let batch = rec.text()[FLUSH_AT_BYTES..].to_owned();
        let lines: Vec<&str> = batch.lines().collect();
        assert_eq!(lines.len(), 3, "{batch}");
        for (l, word) in lines.iter().zip(["first", "second", "third"]) {
            assert!(l.ends_with(word), "{batch}");
        }
    }

    #[test]
    fn flush_and_drop_write_everything_pending() {
        let rec = Recorder::default();
        let out = LogOutput::new(rec.clone(), MAX_FLUSH_INTERVAL);
        line(&out, "a\n");
        out.flush();
        assert_eq!(rec.text(), "a\n");
        line(&out, "b\n");
        drop(out);
        assert_eq!(rec.text(), "a\nb\n");
    }

    #[test]
    fn a_zero_interval_writes_every_line_at_once() {
        let rec = Recorder::default();
        let out = LogOutput::new(rec.clone(), Duration::ZERO);
        assert_eq!(out.flush_interval(), Duration::ZERO);
        line(&out, "a\n");
        line(&out, "b\n");
        assert_eq!(rec.writes(), 2);
        assert_eq!(rec.text(), "a\nb\n");
    }

    #[test]
    fn lines_from_many_threads_all_arrive_whole() {
        let rec = Recorder::default();
        let out = LogOutput::new(rec.clone(), Duration::from_millis(5));
        std::thread::scope(|s| {
            for t in 0..4 {
                let out = &out;
                s.spawn(move || {
                    for i in 0..5_000 {
                        line(out, &format!("{t} {i}\n"));
                    }
                });
            }
        });
        out.flush();
        let text = rec.text();
        let mut next = [0; 4];
        for l in text.lines() {
            let (t, i) = l.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(
                i.parse::<usize>().unwrap(),
                next[t],
                "each thread's lines in order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
    }
}
