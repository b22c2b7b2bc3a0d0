//! Server functions: one file per area. Each is a thin adapter that takes the services and the
//! request context from the Leptos context and calls one service method.

pub mod account;
pub mod admin;
pub mod backups;
pub mod builds;
pub mod deployments;
pub mod projects;
pub mod topology;

#[cfg(feature = "ssr")]
pub(crate) fn context(
) -> Result<(crate::services::Services, crate::services::RequestContext), crate::model::ApiError> {
    use crate::model::ApiError;
    use leptos::prelude::use_context;
    let services = use_context::<crate::services::Services>().ok_or_else(ApiError::internal)?;
    let parts = use_context::<http::request::Parts>().ok_or_else(ApiError::internal)?;
    let ctx = parts
        .extensions
        .get::<crate::services::RequestContext>()
        .cloned()
        .ok_or_else(ApiError::internal)?;
    Ok((services, ctx))
}

/// Attaches the request id to an error leaving a server function, and gives the response the
/// error's HTTP status. Plain HTML form posts (no JavaScript) are left alone: Leptos answers
/// those with a redirect back to the form, which a status would break.
#[cfg(feature = "ssr")]
pub(crate) fn tag(
    ctx: &crate::services::RequestContext,
) -> impl Fn(crate::model::ApiError) -> crate::model::ApiError + '_ {
    use leptos::prelude::use_context;
    move |e| {
        let html_form = use_context::<http::request::Parts>().is_some_and(|p| {
            p.headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"))
        });
        if !html_form {
            if let (Some(response), Ok(status)) = (
                use_context::<leptos_axum::ResponseOptions>(),
                http::StatusCode::from_u16(e.status),
            ) {
                response.set_status(status);
            }
        }
        e.with_request_id(ctx.request_id.clone())
    }
}
