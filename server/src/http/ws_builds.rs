//! `GET /ws/builds/{id}/log`: a build's log, live. The caller is checked before the upgrade
//! (a stranger gets the 404 JSON envelope) and every [`RECHECK`](super::ws::RECHECK) after.
//!
//! Text frames, one JSON [`BuildLogFrame`] each: `text` frames to append (the log so far
//! first, then each new line), and one `end` frame with the build's status, after which the
//! socket closes (1000). A build running in this process is followed line by line; one
//! running elsewhere (HA) or not started yet is read from the database every second.

use std::time::Duration;

use app::{
    model::{BuildDetail, BuildId, BuildLogFrame},
    services::RequestContext,
};
use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        Path, State,
    },
    response::{IntoResponse, Response},
    Extension,
};
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::{rest::RestError, ws::RECHECK, AppState};

/// How often a build not followed live is read again.
const POLL: Duration = Duration::from_secs(1);

/// `GET /ws/builds/{id}/log`: see the module documentation.
pub async fn build_log(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Response {
    let id = BuildId(id);
    match state.services.builds.get_build(&ctx, &id).await {
        Ok(detail) => ws.on_upgrade(move |socket| follow(socket, state, ctx, detail)),
        Err(e) => RestError(e.with_request_id(ctx.request_id.clone())).into_response(),
    }
}

async fn send(socket: &mut WebSocket, frame: &BuildLogFrame) -> Result<(), axum::Error> {
    let text = serde_json::to_string(frame).expect("a build log frame serialises");
    socket.send(Message::Text(text.into())).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.chars().take(100).collect::<String>().into(),
        })))
        .await;
}

async fn follow(mut socket: WebSocket, state: AppState, ctx: RequestContext, first: BuildDetail) {
    let id = first.build.id.clone();
    // Bytes of the log sent so far; the stored log and the live one share their beginning.
    let mut sent = 0usize;
    let mut live: Option<Receiver<String>> = None;
    let mut detail = Some(first);
    let mut recheck = tokio::time::interval(RECHECK);
    let mut poll = tokio::time::interval(POLL);
    loop {
        if live.is_none() {
            if let Some(log) = state.build_logs.get(&id.0) {
                let (text, rx) = log.subscribe();
                live = Some(rx);
                if send_from(&mut socket, &text, &mut sent).await.is_err() {
                    return;
                }
            }
        }
        if let Some(d) = detail.take() {
            if send_from(&mut socket, &d.log, &mut sent).await.is_err() {
                return;
            }
            if live.is_none() && d.build.status.is_finished() {
                let end = BuildLogFrame::End {
                    status: d.build.status,
                    failure: d.build.failure,
                };
                if send(&mut socket, &end).await.is_ok() {
                    close(&mut socket, 1000, "build ended").await;
                }
                return;
            }
        }
        tokio::select! {
            line = async { live.as_mut().expect("following live").recv().await }, if live.is_some() => {
                let text = match line {
                    Ok(line) => format!("{line}\n"),
                    Err(RecvError::Lagged(n)) => {
                        format!("[{n} lines skipped: the connection was too slow]\n")
                    }
                    Err(RecvError::Closed) => {
                        // The build ended here; its final log and status are in the store.
                        live = None;
                        detail = reload(&mut socket, &state, &ctx, &id).await;
                        if detail.is_none() {
                            return;
                        }
                        continue;
                    }
                };
                sent += text.len();
                if send(&mut socket, &BuildLogFrame::Text { text }).await.is_err() {
                    return;
                }
            }
            _ = poll.tick(), if live.is_none() => {
                detail = reload(&mut socket, &state, &ctx, &id).await;
                if detail.is_none() {
                    return;
                }
            }
            _ = recheck.tick(), if live.is_some() => {
                if reload(&mut socket, &state, &ctx, &id).await.is_none() {
                    return;
                }
            }
        }
    }
}

/// Sends what `log` has past the first `sent` bytes, and counts it.
async fn send_from(socket: &mut WebSocket, log: &str, sent: &mut usize) -> Result<(), axum::Error> {
    if log.len() <= *sent || !log.is_char_boundary(*sent) {
        return Ok(());
    }
    let text = log[*sent..].to_owned();
    *sent = log.len();
    send(socket, &BuildLogFrame::Text { text }).await
}

/// The build again, or `None` (socket closed with 4000 + status) when the caller may no
/// longer see it.
async fn reload(
    socket: &mut WebSocket,
    state: &AppState,
    ctx: &RequestContext,
    id: &BuildId,
) -> Option<BuildDetail> {
    match state.services.builds.get_build(ctx, id).await {
        Ok(d) => Some(d),
        Err(e) => {
            close(socket, 4000 + e.status, &e.message).await;
            None
        }
    }
}
