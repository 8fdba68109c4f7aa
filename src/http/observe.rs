//! The tower layer that counts and times every HTTP request (see [`super::metrics`]).
//!
//! It sits outermost in `service::service`, so it sees what the client sees: CORS preflights
//! answered by the CORS layer, the WebSocket and SSE routes served outside warp, and every
//! error the router makes. It times until the response head is ready (the service's future
//! resolves), not until the body ends: a stream's life is not a response time.
//!
//! Per request it takes one `Arc` clone: the labels are literals (the status label borrows
//! `StatusCode::as_str`, itself a static table) and the metric vectors find an existing
//! series by hashing the label values.
//!
//! It also opens the request's `request` span with a server-assigned `request_id` (a
//! process-wide counter; a client's own id is never trusted), entered whenever the handler
//! runs, so every log line of the request carries it (`LOG_FORMAT=json` shows it as a span
//! field), and answers it as the `x-request-id` header to correlate a response with its logs.

use super::metrics::{method_label, route_label, ABORTED};
use crate::metrics::Metrics;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tower::{Layer, Service};
use tracing::instrument::{Instrument, Instrumented};

/// The next `request_id` (1, 2, ...: unique within this process's life).
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

/// The response header that carries the request's id.
const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Wraps a service in [`Observe`].
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ObserveLayer { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts each request under its route template, method and status.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = route_label(req.method(), req.uri().path());
        let method = method_label(req.method());
        let timer = InFlight::start(self.metrics.clone(), route, method);
        let request_id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("request", request_id, method, route);
        let inner = span.in_scope(|| self.inner.call(req));
        Observed {
            inner: inner.instrument(span),
            timer: Some(timer),
            request_id,
        }
    }
}

pin_project! {
    /// The inner service's future, recording its outcome when it resolves (or is dropped).
    pub struct Observed<F> {
        #[pin]
        inner: Instrumented<F>,
        timer: Option<InFlight>,
        request_id: u64,
    }
}

impl<F, R, E> Future for Observed<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut output = std::task::ready!(this.inner.as_mut().poll(cx));
        if let Some(timer) = this.timer.take() {
            match &mut output {
                Ok(response) => {
                    if tracing::enabled!(tracing::Level::DEBUG) {
                        // The access log line, in the request's span (so with its id).
                        let span = this.inner.as_ref().get_ref().span();
                        let status = response.status().as_u16();
                        span.in_scope(|| tracing::debug!(status, "answered"));
                    }
                    timer.finish(response.status().as_str());
                    response
                        .headers_mut()
                        .insert(REQUEST_ID, http::HeaderValue::from(*this.request_id));
                }
                // Our services are infallible; an error still leaves no response head.
                Err(_) => drop(timer),
            }
        }
        Poll::Ready(output)
    }
}

/// One request being answered: in `http_requests_in_flight` from `start` until dropped.
/// Dropped without [`InFlight::finish`] (the client left, hyper dropped the future) it is
/// counted with the status `aborted` and not timed.
pub struct InFlight {
    metrics: Arc<Metrics>,
    route: &'static str,
    method: &'static str,
    started: Instant,
    finished: bool,
}

impl InFlight {
    pub fn start(metrics: Arc<Metrics>, route: &'static str, method: &'static str) -> Self {
        metrics.http.in_flight.inc();
        InFlight {
            metrics,
            route,
            method,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Counts the response head with `status` and its time.
    pub fn finish(mut self, status: &str) {
        let http = &self.metrics.http;
        http.duration
            .with_label_values(&[self.route, self.method])
            .observe(self.started.elapsed().as_secs_f64());
        http.requests
            .with_label_values(&[self.route, self.method, status])
            .inc();
        self.finished = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let http = &self.metrics.http;
        http.in_flight.dec();
        if !self.finished {
            http.requests
                .with_label_values(&[self.route, self.method, ABORTED])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, route: &str, method: &str, status: &str) -> u64 {
        metrics
            .http
            .requests
            .with_label_values(&[route, method, status])
            .get()
    }

    #[test]
    fn a_finished_request_is_counted_timed_and_leaves_the_gauge() {
        let metrics = Arc::new(Metrics::new());
        let timer = InFlight::start(metrics.clone(), "/health", "GET");
        assert_eq!(metrics.http.in_flight.get(), 1);
        timer.finish("200");
        assert_eq!(metrics.http.in_flight.get(), 0);
        assert_eq!(count(&metrics, "/health", "GET", "200"), 1);
        assert_eq!(count(&metrics, "/health", "GET", ABORTED), 0);
        let timed = metrics
            .http
            .duration
            .with_label_values(&["/health", "GET"])
            .get_sample_count();
        assert_eq!(timed, 1);
    }

    #[test]
    fn a_dropped_request_is_counted_as_aborted_and_not_timed() {
        let metrics = Arc::new(Metrics::new());
        drop(InFlight::start(metrics.clone(), "/sse/{sessionId}", "GET"));
        assert_eq!(metrics.http.in_flight.get(), 0);
        assert_eq!(count(&metrics, "/sse/{sessionId}", "GET", ABORTED), 1);
        let timed = metrics
            .http
            .duration
            .with_label_values(&["/sse/{sessionId}", "GET"])
            .get_sample_count();
        assert_eq!(timed, 0);
    }

    #[tokio::test]
    async fn the_layer_labels_requests_by_template_and_status() {
        use tower::ServiceExt;
        let metrics = Arc::new(Metrics::new());
        let service = ObserveLayer::new(metrics.clone()).layer(tower::service_fn(
            |req: Request<()>| async move {
                let status = if req.uri().path() == "/health" {
                    200
                } else {
                    404
                };
                let mut response = Response::new(());
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, std::convert::Infallible>(response)
            },
        ));
        for path in ["/health", "/nope", "/also/nope", "/health"] {
            let req = Request::get(path).body(()).unwrap();
            service.clone().oneshot(req).await.unwrap();
        }
        let mut ids = Vec::new();
        for path in ["/health", "/health"] {
            let req = Request::get(path).body(()).unwrap();
            let response = service.clone().oneshot(req).await.unwrap();
            let id = response
                .headers()
                .get("x-request-id")
                .expect("x-request-id");
            ids.push(id.to_str().unwrap().parse::<u64>().unwrap());
        }
        assert_ne!(ids[0], ids[1], "each request has its own id");
        assert_eq!(count(&metrics, "/health", "GET", "200"), 4);
        assert_eq!(count(&metrics, "other", "GET", "404"), 2);
        assert_eq!(metrics.http.in_flight.get(), 0);
    }
}
