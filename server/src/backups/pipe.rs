//! Bridges between the engine's async tar streams and the blocking code that reads and writes
//! repositories (rustic_core and the `tar` crate are synchronous): a [`StreamReader`] reads
//! what an async task pumps in, a [`ChannelWriter`] hands what it is given to an async
//! stream. Both are bounded, so neither side runs ahead by more than a few chunks.

use std::io::{self, Read, Write};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// Chunks in flight between the async pump and the blocking reader.
const READ_AHEAD_CHUNKS: usize = 16;
/// Bytes a [`ChannelWriter`] collects before it sends them on.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the blocking writer and the async stream.
const WRITE_AHEAD_CHUNKS: usize = 8;

enum Chunk {
    Data(Bytes),
    End,
    Failed(String),
}

/// A blocking `Read` over an async byte stream. The stream's end must be reached for the
/// reader to see end-of-file; a pump that stopped early (cancelled) reads as an error, so a
/// truncated archive is never mistaken for a complete one.
pub struct StreamReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    current: Bytes,
    done: bool,
}

impl StreamReader {
    /// Spawns a task on the current Tokio runtime that pumps `stream` into the reader. The
    /// reader must be used off the async threads (in `spawn_blocking` or a thread of its own).
    pub fn spawn<S, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let (chunk, failed) = match item {
                    Ok(bytes) => (Chunk::Data(bytes), false),
                    Err(e) => {
                        let why = e.to_string();
                        (Chunk::Failed(why), true)
                    }
                };
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
            let _ = tx.send(Chunk::End).await;
        });
        Self {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(bytes)) => self.current = bytes,
                Some(Chunk::End) => self.done = true,
                Some(Chunk::Failed(e)) => return Err(io::Error::other(e)),
                None => return Err(io::Error::other("the archive stream ended early")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A blocking `Write` whose bytes come out of [`ChannelWriter::stream`]'s async stream.
/// Writing fails with `BrokenPipe` once the stream's consumer has gone.
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// A writer and the stream that yields what is written to it, in order.
    pub fn new() -> (
        Self,
        impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(WRITE_AHEAD_CHUNKS);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (
            Self {
                tx,
                buf: Vec::with_capacity(WRITE_CHUNK_BYTES),
            },
            stream,
        )
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(WRITE_CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }

    /// Ends the stream with an error (the upload then fails instead of taking a truncated
    /// archive as complete).
    pub fn fail(self, why: String) {
        let _ = self.tx.blocking_send(Err(io::Error::other(why)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reader_sees_the_whole_stream_then_eof() {
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ];
        let mut r = StreamReader::spawn(futures_util::stream::iter(chunks));
        let text = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).map(|_| s)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(text, "hello world");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_stream_is_an_error_not_an_end() {
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"part")),
            Err("engine went away".into()),
        ];
        let mut r = StreamReader::spawn(futures_util::stream::iter(chunks));
        let err = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(err.to_string().contains("engine went away"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writer_stream_yields_what_was_written() {
        let (mut w, stream) = ChannelWriter::new();
        let writer = tokio::task::spawn_blocking(move || {
            for i in 0..1000u32 {
                w.write_all(&i.to_le_bytes()).unwrap();
            }
            w.flush().unwrap();
        });
        let got: Vec<u8> = stream
            .map(|c| c.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat();
        writer.await.unwrap();
        let want: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(got, want);
    }
}
