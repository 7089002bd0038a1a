//! A log writer that gathers lines in memory and writes them out in batches, from a thread of its own.
//!
//! A request's task only appends its line to a shared buffer (a lock and a copy): it never makes a
//! write call, so a slow or blocked stdout does not stall the request path until the buffer is full.
//! The writing thread is woken by the first line after it has written a batch, waits [`LINGER`] so
//! that the lines of a busy moment go out together, then writes all that has gathered in one call.
//!
//! tracing-appender's `non_blocking` writer, which hookgate used before, sends each line over a
//! channel as a buffer of its own and wakes its thread for nearly every line; under load that made
//! two thread wake-ups and allocations per request, and logging at `info` took about a tenth more
//! CPU per request than logging at `warn`. Here a wake-up serves every line of a [`LINGER`].
//!
//! No line is dropped: once [`MAX_PENDING`] bytes wait, a task that logs waits for the writing thread
//! (as the previous writer did with its queue full). A line is at most [`LINGER`] late on its way out,
//! and [`FlushGuard`] writes out what is left when it is dropped, at exit; a line logged after that
//! is not written (the thread has ended).

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writing thread lets lines gather before it writes them.
const LINGER: Duration = Duration::from_millis(10);

/// The most bytes that wait to be written; a line that would go past it waits (about 4,000 request
/// lines: a 10 ms batch under a load of 20,000 requests a second is about a tenth of it).
const MAX_PENDING: usize = 1024 * 1024;

/// The writer to hand to the `fmt` subscriber; see the module docs.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes out the lines still waiting, and stops the writing thread, when dropped.
#[must_use = "dropping the guard stops the writing thread"]
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when a line arrives in an empty buffer, and at close.
    filled: Condvar,
    /// Signalled when the writing thread has taken the buffer.
    drained: Condvar,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BatchedWriter {
    /// Starts a thread named `thread_name` that writes the gathered lines to `out`.
    pub fn spawn<W>(out: W, thread_name: &str) -> io::Result<(BatchedWriter, FlushGuard)>
    where
        W: Write + Send + 'static,
    {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        let thread = std::thread::Builder::new().name(thread_name.to_owned()).spawn({
            let shared = shared.clone();
            move || write_batches(&shared, out)
        })?;
        Ok((
            BatchedWriter {
                shared: shared.clone(),
            },
            FlushGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

/// The writing thread: waits for a line, lets more gather, writes them all; until closed and empty.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    let mut failed = false;
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closed {
            pending = shared.filled.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        if pending.lines.is_empty() {
            return;
        }
        if !pending.closed {
            drop(pending);
            std::thread::sleep(LINGER);
            pending = shared.lock();
        }
        // Swap rather than take: both buffers keep their capacity, so a steady load allocates nothing.
        std::mem::swap(&mut pending.lines, &mut batch);
        drop(pending);
        shared.drained.notify_all();
        if let Err(e) = out.write_all(&batch).and_then(|()| out.flush()) {
            // Nowhere left to log it but stderr; once, and the lines are dropped from then on.
            if !failed {
                failed = true;
                eprintln!("hookgate: writing log lines failed, dropping them: {e}");
            }
        }
        batch.clear();
    }
}

impl Write for &BatchedWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &self.shared;
        let mut pending = shared.lock();
        while !pending.lines.is_empty() && pending.lines.len() + line.len() > MAX_PENDING && !pending.closed {
            pending = shared.drained.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        drop(pending);
        // Later lines find the thread awake already (or about to write them).
        if first {
            shared.filled.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = &'a BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_one();
        self.shared.drained.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        sync::{mpsc, Arc, Mutex},
        time::{Duration, Instant},
    };

    use super::{BatchedWriter, MAX_PENDING};

    /// An output that records each write call, and can be held (a stalled stdout).
    #[derive(Clone, Default)]
    struct Out {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        held: Arc<Mutex<()>>,
    }

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.held.lock().unwrap();
            self.writes.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Out {
        fn written(&self) -> Vec<u8> {
            self.writes.lock().unwrap().concat()
        }
    }

    #[test]
    fn lines_come_out_whole_in_order_and_in_few_writes() {
        let out = Out::default();
        // The output is stalled while the lines are logged, so that they gather behind its first write.
        let stalled = out.held.lock().unwrap();
        let (writer, guard) = BatchedWriter::spawn(out.clone(), "test-log").expect("spawn");
        let mut expected = Vec::new();
        for i in 0..1000 {
            let line = format!("{{\"n\":{i}}}\n");
            (&writer).write_all(line.as_bytes()).expect("write");
            expected.extend_from_slice(line.as_bytes());
        }
        drop(stalled);
        drop(guard);
        assert_eq!(
            String::from_utf8(out.written()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        // The batch the thread was writing when the output stalled, then the rest at once.
        let writes = out.writes.lock().unwrap().len();
        assert!(writes <= 2, "{writes} write calls for 1,000 lines");
    }

    #[test]
    fn a_lone_line_goes_out_without_waiting_for_more() {
        let out = Out::default();
        let (writer, _guard) = BatchedWriter::spawn(out.clone(), "test-log").expect("spawn");
        (&writer).write_all(b"alone\n").expect("write");
        let waited = Instant::now();
        while out.written().is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the line never went out"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.written(), b"alone\n");
    }

    #[test]
    fn a_full_buffer_makes_the_logging_thread_wait_and_no_line_is_lost() {
        let out = Out::default();
        let stalled = out.held.lock().unwrap();
        let (writer, guard) = BatchedWriter::spawn(out.clone(), "test-log").expect("spawn");
        let line = vec![b'x'; 1000];
        let lines = 3 * MAX_PENDING / line.len();
        let (done, finished) = mpsc::channel();
        let logging = std::thread::spawn({
            let writer = writer.clone();
            let line = line.clone();
            move || {
                for _ in 0..lines {
                    (&writer).write_all(&line).expect("write");
                }
                done.send(()).unwrap();
            }
        });
        // The output is stalled: the logging thread must block once the buffer is full.
        assert!(
            finished.recv_timeout(Duration::from_millis(200)).is_err(),
            "did not wait"
        );
        let pending = writer.shared.lock().lines.len();
        assert!(pending <= MAX_PENDING, "{pending} bytes pending");
        drop(stalled);
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("never went on");
        logging.join().unwrap();
        drop(guard);
        assert_eq!(out.written().len(), lines * line.len());
    }
}
