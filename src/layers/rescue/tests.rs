use std::net::IpAddr;

use http_body_util::BodyExt;
use tower::{service_fn, ServiceBuilder, ServiceExt};

use super::*;

/// Runs one request through rescue over a service that fails with `err`; returns status, headers and body.
async fn rescued(source: &str, err: BoxError) -> (StatusCode, http::HeaderMap, String) {
    let err = std::sync::Mutex::new(Some(err));
    let svc = ServiceBuilder::new()
        .layer(RescueLayer::new(Arc::from(source), Arc::default()))
        .service(service_fn(move |_req: Request<()>| {
            let err = err.lock().expect("lock").take().expect("called once");
            async move { Err::<Response<ResBody>, BoxError>(err) }
        }));
    let resp = svc.oneshot(Request::new(())).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("full body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).expect("utf-8"),
    )
}

fn counted(source: &str, outcome: &str, reason: &str) -> f64 {
    let line = format!(
        "{}{{source=\"{source}\",outcome=\"{outcome}\",reason=\"{reason}\"}} ",
        telemetry::REQUESTS
    );
    telemetry::prometheus()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0.0)
}

async fn check(source: &str, err: BoxError, status: StatusCode, reason: &str) {
    telemetry::prometheus();
    let outcome = if status.is_server_error() {
        "error"
    } else {
        "rejected"
    };
    let before = counted(source, outcome, reason);
    let (got, headers, body) = rescued(source, err).await;
    assert_eq!(got, status);
    assert_eq!(body, format!("{{\"error\":\"{reason}\"}}"));
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        counted(source, outcome, reason),
        before + 1.0,
        "counter {source}/{outcome}/{reason}"
    );
}

#[tokio::test]
async fn unknown_source_is_404() {
    check(
        "rescue-404",
        UnknownSource.into(),
        StatusCode::NOT_FOUND,
        "unknown_source",
    )
    .await;
}

#[tokio::test]
async fn method_not_allowed_is_405_with_allow() {
    check(
        "rescue-405",
        MethodNotAllowed::POST.into(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let (_, headers, _) = rescued("rescue-405", MethodNotAllowed::POST.into()).await;
    assert_eq!(headers[header::ALLOW], "POST");
    // A source whose sender checks the endpoint with a GET allows it too.
    let (status, headers, _) = rescued("rescue-405", MethodNotAllowed::GET_POST.into()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET, POST");
}

#[tokio::test]
async fn an_x_forwarded_for_that_does_not_parse_is_400_and_nothing_inside_runs() {
    check(
        "rescue-400-xff",
        ForwardedForInvalid.into(),
        StatusCode::BAD_REQUEST,
        "malformed_forwarded_for",
    )
    .await;

    // As `client_ip` records it: an extension on the request, answered before the inner service.
    let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = reached.clone();
    let svc = ServiceBuilder::new()
        .layer(RescueLayer::new(Arc::from("rescue-400-xff"), Arc::default()))
        .service(service_fn(move |_req: Request<()>| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::new(ResBody::new("passed".into()))) }
        }));
    let before = counted("rescue-400-xff", "rejected", "malformed_forwarded_for");
    let mut req = Request::new(());
    req.extensions_mut().insert(ForwardedForInvalid);
    let resp = svc.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        !reached.load(std::sync::atomic::Ordering::SeqCst),
        "the inner service ran"
    );
    assert_eq!(
        counted("rescue-400-xff", "rejected", "malformed_forwarded_for"),
        before + 1.0
    );
}

#[tokio::test]
async fn ip_not_allowed_is_403() {
    let ip: IpAddr = "203.0.113.7".parse().expect("ip");
    check(
        "rescue-403",
        IpNotAllowed(ip).into(),
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn body_too_large_is_413() {
    check(
        "rescue-413",
        BodyTooLarge.into(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
}

#[tokio::test]
async fn unreadable_body_is_400() {
    let err = BodyReadError("connection reset".into());
    check(
        "rescue-400",
        err.into(),
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
}

#[tokio::test]
async fn verify_errors_are_401_with_their_reason() {
    check(
        "rescue-401",
        VerifyError::SignatureMismatch.into(),
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
    )
    .await;
    check(
        "rescue-401",
        VerifyError::TimestampOutsideTolerance { age_secs: 900 }.into(),
        StatusCode::UNAUTHORIZED,
        "timestamp_outside_tolerance",
    )
    .await;
    check(
        "rescue-401",
        VerifyError::MissingSignature("X-Hub-Signature-256").into(),
        StatusCode::UNAUTHORIZED,
        "missing_signature",
    )
    .await;
    check(
        "rescue-401",
        VerifyError::MissingToken("authorization").into(),
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
    check(
        "rescue-401",
        VerifyError::TokenMismatch.into(),
        StatusCode::UNAUTHORIZED,
        "token_mismatch",
    )
    .await;
}

#[tokio::test]
async fn timeout_is_408() {
    let err = tower::timeout::error::Elapsed::new();
    check(
        "rescue-408",
        err.into(),
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
    )
    .await;
}

#[tokio::test]
async fn store_errors_are_503_and_never_2xx() {
    let err = StoreError::Corrupt { what: "event" };
    check(
        "rescue-503",
        err.into(),
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
    let (_, headers, body) = rescued("rescue-503", StoreError::Corrupt { what: "event" }.into()).await;
    assert_eq!(headers[header::RETRY_AFTER], "5");
    assert!(!body.contains("corrupt"), "no internals to clients: {body}");
}

#[tokio::test]
async fn rate_limited_is_429_with_its_own_retry_after() {
    let limited = || -> BoxError { RateLimited { retry_after_secs: 7 }.into() };
    check(
        "rescue-429",
        limited(),
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let (_, headers, body) = rescued("rescue-429", limited()).await;
    assert_eq!(headers[header::RETRY_AFTER], "7");
    assert_eq!(body, r#"{"error":"rate_limited"}"#);
    // Other 4xx carry none.
    let (_, headers, _) = rescued("rescue-429", BodyTooLarge.into()).await;
    assert!(headers.get(header::RETRY_AFTER).is_none());
}

#[tokio::test]
async fn a_full_queue_is_503_queue_full_with_retry_after() {
    check(
        "rescue-queue",
        QueueFull.into(),
        StatusCode::SERVICE_UNAVAILABLE,
        "queue_full",
    )
    .await;
    let (_, headers, _) = rescued("rescue-queue", QueueFull.into()).await;
    assert_eq!(headers[header::RETRY_AFTER], "30");
}

#[tokio::test]
async fn a_full_buffer_budget_is_503_with_retry_after() {
    check(
        "rescue-budget",
        BufferBudgetExhausted.into(),
        StatusCode::SERVICE_UNAVAILABLE,
        "buffer_budget_exhausted",
    )
    .await;
    let (_, headers, body) = rescued("rescue-budget", BufferBudgetExhausted.into()).await;
    assert_eq!(headers[header::RETRY_AFTER], "5");
    assert_eq!(body, r#"{"error":"buffer_budget_exhausted"}"#);
}

#[tokio::test]
async fn anything_else_is_500_and_wrapped_errors_are_found_in_the_chain() {
    check(
        "rescue-500",
        "boom".into(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;

    #[derive(Debug, thiserror::Error)]
    #[error("accept failed")]
    struct Wrapper(#[source] StoreError);
    let wrapped = Wrapper(StoreError::Corrupt { what: "event" });
    check(
        "rescue-503b",
        wrapped.into(),
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
    )
    .await;
}

#[test]
fn every_reason_a_source_can_be_answered_with_is_registered_at_zero() {
    let ip: IpAddr = "203.0.113.7".parse().expect("ip");
    let errors: Vec<BoxError> = vec![
        MethodNotAllowed::POST.into(),
        ForwardedForInvalid.into(),
        IpNotAllowed(ip).into(),
        RateLimited { retry_after_secs: 1 }.into(),
        BodyTooLarge.into(),
        BodyReadError("reset".into()).into(),
        tower::timeout::error::Elapsed::new().into(),
        VerifyError::MissingSignature("h").into(),
        VerifyError::MissingHeader("h").into(),
        VerifyError::MalformedSignature("h").into(),
        VerifyError::MalformedTimestamp("h").into(),
        VerifyError::TimestampOutsideTolerance { age_secs: 1 }.into(),
        VerifyError::SignatureMismatch.into(),
        VerifyError::MalformedBody.into(),
        VerifyError::MissingToken("h").into(),
        VerifyError::TokenMismatch.into(),
        StoreError::Corrupt { what: "event" }.into(),
        QueueFull.into(),
        "anything else".into(),
    ];
    for err in &errors {
        let rejection = classify(&**err);
        let outcome = if rejection.status.is_server_error() {
            "error"
        } else {
            "rejected"
        };
        assert!(
            telemetry::REQUEST_SERIES.contains(&(outcome, rejection.reason)),
            "{outcome}/{} is not registered at 0",
            rejection.reason
        );
    }
}
