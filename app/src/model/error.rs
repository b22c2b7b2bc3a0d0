//! The one error type that crosses the wire: server functions, the REST API and the UI share it.

use serde::{Deserialize, Serialize};

/// An error safe to show to the caller.
///
/// `status` is the HTTP status the REST API answers with; `code` is a stable snake_case string
/// that scripts can match on (`project_not_found`); `message` is a sentence written for people.
/// `field` names the form field a validation error belongs to, so forms can show it in place.
/// `request_id` lets an operator find the request in the logs; it is filled in at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    /// A new error with the given HTTP status, stable code and human message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            request_id: None,
        }
    }

    /// 400 for a value of the named form field; `code` is e.g. `invalid_name`.
    pub fn invalid_field(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(400, code, message)
        }
    }

    /// 409 for a value of the named field that is already taken.
    pub fn conflict_field(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(409, code, message)
        }
    }

    /// 401: the caller is not signed in (no session, an expired one, or a bad token).
    pub fn unauthenticated() -> Self {
        Self::new(401, "unauthenticated", "Sign in to continue.")
    }

    /// 403: signed in, but this action needs a role the caller does not have.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    /// 404 with a code such as `project_not_found`. Also used for resources the caller may not
    /// see, so that ids of other customers' objects cannot be probed.
    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// 500 whose message says nothing about internals; the cause is logged where it happened.
    pub fn internal() -> Self {
        Self::new(
            500,
            "internal_error",
            "Something went wrong on our side. Try again; if it persists, give the request id to your operator.",
        )
    }

    /// The same error with the request id filled in.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

impl leptos::server_fn::error::FromServerFnError for ApiError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        match value {
            E::Request(m) | E::Response(m) => Self::new(
                503,
                "unreachable",
                format!("The server could not be reached ({m}). Check your connection and retry."),
            ),
            E::Args(m) | E::Deserialization(m) => Self::new(
                400,
                "bad_request",
                format!("The request was not understood: {m}"),
            ),
            other => {
                let mut e = Self::internal();
                e.message = format!("{} ({other})", e.message);
                e
            }
        }
    }
}

/// The JSON envelope of REST errors: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ErrorEnvelope {
    pub error: ApiError,
}
