//! Live build logs: the output of each build running in this process, kept whole (capped at
//! [`LOG_MAX_BYTES`](super::LOG_MAX_BYTES)) and broadcast line by line to websocket
//! subscribers. A subscriber gets the text so far and the lines after it, with nothing lost or
//! repeated in between (both are taken under one lock).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::broadcast;

/// Lines a slow subscriber may fall behind before it misses some (it is then told so).
const CHANNEL_LINES: usize = 1024;

struct Text {
    text: String,
    version: u64,
    masks: Vec<String>,
}

struct Inner {
    text: Mutex<Text>,
    tx: broadcast::Sender<String>,
}

/// One build's live log. Cheap to clone.
#[derive(Clone)]
pub struct LiveLog {
    inner: Arc<Inner>,
}

impl Default for LiveLog {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                text: Mutex::new(Text {
                    text: String::new(),
                    version: 0,
                    masks: Vec::new(),
                }),
                tx: broadcast::channel(CHANNEL_LINES).0,
            }),
        }
    }
}

impl LiveLog {
    /// Values replaced by `***` in every later line (build argument values, tokens), so a
    /// Dockerfile that prints them does not put them in the log. Values shorter than 4
    /// characters are left (masking them would garble ordinary output).
    pub fn mask(&self, values: impl IntoIterator<Item = String>) {
        let mut t = self.inner.text.lock().expect("log lock");
        t.masks
            .extend(values.into_iter().filter(|v| v.chars().count() >= 4));
    }

    /// Appends one line (without its newline).
    pub fn line(&self, line: &str) {
        let mut t = self.inner.text.lock().expect("log lock");
        let mut line = line.trim_end_matches(['\r', '\n']).to_owned();
        for m in &t.masks {
            if line.contains(m.as_str()) {
                line = line.replace(m.as_str(), "***");
            }
        }
        t.text.push_str(&line);
        t.text.push('\n');
        if t.text.len() > super::LOG_MAX_BYTES {
            let mut cut = t.text.len() - super::LOG_MAX_BYTES;
            while !t.text.is_char_boundary(cut) {
                cut += 1;
            }
            t.text.drain(..cut);
        }
        t.version += 1;
        // No subscriber is fine.
        let _ = self.inner.tx.send(line);
    }

    /// The log so far.
    pub fn text(&self) -> String {
        self.inner.text.lock().expect("log lock").text.clone()
    }

    /// Grows by one with each line (for writers that store only changes).
    pub fn version(&self) -> u64 {
        self.inner.text.lock().expect("log lock").version
    }

    /// The log so far and a receiver of the lines after it.
    pub fn subscribe(&self) -> (String, broadcast::Receiver<String>) {
        let t = self.inner.text.lock().expect("log lock");
        (t.text.clone(), self.inner.tx.subscribe())
    }
}

/// The live logs of this process's running builds, by build id.
#[derive(Default, Clone)]
pub struct BuildLogs {
    running: Arc<Mutex<HashMap<String, LiveLog>>>,
}

impl BuildLogs {
    /// A fresh log for `build_id` (replacing one left by an earlier run of the same build).
    pub fn open(&self, build_id: &str) -> LiveLog {
        let log = LiveLog::default();
        self.running
            .lock()
            .expect("logs lock")
            .insert(build_id.to_owned(), log.clone());
        log
    }

    /// Forgets the log; its subscribers see their channel close.
    pub fn close(&self, build_id: &str) {
        self.running.lock().expect("logs lock").remove(build_id);
    }

    /// The live log of a build running in this process.
    pub fn get(&self, build_id: &str) -> Option<LiveLog> {
        self.running
            .lock()
            .expect("logs lock")
            .get(build_id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_caps() {
        let log = LiveLog::default();
        log.mask(["hunter22".to_owned(), "ab".to_owned()]);
        let (before, mut rx) = log.subscribe();
        assert_eq!(before, "");
        log.line("Step 1/2 : RUN echo hunter22 ab\r\n");
        assert_eq!(log.text(), "Step 1/2 : RUN echo *** ab\n");
        assert_eq!(rx.try_recv().unwrap(), "Step 1/2 : RUN echo *** ab");
        let big = "é".repeat(300_000);
        for _ in 0..3 {
            log.line(&big);
        }
        assert!(log.text().len() <= super::super::LOG_MAX_BYTES);
        assert_eq!(log.version(), 4);
    }
}
