//! A WebSocket from the browser to this page's host, for the live views (logs, metrics).

/// An open socket with its handlers; it is closed when dropped. Server-side rendering never
/// opens one.
pub struct LiveSocket {
    #[cfg(feature = "hydrate")]
    ws: web_sys::WebSocket,
    #[cfg(feature = "hydrate")]
    _on_message: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::MessageEvent)>,
    #[cfg(feature = "hydrate")]
    _on_close: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::CloseEvent)>,
}

impl LiveSocket {
    /// Opens `path` (e.g. `/ws/deployments/{id}/logs`) on this page's host, `wss:` under
    /// `https:`. Every text message goes to `on_text`; the close code to `on_close`.
    /// `None` when the browser refuses to open it (or on the server).
    #[cfg(feature = "hydrate")]
    pub fn open(
        path: &str,
        mut on_text: impl FnMut(String) + 'static,
        mut on_close: impl FnMut(u16) + 'static,
    ) -> Option<Self> {
        use wasm_bindgen::{closure::Closure, JsCast};
        let location = web_sys::window()?.location();
        let scheme = if location.protocol().ok()? == "https:" {
            "wss"
        } else {
            "ws"
        };
        let ws =
            web_sys::WebSocket::new(&format!("{scheme}://{}{path}", location.host().ok()?)).ok()?;
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                if let Some(text) = e.data().as_string() {
                    on_text(text);
                }
            });
        let on_close_handler =
            Closure::<dyn FnMut(web_sys::CloseEvent)>::new(move |e: web_sys::CloseEvent| {
                on_close(e.code())
            });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close_handler.as_ref().unchecked_ref()));
        Some(Self {
            ws,
            _on_message: on_message,
            _on_close: on_close_handler,
        })
    }

    /// Server-side rendering never opens a socket.
    #[cfg(not(feature = "hydrate"))]
    pub fn open(
        _path: &str,
        _on_text: impl FnMut(String) + 'static,
        _on_close: impl FnMut(u16) + 'static,
    ) -> Option<Self> {
        None
    }
}

#[cfg(feature = "hydrate")]
impl Drop for LiveSocket {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}
