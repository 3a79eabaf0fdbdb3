//! `loanledger client`: any call of the API from the shell, by the method's name, its request
//! and its answer as JSON (protobuf's JSON mapping, as grpcurl reads and prints it:
//! lowerCamelCase names, 64-bit integers as strings, every field given, zeros too). The
//! messages are read and written through the services' own file descriptors (the ones server
//! reflection serves), so nothing else is needed: no proto files, no other tool (DESIGN.md:
//! the CLI's client subcommands).
//!
//! - [`methods`]: every method, `Service/Method` with its request and answer types (`stream`
//!   before a streamed answer).
//! - [`call`]: a method named `LoanService/GetLoan` (or with its package,
//!   `loanledger.v1.LoanService/GetLoan`, or with a `.` for the `/`) called with a request
//!   given as JSON; each answer (one, or a stream's each in turn) handed on as one line of JSON.
//!
//! What goes wrong is a [`ClientError`]: a method or request that cannot be sent (`Usage`: no
//! such method, JSON that is not its request), the server unreachable (`Transport`), or the
//! service's refusal (`Status`), shown as its gRPC code and message with the field a
//! `BadRequest` names and the reason and figures of an `ErrorInfo`, or an answer that cannot
//! be read (`Answer`) or written out (`Output`). `main` prints it to stderr and exits 2, 3, 1
//! or 4 (a closed pipe ends it quietly).

use prost::Message;
use prost::bytes::{Buf, BufMut};
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use tonic::Status;
use tonic::codec::{DecodeBuf, EncodeBuf};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_types::StatusExt;

/// The largest answer the client reads (tonic's default is 4 MiB).
const ANSWER_BYTES_MAX: usize = 16 << 20;

/// The server a client calls, and as whom.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `http://HOST:PORT`, or `https://` for a server serving TLS.
    pub server: String,
    /// The bearer token, if any (a call without one is refused `UNAUTHENTICATED`).
    pub token: Option<String>,
    /// The CA certificates (PEM) the server's certificate must chain to (`https://`).
    pub ca_cert: Option<Vec<u8>>,
    /// The client's certificate and key (PEM), for a server asking for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Warnings as JSON log lines (`--log-format json`), not text.
    pub json_log: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The call cannot be made as asked: no such method, a request that is not its JSON.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached: nothing was sent.
    #[error("cannot reach {server}: {why}")]
    Transport { server: String, why: String },
    /// The connection failed once the call was on its way (since 2026-12-07: said as
    /// `Transport`, "cannot reach", which a script could take for nothing sent): a write may
    /// have been posted.
    #[error(
        "the connection to {server} failed during the call (a write may have been posted: read \
         it back, or send it again with its request_id, which posts nothing twice): {why}"
    )]
    Cut { server: String, why: String },
    /// The service answered with an error status.
    #[error("{}", shown(.0))]
    Status(Status),
    /// The call was answered (a write may have been posted), but the answer cannot be read as
    /// the method's.
    #[error("{0}")]
    Answer(String),
    /// The answer could not be written out (a closed pipe: `| head -1`).
    #[error("the answer could not be written: {0}")]
    Output(std::io::Error),
}

/// The services' messages and methods ([`crate::api::descriptors`]).
fn pool() -> Result<&'static DescriptorPool, ClientError> {
    crate::api::descriptors().map_err(|e| ClientError::Usage(format!("the API's descriptors: {e}")))
}

/// Every method of the API, one a line: `Service/Method(Request) returns [stream ]Answer`.
pub fn methods() -> Result<Vec<String>, ClientError> {
    let mut listed = Vec::new();
    for service in pool()?.services() {
        for m in service.methods() {
            let stream = if m.is_server_streaming() { "stream " } else { "" };
            listed.push(format!(
                "{}/{}({}) returns {stream}{}",
                service.name(),
                m.name(),
                m.input().name(),
                m.output().name()
            ));
        }
    }
    Ok(listed)
}

/// The method `name` names: `Service/Method`, with or without the package, `/` or `.` between
/// (a gRPC path's leading `/` allowed).
pub fn method(name: &str) -> Result<MethodDescriptor, ClientError> {
    // (A gRPC path's leading `/` too: `/loanledger.v1.LoanService/GetLoan`.)
    let (service, method) = name
        .strip_prefix('/')
        .unwrap_or(name)
        .rsplit_once(['/', '.'])
        .ok_or_else(|| ClientError::Usage(format!("{name:?} is not Service/Method")))?;
    let service = service.strip_prefix("loanledger.v1.").unwrap_or(service);
    let found = pool()?
        .services()
        .filter(|s| s.name() == service)
        .find_map(|s| s.methods().find(|m| m.name() == method));
    found.ok_or_else(|| {
        ClientError::Usage(format!(
            "no method {name:?} in the API (`loanledger client methods` lists them)"
        ))
    })
}

/// Calls `method_name` with the request `json`, handing each answer to `each` as one line of
/// JSON as it comes (a stream's in turn); should `each` fail, the call ends there.
pub async fn call(
    target: &Target,
    method_name: &str,
    json: &str,
    mut each: impl FnMut(String) -> std::io::Result<()>,
) -> Result<(), ClientError> {
    let method = method(method_name)?;
    if method.is_client_streaming() {
        return Err(ClientError::Usage(format!("{method_name} takes a stream of requests")));
    }
    let request = request_of(&method, json)?;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = PathAndQuery::try_from(path).map_err(|e| ClientError::Usage(e.to_string()))?;
    let unreachable = |e: &dyn std::fmt::Display| ClientError::Transport {
        server: target.server.clone(),
        why: e.to_string(),
    };
    // Connected, and the connection answered a health check, before the call: a server away,
    // or a TLS handshake it refused (under TLS 1.3 a client certificate is refused after the
    // client's side of the handshake is done), is then known for nothing sent; a transport
    // failure after it is the call's own. Any answer of the check, a status too, shows the
    // connection good.
    let connected = channel(target).await?.connect().await;
    let connected =
        connected.map_err(|e| unreachable(&chain(e.to_string(), std::error::Error::source(&e))))?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(connected.clone());
    let check = tonic_health::pb::HealthCheckRequest { service: String::new() };
    if let Err(status) = health.check(check).await
        && std::error::Error::source(&status).is_some()
    {
        let why = chain(status.message().to_string(), std::error::Error::source(&status));
        return Err(unreachable(&why));
    }
    // A `SubmitBatch` answer of 10,000 results with ids of the longest allowed passes tonic's
    // default limit of 4 MiB (about 150 bytes a result at usual ids, up to 570 held back).
    let mut grpc = tonic::client::Grpc::new(connected).max_decoding_message_size(ANSWER_BYTES_MAX);
    grpc.ready().await.map_err(|e| unreachable(&e))?;
    let cut = |why: &str| ClientError::Cut { server: target.server.clone(), why: why.to_string() };
    let mut request = tonic::Request::new(request);
    if let Some(token) = &target.token {
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::Usage("the token is not printable ASCII".into()))?;
        request.metadata_mut().insert("authorization", bearer);
    }
    let mut answer =
        |bytes: Vec<u8>| each(answer_of(&method, &bytes)?).map_err(ClientError::Output);
    // A status of the client's own has the transport's error as its source (the connection
    // lost during the call); the service's statuses, read from its answer, come with none.
    let failed = |status: Status| match std::error::Error::source(&status) {
        Some(source) => cut(&chain(status.message().to_string(), Some(source))),
        None => ClientError::Status(status),
    };
    if method.is_server_streaming() {
        let response = grpc.server_streaming(request, path, Bytes).await;
        let mut stream = response.map_err(failed)?.into_inner();
        while let Some(bytes) = stream.message().await.map_err(failed)? {
            answer(bytes)?;
        }
    } else {
        let response = grpc.unary(request, path, Bytes).await.map_err(failed)?;
        answer(response.into_inner())?;
    }
    Ok(())
}

/// `head` and the texts of `source` and its sources, each layer's once (they often repeat the
/// one below).
fn chain(mut why: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    while let Some(s) = source {
        let text = s.to_string();
        if !why.contains(&text) {
            why.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    why
}

/// The request `json` of `method`, encoded.
fn request_of(method: &MethodDescriptor, json: &str) -> Result<Vec<u8>, ClientError> {
    let input = method.input();
    let mut de = serde_json::Deserializer::from_str(json);
    let request = DynamicMessage::deserialize(input.clone(), &mut de).and_then(|r| {
        de.end()?;
        Ok(r)
    });
    let request = request.map_err(|e| {
        ClientError::Usage(format!("the request is not the JSON of a {}: {e}", input.name()))
    })?;
    Ok(request.encode_to_vec())
}

/// An answer of `method` as one line of JSON.
fn answer_of(method: &MethodDescriptor, bytes: &[u8]) -> Result<String, ClientError> {
    let output = method.output();
    let answer = DynamicMessage::decode(output.clone(), bytes)
        .map_err(|e| ClientError::Answer(format!("the answer is not a {}: {e}", output.name())))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut json = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut json);
    answer
        .serialize_with_options(&mut ser, &options)
        .map_err(|e| ClientError::Answer(format!("the answer as JSON: {e}")))?;
    String::from_utf8(json).map_err(|e| ClientError::Answer(e.to_string()))
}

/// A channel to the target, with TLS for `https://`.
async fn channel(target: &Target) -> Result<Endpoint, ClientError> {
    // Without its scheme (`localhost:50051`, as grpcurl takes it) tonic takes the address in
    // and fails at the first request, which read as a server not reached (exit status 3;
    // since 2026-12-07 late night a usage error, nothing sent).
    if !(target.server.starts_with("http://") || target.server.starts_with("https://")) {
        return Err(ClientError::Usage(format!(
            "{:?} is not a server's URL: it begins with http:// (or https:// for a server \
             serving TLS), e.g. http://127.0.0.1:50051",
            target.server
        )));
    }
    let endpoint = Endpoint::from_shared(target.server.clone()).map_err(|e| {
        ClientError::Usage(format!("{:?} is not a server's URL: {e}", target.server))
    })?;
    // TLS is asked for by the URL; its files without it would be ignored and the token sent
    // in the clear. No CA of the system's is trusted: the server's is given.
    let tls = target.server.starts_with("https://");
    let endpoint = match (&target.ca_cert, tls) {
        (Some(ca), true) => {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &target.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint.tls_config(tls).map_err(|e| ClientError::Usage(format!("TLS: {e}")))?
        }
        (None, true) => {
            let why = "an https:// server needs --ca-cert, the CA its certificate chains to";
            return Err(ClientError::Usage(why.into()));
        }
        (None, false) if target.identity.is_none() => {
            // A token sent in the clear to another machine: said, not refused (a server on a
            // private network's address may be meant).
            let host = endpoint.uri().host().unwrap_or_default().trim_matches(['[', ']']);
            let loopback = host == "localhost"
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if target.token.is_some() && !loopback {
                let warning = format!(
                    "the token goes to {} in the clear (http://): use https:// with --ca-cert \
                     for a server on another machine",
                    target.server
                );
                // One of the JSON lines asked for (since 2026-12-08: text among them, which a
                // collector reading JSON drops).
                if target.json_log {
                    tracing::warn!(server = %target.server, "{warning}");
                } else {
                    eprintln!("warning: {warning}");
                }
            }
            endpoint
        }
        _ => {
            let why = "--ca-cert, --client-cert and --client-key are for an https:// server";
            return Err(ClientError::Usage(why.into()));
        }
    };
    Ok(endpoint)
}

/// A status as the client shows it: its code and message, then the field a `BadRequest`
/// names and the reason and figures of an `ErrorInfo`.
fn shown(status: &Status) -> String {
    let mut shown = format!("{:?}: {}", status.code(), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            shown.push_str(&format!("\n  field {}: {}", v.field, v.description));
        }
    }
    if let Some(info) = details.error_info() {
        shown.push_str(&format!("\n  reason {}", info.reason));
        let mut metadata: Vec<_> = info.metadata.iter().collect();
        metadata.sort();
        for (key, value) in metadata {
            shown.push_str(&format!("\n  {key}: {value}"));
        }
    }
    shown
}

/// Messages as their bytes, both ways: the client encodes and decodes them itself (and a
/// test sends bytes that are no message at all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl tonic::codec::Codec for Bytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Bytes;
    type Decoder = Bytes;

    fn encoder(&mut self) -> Bytes {
        Bytes
    }

    fn decoder(&mut self) -> Bytes {
        Bytes
    }
}

impl tonic::codec::Encoder for Bytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Bytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_is_named_with_or_without_its_package() {
        for name in [
            "LoanService/GetLoan",
            "loanledger.v1.LoanService/GetLoan",
            "loanledger.v1.LoanService.GetLoan",
            "/loanledger.v1.LoanService/GetLoan",
        ] {
            let m = method(name).expect(name);
            assert_eq!(m.full_name(), "loanledger.v1.LoanService.GetLoan");
        }
        for name in ["GetLoan", "LoanService/Nothing", "Nothing/GetLoan"] {
            assert!(matches!(method(name), Err(ClientError::Usage(_))), "{name}");
        }
    }

    /// Every method listed, a streamed answer marked.
    #[test]
    fn the_methods_are_listed() {
        let listed = methods().expect("listed");
        assert!(listed.contains(
            &"AuditService/GetLoanHistory(GetLoanHistoryRequest) returns stream JournalTransaction"
                .to_string()
        ));
        assert!(
            listed.contains(&"AuditService/Verify(VerifyRequest) returns VerifyResponse".into())
        );
    }

    /// A request's JSON, by its proto3 names (lowerCamelCase or the field's own), 64-bit
    /// integers as strings or numbers; JSON of another shape names the message.
    #[test]
    fn a_request_is_read_from_its_json() {
        use crate::api::pb;
        let m = method("AuditService/Verify").expect("Verify");
        let bytes = request_of(&m, r#"{"ledgerId": "450121", "recheck_answers": true}"#).unwrap();
        let request = pb::VerifyRequest::decode(bytes.as_slice()).expect("a VerifyRequest");
        assert_eq!((request.ledger_id.as_str(), request.recheck_answers), ("450121", true));
        let m = method("AuditService/ReadJournal").expect("ReadJournal");
        let bytes = request_of(&m, r#"{"ledgerId": "L", "fromSeq": "7"}"#).unwrap();
        let request = pb::ReadJournalRequest::decode(bytes.as_slice()).expect("a request");
        assert_eq!(request.from_seq, 7);
        for wrong in [r#"{"ledgerId": 7}"#, r#"{"nothing": 1}"#, "{} {}", "["] {
            let Err(ClientError::Usage(why)) = request_of(&m, wrong) else {
                panic!("{wrong} is not a request");
            };
            assert!(
                why.starts_with("the request is not the JSON of a ReadJournalRequest"),
                "{why}"
            );
        }
    }
}
