//! Building the AWS clients of one stream. Credentials come from the standard chain
//! (environment, profile, web identity, ECS, IMDS), the region comes from the entry, its ARN or
//! the chain, and the entry may override the endpoints.
//!
//! The Kinesis client does not retry on its own: the shard consumers own backoff, so every
//! throttle and error is counted and paced by one policy. DynamoDB keeps the SDK's standard
//! retries (conditional-check failures are never retried).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use super::config::KinesisSourceConfig;
use super::error::KinesisError;

/// The clients one stream uses.
#[derive(Clone, Debug)]
pub(crate) struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

/// Loads the shared AWS configuration for `source` and builds its clients.
pub(crate) async fn build(source: &KinesisSourceConfig) -> Result<Clients, KinesisError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = source.region.as_deref().or(source.arn_region()) {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(KinesisError::NoRegion { stream: source.stream.clone() });
    }
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(endpoint) = &source.endpoint {
        kinesis = kinesis.endpoint_url(endpoint);
    }
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(10))
            .build(),
    );
    if let Some(endpoint) = &source.lease_endpoint {
        dynamodb = dynamodb.endpoint_url(endpoint);
    }
    Ok(Clients {
        kinesis: aws_sdk_kinesis::Client::from_conf(kinesis.build()),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
    })
}

/// Describes an SDK error in one line: the service's code and message when there is one, else
/// the transport's cause chain.
pub(crate) fn describe<E, R>(e: &aws_sdk_kinesis::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_sdk_kinesis::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    if let Some(service) = e.as_service_error() {
        let code = service.code().unwrap_or("unknown error");
        return match service.message() {
            Some(m) => format!("{code}: {m}"),
            None => code.to_string(),
        };
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
