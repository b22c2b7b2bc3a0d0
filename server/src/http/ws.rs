//! WebSocket endpoints (`/ws/…`).
//!
//! `GET /ws/deployments/{id}/logs?tail=N` follows a deployment's instance output live. The
//! caller is checked before the upgrade (a stranger gets the usual 404 JSON envelope, not a
//! socket; a cross-site upgrade with the session cookie is refused by the middleware like a
//! cross-site POST) and again every [`RECHECK`], so a removed member or a deleted deployment
//! ends the stream with close code 4404.
//!
//! Messages are text frames, one JSON [`LogLine`] each: first the last `tail` lines (default
//! 200, at most 5000) of all instances, oldest first, then every new line as the engine
//! delivers it. Instances that appear later (a rollout, a restart) are followed from their
//! first line on. A line written between reading the tail and starting to follow may be
//! missed; none is sent twice.

use std::{collections::HashMap, time::Duration};

use app::{
    model::{DeploymentId, InstanceId, LogLine},
    services::RequestContext,
};
use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        Path, Query, State,
    },
    response::{IntoResponse, Response},
    Extension,
};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::{sync::mpsc, task::JoinSet};

use super::{rest::RestError, AppState};
use crate::platform::LOG_TAIL_MAX;

/// How often a follower re-checks access and looks for new instances.
pub const RECHECK: Duration = Duration::from_secs(2);

/// Lines buffered between the engines and a slow browser before followers wait.
const BUFFER: usize = 1024;

/// Query of the logs socket.
#[derive(Debug, Deserialize)]
pub struct FollowQuery {
    /// Lines of history sent first (default 200, at most 5000).
    pub tail: Option<u32>,
}

/// `GET /ws/deployments/{id}/logs`: see the module documentation.
pub async fn deployment_logs(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    Query(q): Query<FollowQuery>,
) -> Response {
    let id = DeploymentId(id);
    let backlog = match state
        .services
        .deployments
        .instance_logs(&ctx, &id, q.tail.unwrap_or(200))
        .await
    {
        Ok(lines) => lines,
        Err(e) => return RestError(e.with_request_id(ctx.request_id.clone())).into_response(),
    };
    ws.on_upgrade(move |socket| follow(socket, state, ctx, id, backlog))
}

async fn follow(
    mut socket: WebSocket,
    state: AppState,
    ctx: RequestContext,
    id: DeploymentId,
    backlog: Vec<LogLine>,
) {
    for line in &backlog {
        if send(&mut socket, line).await.is_err() {
            return;
        }
    }
    let (tx, mut rx) = mpsc::channel::<LogLine>(BUFFER);
    // Dropping the set (when the socket ends) aborts every follower.
    let mut followers = JoinSet::new();
    let mut followed: HashMap<String, String> = HashMap::new();
    let mut recheck = tokio::time::interval(RECHECK);
    let mut first = true;
    loop {
        tokio::select! {
            _ = recheck.tick() => {
                // Access first: membership can be revoked and the deployment deleted meanwhile.
                if let Err(e) = state.services.deployments.get_deployment(&ctx, &id).await {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 4000 + e.status,
                            reason: e.message.chars().take(100).collect::<String>().into(),
                        })))
                        .await;
                    return;
                }
                // Instances there at connect time were covered by the backlog; later ones are
                // read from their first line.
                let tail = if first { 0 } else { LOG_TAIL_MAX };
                first = false;
                start_followers(&state, &id, tail, &mut followed, &mut followers, &tx).await;
            }
            Some(line) = rx.recv() => {
                if send(&mut socket, &line).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Follows every instance with a container that is not followed yet (a replaced container
/// of the same instance is followed anew).
async fn start_followers(
    state: &AppState,
    id: &DeploymentId,
    tail: u32,
    followed: &mut HashMap<String, String>,
    followers: &mut JoinSet<()>,
    tx: &mpsc::Sender<LogLine>,
) {
    let Ok(locations) = state.store.locations().for_deployment(&id.0).await else {
        return;
    };
    for loc in locations {
        let Some(container) = loc.container_id.clone() else {
            continue;
        };
        if followed.get(&loc.id) == Some(&container) {
            continue;
        }
        let Ok(engine) = state.orchestrator.engine(&loc.node_id) else {
            continue;
        };
        followed.insert(loc.id.clone(), container.clone());
        let tx = tx.clone();
        let instance = InstanceId(loc.id.clone());
        followers.spawn(async move {
            let mut output = Box::pin(engine.container_output(&container, tail, true));
            while let Some(Ok(line)) = output.next().await {
                let line = LogLine {
                    instance_id: instance.clone(),
                    stream: line.stream.into(),
                    timestamp: line.timestamp,
                    text: line.text,
                };
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn send(socket: &mut WebSocket, line: &LogLine) -> Result<(), axum::Error> {
    let text = serde_json::to_string(line).expect("a log line serialises");
    socket.send(Message::Text(text.into())).await
}
