//! Where entries go: the [`Sink`] trait, the file sink, and the writer
//! thread that feeds a sink from the bounded queue.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Instant,
};

use prost::Message;

use super::{pb::GrpcLogEntry, Job, FLUSH_INTERVAL};

/// Receives the entries of a [`BinaryLog`](super::BinaryLog), on the log's
/// own writer thread: a sink may block and need not be thread-safe beyond
/// `Send`. An error drops the entry (counted in
/// [`BinaryLog::dropped`](super::BinaryLog::dropped)); the writer logs the
/// first error and then one in every thousand.
pub trait Sink: Send + 'static {
    /// Writes one entry.
    ///
    /// # Errors
    /// When the entry could not be written; it is then counted as dropped.
    fn write(&mut self, entry: &GrpcLogEntry) -> io::Result<()>;

    /// Makes what was written durable (called at least once a second while
    /// entries come, and on [`BinaryLog::flush`](super::BinaryLog::flush)).
    ///
    /// # Errors
    /// When flushing failed; it is logged.
    fn flush(&mut self) -> io::Result<()>;
}

/// Writes entries to a file as gRPC-Go's file sink does: a 4-byte
/// big-endian length, then the serialized `GrpcLogEntry`.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: BufWriter<File>,
}

impl FileSink {
    /// Creates (or truncates) the file at `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> io::Result<FileSink> {
        let path = path.as_ref().to_path_buf();
        let file = BufWriter::new(File::create(&path)?);
        Ok(FileSink { path, file })
    }

    /// Creates a new file in the temporary directory, named
    /// `ferrogrpc-binarylog-<pid>-<n>.bin`.
    ///
    /// # Errors
    /// When no such file can be created.
    pub fn create_temp() -> io::Result<FileSink> {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        for n in 0..1000u32 {
            let path = dir.join(format!("ferrogrpc-binarylog-{pid}-{n}.bin"));
            match File::options().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(FileSink {
                        path,
                        file: BufWriter::new(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free binary log file name in the temporary directory",
        ))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn write(&mut self, entry: &GrpcLogEntry) -> io::Result<()> {
        let bytes = entry.encode_to_vec();
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "entry over 4 GiB"))?;
        self.file.write_all(&len.to_be_bytes())?;
        self.file.write_all(&bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The writer thread: writes queued entries, flushes at least every
/// [`FLUSH_INTERVAL`] while there is something unflushed, and ends (after a
/// last flush) when every sender is gone.
pub(super) fn write_loop(mut sink: impl Sink, jobs: mpsc::Receiver<Job>, dropped: &AtomicU64) {
    let mut failures = 0u64;
    let mut dirty_since: Option<Instant> = None;
    loop {
        let job = match dirty_since {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(since) => {
                let wait = FLUSH_INTERVAL.saturating_sub(since.elapsed());
                match jobs.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        flush(&mut sink, &mut dirty_since);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match job {
            Job::Entry(entry) => {
                if let Err(err) = sink.write(&entry) {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    if failures % 1000 == 0 {
                        crate::logging::in_scope(|| {
                            tracing::error!("binary log: entry dropped, the sink failed: {err}")
                        });
                    }
                    failures += 1;
                }
                if dirty_since.is_none() {
                    dirty_since = Some(Instant::now());
                }
                if dirty_since.is_some_and(|t| t.elapsed() >= FLUSH_INTERVAL) {
                    flush(&mut sink, &mut dirty_since);
                }
            }
            Job::Flush(done) => {
                flush(&mut sink, &mut dirty_since);
                let _ = done.send(());
            }
        }
    }
    flush(&mut sink, &mut dirty_since);
}

/// Flushes the sink and notes that nothing is waiting.
fn flush(sink: &mut impl Sink, dirty: &mut Option<Instant>) {
    *dirty = None;
    if let Err(err) = sink.flush() {
        crate::logging::in_scope(|| tracing::error!("binary log: flush failed: {err}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::binarylog::{BinaryLog, Filter};

    /// Keeps entries in memory; can be told to fail or to stall.
    struct Memory {
        entries: Arc<Mutex<Vec<GrpcLogEntry>>>,
        flushes: Arc<AtomicU64>,
        fail: bool,
    }

    impl Sink for Memory {
        fn write(&mut self, entry: &GrpcLogEntry) -> io::Result<()> {
            if self.fail {
                return Err(io::Error::other("disk full"));
            }
            self.entries.lock().unwrap().push(entry.clone());
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn entry(call_id: u64) -> GrpcLogEntry {
        GrpcLogEntry {
            call_id,
            ..Default::default()
        }
    }

    #[test]
    fn entries_arrive_in_order_and_flush_waits_for_them() {
        let entries = Arc::new(Mutex::new(Vec::new()));
        let flushes = Arc::new(AtomicU64::new(0));
        let log = BinaryLog::new(
            Filter::parse("*").unwrap(),
            Memory {
                entries: Arc::clone(&entries),
                flushes: Arc::clone(&flushes),
                fail: false,
            },
        );
        for i in 1..=100 {
            log.write(entry(i));
        }
        log.flush();
        let ids: Vec<u64> = entries.lock().unwrap().iter().map(|e| e.call_id).collect();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
        assert!(flushes.load(Ordering::Relaxed) >= 1);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn the_writer_flushes_within_a_second_by_itself() {
        let flushes = Arc::new(AtomicU64::new(0));
        let log = BinaryLog::new(
            Filter::default(),
            Memory {
                entries: Arc::default(),
                flushes: Arc::clone(&flushes),
                fail: false,
            },
        );
        log.write(entry(1));
        std::thread::sleep(FLUSH_INTERVAL + std::time::Duration::from_millis(500));
        assert_eq!(flushes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_failing_sink_drops_and_counts() {
        let log = BinaryLog::new(
            Filter::default(),
            Memory {
                entries: Arc::default(),
                flushes: Arc::default(),
                fail: true,
            },
        );
        for i in 1..=10 {
            log.write(entry(i));
        }
        log.flush();
        assert_eq!(log.dropped(), 10);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        /// Blocks until told to go.
        struct Stalled(mpsc::Receiver<()>);
        impl Sink for Stalled {
            fn write(&mut self, _: &GrpcLogEntry) -> io::Result<()> {
                let _ = self.0.recv();
                Ok(())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (go, wait) = mpsc::channel();
        let log = BinaryLog::new(Filter::default(), Stalled(wait));
        let extra = 50;
        let started = Instant::now();
        // One is taken by the stalled writer, QUEUE_LEN wait, the rest drop.
        for i in 0..(super::super::QUEUE_LEN as u64 + 1 + extra) {
            log.write(entry(i));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The stalled writer may not have taken its first entry yet.
        assert!(
            (extra..=extra + 1).contains(&log.dropped()),
            "{}",
            log.dropped()
        );
        drop(go);
        log.flush();
    }

    #[test]
    fn the_file_sink_writes_length_prefixed_entries() {
        let path = std::env::temp_dir().join(format!("ferrogrpc-sink-test-{}", std::process::id()));
        let log = BinaryLog::new(Filter::default(), FileSink::create(&path).unwrap());
        log.write(entry(7));
        log.write(entry(300));
        log.flush();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut rest = &bytes[..];
        let mut ids = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            ids.push(GrpcLogEntry::decode(&rest[4..4 + len]).unwrap().call_id);
            rest = &rest[4 + len..];
        }
        assert_eq!(ids, [7, 300]);
    }
}
