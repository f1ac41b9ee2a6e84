//! Responses for failures that are not a function's own result.
//!
//! A function's failure travels inside a `200` (or `560`) `UdfResponse`; everything else
//! (a bad header, a body over the limit, a timeout) is answered, as in the reference
//! implementation, with `{"code":"<ShortCode>","message":"<text>"}` and the status of the
//! code. Every part of the server and the function API builds those bodies here, so the
//! shape and the redaction rule (detail only in dev mode) are the same everywhere.

use axum::body::Body;
use axum::response::Response;
use conflux_common::Error;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;

/// The `Content-Type` of the plain-text responses of the router.
pub const TEXT_PLAIN_UTF8: &str = "text/plain; charset=utf-8";

/// The JSON error response for `err`: status from [`conflux_common::ErrorCode::http_status`],
/// body `{"code":"<ShortCode>","message":"<text>"}` (plus `"data"` when the error carries
/// user data). The message includes the error's detail only when `dev_mode` is on.
pub fn error_response(err: &Error, dev_mode: bool) -> Response {
    let status =
        StatusCode::from_u16(err.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = serde_json::Map::new();
    body.insert("code".into(), err.code().as_str().into());
    body.insert("message".into(), err.client_message(dev_mode).into());
    if let Some(data) = err.data() {
        body.insert("data".into(), data.clone());
    }
    let text = serde_json::Value::Object(body).to_string();
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text response with `status` and `text/plain; charset=utf-8`.
pub fn text_response(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN_UTF8));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_common::ErrorCode;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("an in-memory body");
        serde_json::from_slice(&bytes).expect("a JSON body")
    }

    #[tokio::test]
    async fn detail_is_sent_only_in_dev_mode() {
        let err = Error::new(ErrorCode::TokenExpired, "The token has expired")
            .with_detail("exp 100 < now 200");
        let prod = error_response(&err, false);
        assert_eq!(prod.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            body_json(prod).await,
            serde_json::json!({"code": "TokenExpired", "message": "The token has expired"})
        );
        let dev = body_json(error_response(&err, true)).await;
        assert_eq!(dev["message"], "The token has expired: exp 100 < now 200");
    }
}
