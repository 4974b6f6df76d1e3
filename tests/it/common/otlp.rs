//! An in-process OTLP receiver (gRPC and HTTP/protobuf) built on opentelemetry-proto's
//! generated service types: it keeps every request it gets, for tests to compare with what
//! was exported.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tokio::sync::Notify;

/// What the receiver got.
#[derive(Default)]
pub struct Received {
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
}

#[derive(Clone, Default)]
pub struct Inbox {
    pub received: Arc<Mutex<Received>>,
    pub notify: Arc<Notify>,
}

impl Inbox {
    /// Waits (without polling) until `ready` holds for what was received.
    pub async fn wait_for(&self, ready: impl Fn(&Received) -> bool) {
        loop {
            let notified = self.notify.notified();
            if ready(&self.received.lock().unwrap()) {
                return;
            }
            notified.await;
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Inbox {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().metrics.push(request.into_inner());
        self.notify.notify_waiters();
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Inbox {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.received.lock().unwrap().logs.push(request.into_inner());
        self.notify.notify_waiters();
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A receiver listening on a free loopback port.
pub struct Receiver {
    /// The endpoint to give the exporter.
    pub endpoint: String,
    pub inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// OTLP/gRPC (metrics and logs services).
pub async fn grpc() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Inbox::default();
    let server = tonic::transport::Server::builder()
        .add_service(MetricsServiceServer::new(inbox.clone()).max_decoding_message_size(64 << 20))
        .add_service(LogsServiceServer::new(inbox.clone()).max_decoding_message_size(64 << 20))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let task = tokio::spawn(async move {
        server.await.unwrap();
    });
    Receiver { endpoint: format!("http://{addr}"), inbox, task }
}

/// OTLP/HTTP with protobuf bodies (`/v1/metrics`, `/v1/logs`).
pub async fn http() -> Receiver {
    use axum::body::Bytes;
    use axum::extract::State;
    use prost::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let inbox = Inbox::default();
    let app = axum::Router::new()
        .route(
            "/v1/metrics",
            axum::routing::post(|State(inbox): State<Inbox>, body: Bytes| async move {
                let req = ExportMetricsServiceRequest::decode(body).unwrap();
                inbox.received.lock().unwrap().metrics.push(req);
                inbox.notify.notify_waiters();
                ExportMetricsServiceResponse::default().encode_to_vec()
            }),
        )
        .route(
            "/v1/logs",
            axum::routing::post(|State(inbox): State<Inbox>, body: Bytes| async move {
                let req = ExportLogsServiceRequest::decode(body).unwrap();
                inbox.received.lock().unwrap().logs.push(req);
                inbox.notify.notify_waiters();
                ExportLogsServiceResponse::default().encode_to_vec()
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(inbox.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver { endpoint: format!("http://{addr}"), inbox, task }
}

/// An attribute value as text (ints in decimal).
pub fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

/// A gauge or sum point's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

/// One data point: (metric name, attributes) and value.
pub type Point = ((String, BTreeMap<String, String>), Num);

/// Every gauge and sum data point of a request.
pub fn points(req: &ExportMetricsServiceRequest) -> Vec<Point> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let dps = match &m.data {
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    Some(metric::Data::Sum(s)) => &s.data_points,
                    _ => continue,
                };
                for dp in dps {
                    let v = match dp.value {
                        Some(number_data_point::Value::AsInt(i)) => Num::Int(i),
                        Some(number_data_point::Value::AsDouble(d)) => Num::Float(d),
                        None => continue,
                    };
                    out.push(((m.name.clone(), attributes(&dp.attributes)), v));
                }
            }
        }
    }
    out
}

/// A request's resource attributes.
pub fn resource(req: &ExportMetricsServiceRequest) -> BTreeMap<String, String> {
    req.resource_metrics
        .first()
        .and_then(|rm| rm.resource.as_ref())
        .map(|r| attributes(&r.attributes))
        .unwrap_or_default()
}
