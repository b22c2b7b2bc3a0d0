//! WebSocket endpoints (`/ws/…`).
//!
//! ## Logs
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
//!
//! ## Metrics
//! `GET /ws/deployments/{id}/metrics` streams the deployment's metrics samples, checked like
//! the logs socket. Text frames, one JSON [`MetricsFrame`] each: first `window` (the last 15
//! minutes of every instance, oldest first), then one `sample` per instance and second.
//! A socket that cannot keep up gets `skipped` with the number of samples (of every
//! deployment) that went by unsent, and goes on from the newest ones. Only a process with
//! the `metrics` role serves it; elsewhere the handshake gets 503 `metrics_unavailable`.

use std::{collections::HashMap, time::Duration};

use app::{
    model::{ApiError, DeploymentId, InstanceId, LogLine, MetricsFrame, MetricsSample},
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
use tokio::{
    sync::{broadcast::error::RecvError, mpsc},
    task::JoinSet,
};

use super::{rest::RestError, AppState};
use crate::{metrics::MetricsHub, platform::LOG_TAIL_MAX};

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
                if !still_allowed(&mut socket, &state, &ctx, &id).await {
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

/// Whether the caller may still see deployment `id`; when not, closes the socket with
/// 4000 + the HTTP status (4404 for a deleted deployment or a removed member).
async fn still_allowed(
    socket: &mut WebSocket,
    state: &AppState,
    ctx: &RequestContext,
    id: &DeploymentId,
) -> bool {
    let Err(e) = state.services.deployments.get_deployment(ctx, id).await else {
        return true;
    };
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 4000 + e.status,
            reason: e.message.chars().take(100).collect::<String>().into(),
        })))
        .await;
    false
}

/// `GET /ws/deployments/{id}/metrics`: see the module documentation.
pub async fn deployment_metrics(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Response {
    let id = DeploymentId(id);
    let refused =
        |e: ApiError| RestError(e.with_request_id(ctx.request_id.clone())).into_response();
    if let Err(e) = state.services.deployments.get_deployment(&ctx, &id).await {
        return refused(e);
    }
    let Some(metrics) = state.metrics.clone() else {
        return refused(ApiError::new(
            503,
            "metrics_unavailable",
            "this Berth process does not run the metrics role; connect to one that does",
        ));
    };
    ws.on_upgrade(move |socket| stream_metrics(socket, state, ctx, id, metrics.hub))
}

async fn stream_metrics(
    mut socket: WebSocket,
    state: AppState,
    ctx: RequestContext,
    id: DeploymentId,
    hub: std::sync::Arc<MetricsHub>,
) {
    // Subscribe before reading the window, so that nothing falls between the two; what is
    // in both is sent once.
    let mut live = hub.subscribe();
    let samples = hub.window(&id);
    let mut sent_up_to: HashMap<InstanceId, i64> = HashMap::new();
    for s in &samples {
        sent_up_to.insert(s.instance_id.clone(), s.at_ms);
    }
    if send_frame(&mut socket, &MetricsFrame::Window { samples })
        .await
        .is_err()
    {
        return;
    }
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
    loop {
        tokio::select! {
            _ = recheck.tick() => {
                if !still_allowed(&mut socket, &state, &ctx, &id).await {
                    return;
                }
            }
            received = live.recv() => {
                let frame = match received {
                    Ok(sample) if sample.deployment_id == id => {
                        let newer = sent_up_to.get(&sample.instance_id).is_none_or(|t| sample.at_ms > *t);
                        if !newer {
                            continue;
                        }
                        sent_up_to.insert(sample.instance_id.clone(), sample.at_ms);
                        MetricsFrame::Sample { sample: MetricsSample::clone(&sample) }
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => MetricsFrame::Skipped { missed },
                    Err(RecvError::Closed) => return,
                };
                if send_frame(&mut socket, &frame).await.is_err() {
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

async fn send_frame(socket: &mut WebSocket, frame: &MetricsFrame) -> Result<(), axum::Error> {
    let text = serde_json::to_string(frame).expect("a metrics frame serialises");
    socket.send(Message::Text(text.into())).await
}
