//! WebSocket clients for the `/ws/...` tests: a handshake with chosen headers, the status
//! of a refused one, and an API token to authenticate with.

use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

use super::{Browser, Expect, TestApp};

/// An open client socket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A new API token of `b`'s user (its secret), for an `authorization: Bearer` header.
pub async fn token(b: &Browser) -> String {
    let created = b
        .post_json("/api/v1/tokens", &json!({"name": "websocket"}))
        .await
        .expect_status(StatusCode::CREATED)
        .await;
    created["secret"].as_str().unwrap().to_owned()
}

/// A handshake with `path` on `app` carrying `headers`.
pub async fn connect(
    app: &TestApp,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// The HTTP status a refused handshake got.
pub fn refused_with(result: Result<Socket, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected handshake error: {e}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}
