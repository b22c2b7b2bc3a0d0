//! Commands run inside an instance through the Engine API's exec endpoints
//! (`POST /containers/{id}/exec`, `POST /exec/{id}/start`, `GET /exec/{id}/json`), always as
//! argument lists: a database dump streamed out of an instance, or a dump streamed into it.

use std::time::Duration;

use bollard::{
    container::LogOutput,
    exec::{CreateExecOptions, StartExecResults},
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{bounded, Engine, RuntimeError, ARCHIVE_IDLE_TIMEOUT};

/// The last bytes of a command's standard error kept for its failure message.
const STDERR_TAIL_BYTES: usize = 2048;

/// One command to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The program and its arguments; no shell is involved.
    pub argv: Vec<String>,
    /// `NAME=value` pairs added to the container's environment for this command only.
    pub env: Vec<String>,
}

impl ExecCommand {
    fn options(&self, stdin: bool) -> CreateExecOptions<String> {
        CreateExecOptions {
            cmd: Some(self.argv.clone()),
            env: Some(self.env.clone()),
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        }
    }

    fn program(&self) -> &str {
        self.argv.first().map_or("the command", String::as_str)
    }
}

fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(more);
    if tail.len() > STDERR_TAIL_BYTES {
        tail.drain(..tail.len() - STDERR_TAIL_BYTES);
    }
}

async fn next_output<S>(output: &mut S) -> Result<Option<LogOutput>, RuntimeError>
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
{
    match tokio::time::timeout(ARCHIVE_IDLE_TIMEOUT, output.next()).await {
        Err(_) => Err(RuntimeError::Timeout),
        Ok(None) => Ok(None),
        Ok(Some(item)) => item.map(Some).map_err(RuntimeError::from),
    }
}

impl Engine {
    /// `Ok` when the exec `id` exited 0, else `CommandFailed` with its exit code and the end
    /// of its standard error.
    async fn exec_outcome(
        &self,
        id: &str,
        program: &str,
        stderr: &[u8],
    ) -> Result<(), RuntimeError> {
        // The exit code is recorded a moment after the output closes.
        for _ in 0..50 {
            let inspect = bounded(self.docker.inspect_exec(id)).await?;
            if inspect.running != Some(true) {
                return match inspect.exit_code {
                    Some(0) => Ok(()),
                    code => Err(RuntimeError::CommandFailed(format!(
                        "{program} exited with {}: {}",
                        code.map_or("no exit code".to_owned(), |c| c.to_string()),
                        String::from_utf8_lossy(stderr).trim()
                    ))),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(RuntimeError::CommandFailed(format!(
            "{program} did not report how it ended"
        )))
    }

    /// Runs `command` in `container` and streams its standard output. The stream ends with
    /// an error item when the command fails (exit code ≠ 0, with the end of its standard
    /// error), so a failed dump is never mistaken for a short one.
    pub fn exec_output(
        &self,
        container: &str,
        command: ExecCommand,
    ) -> impl Stream<Item = Result<Bytes, RuntimeError>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let engine = self.clone();
        let container = container.to_owned();
        tokio::spawn(async move {
            let run = async {
                let exec = bounded(
                    engine
                        .docker
                        .create_exec(&container, command.options(false)),
                )
                .await?;
                let StartExecResults::Attached { mut output, .. } =
                    bounded(engine.docker.start_exec(&exec.id, None)).await?
                else {
                    return Err(RuntimeError::Engine("the exec did not attach".into()));
                };
                let mut stderr = Vec::new();
                while let Some(item) = next_output(&mut output).await? {
                    match item {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            if tx.send(Ok(message)).await.is_err() {
                                return Ok(()); // nobody reads any more
                            }
                        }
                        LogOutput::StdErr { message } => keep_tail(&mut stderr, &message),
                        LogOutput::StdIn { .. } => {}
                    }
                }
                engine
                    .exec_outcome(&exec.id, command.program(), &stderr)
                    .await
            };
            if let Err(e) = run.await {
                let _ = tx.send(Err(e)).await;
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
    }

    /// Runs `command` in `container` with `input` as its standard input and waits for it to
    /// end.
    ///
    /// # Errors
    /// `CommandFailed` (exit code ≠ 0, with the end of its standard error), `Engine` when
    /// writing the input failed, `Timeout` when the command goes silent for
    /// [`ARCHIVE_IDLE_TIMEOUT`].
    pub async fn exec_input<S>(
        &self,
        container: &str,
        command: &ExecCommand,
        input: S,
    ) -> Result<(), RuntimeError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let exec = bounded(self.docker.create_exec(container, command.options(true))).await?;
        let StartExecResults::Attached {
            mut output,
            input: mut stdin,
        } = bounded(self.docker.start_exec(&exec.id, None)).await?
        else {
            return Err(RuntimeError::Engine("the exec did not attach".into()));
        };
        let write = async move {
            let mut input = std::pin::pin!(input);
            while let Some(chunk) = input.next().await {
                let chunk =
                    chunk.map_err(|e| RuntimeError::Engine(format!("reading the input: {e}")))?;
                stdin.write_all(&chunk).await.map_err(|e| {
                    RuntimeError::Engine(format!("writing to {}: {e}", "the command"))
                })?;
            }
            stdin
                .shutdown()
                .await
                .map_err(|e| RuntimeError::Engine(format!("closing the input: {e}")))
        };
        let read = async {
            let mut stderr = Vec::new();
            while let Some(item) = next_output(&mut output).await? {
                if let LogOutput::StdErr { message } | LogOutput::StdOut { message } = item {
                    keep_tail(&mut stderr, &message);
                }
            }
            Ok::<_, RuntimeError>(stderr)
        };
        let (written, stderr) = tokio::join!(write, read);
        let stderr = stderr?;
        // A command that failed stops reading; its own message says more than the broken pipe.
        let outcome = self
            .exec_outcome(&exec.id, command.program(), &stderr)
            .await;
        outcome?;
        written
    }
}
