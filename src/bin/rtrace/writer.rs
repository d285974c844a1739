//! [`Background`]: a file written by a thread of its own, so that writing
//! the events of `-o FILE` (the kernel's copy into the page cache, a good
//! part of the cost of an event) overlaps with reading and rendering the
//! next ones.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Bytes gathered before they are handed to the writing thread.
const BATCH: usize = 256 * 1024;
/// Batches that may wait for the writing thread: past them, a write waits
/// (memory stays bounded when the disk is slower than the events).
const QUEUED: usize = 8;

/// What the writing thread is given.
enum Job {
    Bytes(Vec<u8>),
    /// Answer on the flush channel once everything before is written.
    Flush,
}

/// A writer whose writes happen on a thread of its own, in batches of
/// [`BATCH`] bytes. `flush` waits until everything written before it is in
/// the file, and returns the first error the file gave (the error of a
/// write in the background is also returned by the next `write` that hands
/// a batch over, at most a batch later). The file is closed when the
/// `Background` is dropped, after its last bytes.
pub struct Background {
    jobs: Option<SyncSender<Job>>,
    flushed: Receiver<io::Result<()>>,
    /// Batches written, given back to be filled again (fresh memory is
    /// faulted in page by page).
    spent: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    batch: Vec<u8>,
    /// The writing thread's first error (set by it): later writes fail at
    /// once, so that a reader gone (`| head`) ends the output soon.
    failed: Arc<Mutex<Option<(io::ErrorKind, String)>>>,
    /// Bytes written since the last flush: a flush with none waits for
    /// nothing.
    unflushed: bool,
    /// An error was seen: every write fails at once.
    broken: bool,
}

impl Background {
    pub fn new(mut file: impl Write + Send + 'static) -> io::Result<Background> {
        let (jobs, todo) = mpsc::sync_channel::<Job>(QUEUED);
        let (answer, flushed) = mpsc::channel();
        let (give_back, spent) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let shared = failed.clone();
        let thread = std::thread::Builder::new()
            .name("rtrace-write".into())
            .spawn(move || {
                // The first error stops the writing; it is the answer to
                // every flush from then on, and to every write.
                let mut failed: Option<(io::ErrorKind, String)> = None;
                let fail = |e: &io::Error, failed: &mut Option<_>| {
                    *failed = Some((e.kind(), e.to_string()));
                    *shared.lock().unwrap_or_else(|p| p.into_inner()) = failed.clone();
                };
                for job in todo {
                    match job {
                        Job::Bytes(mut b) if failed.is_none() => {
                            if let Err(e) = file.write_all(&b) {
                                fail(&e, &mut failed);
                            }
                            b.clear();
                            let _ = give_back.send(b);
                        }
                        Job::Bytes(_) => {}
                        Job::Flush => {
                            let r = match &failed {
                                None => file.flush().inspect_err(|e| fail(e, &mut failed)),
                                Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
                            };
                            if answer.send(r).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(Background {
            jobs: Some(jobs),
            flushed,
            spent,
            thread: Some(thread),
            batch: Vec::with_capacity(BATCH),
            failed,
            unflushed: false,
            broken: false,
        })
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        match sent {
            true => Ok(()),
            false => Err(io::Error::other("the output's writing thread ended")),
        }
    }

    fn error(&mut self) -> Option<io::Error> {
        let e = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()));
        self.broken |= e.is_some();
        e
    }

    /// Hands the gathered bytes to the writing thread; the error it met
    /// writing the last ones, if it did.
    fn hand_over(&mut self) -> io::Result<()> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        if self.batch.is_empty() {
            return Ok(());
        }
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let batch = std::mem::replace(&mut self.batch, next);
        self.send(Job::Bytes(batch))
    }
}

impl Write for Background {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(self
                .error()
                .unwrap_or_else(|| io::Error::other("write failed")));
        }
        self.unflushed = true;
        // A batch is handed over before it would grow (a copy of it all).
        if self.batch.len() + bytes.len() > self.batch.capacity() {
            self.hand_over()?;
        }
        self.batch.extend_from_slice(bytes);
        if self.batch.len() >= BATCH {
            self.hand_over()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        if !std::mem::take(&mut self.unflushed) {
            return Ok(());
        }
        self.hand_over()?;
        self.send(Job::Flush)?;
        let r = self
            .flushed
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the output's writing thread ended")));
        if let Err(e) = &r {
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((e.kind(), e.to_string()));
            self.broken = true;
        }
        r
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.hand_over();
        // The thread ends when its jobs do, after the last write.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A file in memory that fails once it holds `limit` bytes.
    #[derive(Clone)]
    struct Memory {
        bytes: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }

    impl Write for Memory {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut bytes = self.bytes.lock().unwrap();
            if bytes.len() + b.len() > self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            bytes.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_written_is_in_the_file_in_order_at_each_flush_and_at_the_end() {
        let file = Memory {
            bytes: Arc::default(),
            limit: usize::MAX,
        };
        let mut w = Background::new(file.clone()).unwrap();
        let mut expected = Vec::new();
        for i in 0..100_000u32 {
            let line = format!("{{\"n\":{i}}}\n");
            w.write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
            if i == 50_000 {
                w.flush().unwrap();
                assert_eq!(*file.bytes.lock().unwrap(), expected);
            }
        }
        drop(w);
        assert_eq!(*file.bytes.lock().unwrap(), expected);
    }

    #[test]
    fn an_error_of_the_file_comes_back_at_the_flush_and_after() {
        let file = Memory {
            bytes: Arc::default(),
            limit: 1000,
        };
        let mut w = Background::new(file).unwrap();
        w.write_all(&[b'x'; 2000]).unwrap();
        let e = w.flush().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(
            w.write(b"more").unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        assert_eq!(w.flush().unwrap_err().kind(), io::ErrorKind::StorageFull);
    }

    /// A reader gone (`| head`) is met without a flush: the writes fail
    /// within a few batches, not at the end of the output.
    #[test]
    fn an_error_of_the_file_stops_the_writes_without_a_flush() {
        let file = Memory {
            bytes: Arc::default(),
            limit: 1000,
        };
        let mut w = Background::new(file).unwrap();
        let chunk = [b'x'; 1024];
        let mut written = 0;
        let e = loop {
            match w.write_all(&chunk) {
                Ok(()) => written += chunk.len(),
                Err(e) => break e,
            }
            assert!(written < 64 * BATCH, "still writing after {written} bytes");
        };
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }

    /// A flush with nothing written since the last one sends nothing to
    /// the writing thread.
    #[test]
    fn a_flush_with_nothing_new_waits_for_nothing() {
        let file = Memory {
            bytes: Arc::default(),
            limit: usize::MAX,
        };
        let mut w = Background::new(file.clone()).unwrap();
        w.write_all(b"one\n").unwrap();
        w.flush().unwrap();
        assert!(!w.unflushed);
        w.flush().unwrap();
        assert_eq!(*file.bytes.lock().unwrap(), b"one\n");
    }
}
