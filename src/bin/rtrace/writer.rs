//! [`Background`]: a file written by a thread of its own, so that writing
//! the events of `-o FILE` (the kernel's copy into the page cache, a good
//! part of the cost of an event) overlaps with reading and rendering the
//! next ones.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
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
/// write in the background is also returned by the next `write`). The
/// file is closed when the `Background` is dropped, after its last bytes.
pub struct Background {
    jobs: Option<SyncSender<Job>>,
    flushed: Receiver<io::Result<()>>,
    /// Batches written, given back to be filled again (fresh memory is
    /// faulted in page by page).
    spent: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    batch: Vec<u8>,
    /// The writing thread failed: later writes fail at once.
    failed: Option<(io::ErrorKind, String)>,
}

impl Background {
    pub fn new(mut file: impl Write + Send + 'static) -> io::Result<Background> {
        let (jobs, todo) = mpsc::sync_channel::<Job>(QUEUED);
        let (answer, flushed) = mpsc::channel();
        let (give_back, spent) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rtrace-write".into())
            .spawn(move || {
                // The first error stops the writing; it is the answer to
                // every flush from then on.
                let mut failed: Option<(io::ErrorKind, String)> = None;
                for job in todo {
                    match job {
                        Job::Bytes(mut b) if failed.is_none() => {
                            if let Err(e) = file.write_all(&b) {
                                failed = Some((e.kind(), e.to_string()));
                            }
                            b.clear();
                            let _ = give_back.send(b);
                        }
                        Job::Bytes(_) => {}
                        Job::Flush => {
                            let r = match &failed {
                                None => file.flush().inspect_err(|e| {
                                    failed = Some((e.kind(), e.to_string()));
                                }),
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
            failed: None,
        })
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
        match sent {
            true => Ok(()),
            false => Err(io::Error::other("the output's writing thread ended")),
        }
    }

    fn error(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, msg)| io::Error::new(*kind, msg.clone()))
    }

    /// Hands the gathered bytes to the writing thread.
    fn hand_over(&mut self) -> io::Result<()> {
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
        if let Some(e) = self.error() {
            return Err(e);
        }
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
        self.hand_over()?;
        self.send(Job::Flush)?;
        let r = self
            .flushed
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the output's writing thread ended")));
        if let Err(e) = &r {
            self.failed = Some((e.kind(), e.to_string()));
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
}
