//! Rejects clients outside the source's `allow_ips` with [`IpNotAllowed`] (403).
//!
//! A source without `allow_ips` accepts any address; the config refuses an empty list, which would
//! silently reject everything.

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use http::Request;
use ipnet::IpNet;
use tower::{Layer, Service};

use super::{facts::ClientIp, BoxError, BoxFuture};

/// The client's address is not in the source's allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client address {0} is not allowed")]
pub(crate) struct IpNotAllowed(pub IpAddr);

/// The server did not record the client's address; a wiring bug, not the client's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client address unknown")]
pub(crate) struct ClientIpMissing;

/// Applies an allowlist.
#[derive(Debug, Clone)]
pub(crate) struct IpAllowLayer {
    allow: Option<Arc<[IpNet]>>,
}

impl IpAllowLayer {
    /// `None` allows any address.
    pub(crate) fn new(allow: Option<Arc<[IpNet]>>) -> Self {
        Self { allow }
    }
}

impl<S> Layer<S> for IpAllowLayer {
    type Service = IpAllow<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IpAllow {
            inner,
            allow: self.allow.clone(),
        }
    }
}

/// See [`IpAllowLayer`].
#[derive(Debug, Clone)]
pub(crate) struct IpAllow<S> {
    inner: S,
    allow: Option<Arc<[IpNet]>>,
}

impl<S, B> Service<Request<B>> for IpAllow<S>
where
    S: Service<Request<B>, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(allow) = &self.allow {
            let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>().copied() else {
                return Box::pin(std::future::ready(Err(ClientIpMissing.into())));
            };
            if !allow.iter().any(|net| net.contains(&ip)) {
                return Box::pin(std::future::ready(Err(IpNotAllowed(ip).into())));
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    async fn call(allow: Option<&[&str]>, client: Option<&str>) -> Result<&'static str, BoxError> {
        let allow = allow.map(|a| {
            a.iter()
                .map(|c| c.parse().expect("cidr"))
                .collect::<Vec<IpNet>>()
                .into()
        });
        let svc = ServiceBuilder::new()
            .layer(IpAllowLayer::new(allow))
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, BoxError>("passed")
            }));
        let mut req = Request::new(());
        if let Some(ip) = client {
            req.extensions_mut().insert(ClientIp(ip.parse().expect("ip")));
        }
        svc.oneshot(req).await
    }

    #[tokio::test]
    async fn allows_listed_networks_only() {
        let allow = ["140.82.112.0/20", "2a0a:a440::/29"];
        assert_eq!(
            call(Some(&allow), Some("140.82.112.9")).await.expect("allowed"),
            "passed"
        );
        assert_eq!(
            call(Some(&allow), Some("2a0a:a440::1")).await.expect("allowed"),
            "passed"
        );
        let err = call(Some(&allow), Some("203.0.113.1"))
            .await
            .expect_err("rejected");
        assert!(err.downcast_ref::<IpNotAllowed>().is_some());
    }

    #[tokio::test]
    async fn no_list_allows_anyone_and_a_missing_address_is_an_error() {
        assert_eq!(call(None, Some("203.0.113.1")).await.expect("allowed"), "passed");
        assert_eq!(call(None, None).await.expect("allowed"), "passed");
        let err = call(Some(&["10.0.0.0/8"]), None).await.expect_err("rejected");
        assert!(err.downcast_ref::<ClientIpMissing>().is_some());
    }
}
