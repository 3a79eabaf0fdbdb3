//! The gRPC codec of the generated services and clients: tonic's prost codec, but a message
//! that is not a protobuf message of its type at all (a string field's bytes not UTF-8, a field
//! sent with another wire type, a length past the end) is refused as `INVALID_ARGUMENT`, naming
//! the field prost names (`items.repayment.loan_id`), in the service's own words and with a
//! `BadRequest` as every other malformed input (DESIGN.md: bad input is never `INTERNAL`).
//! tonic's codec answers it `INTERNAL` with prost's text, as gRPC's status-code table has it for
//! an unparsable message; a client decoding a reply it cannot read reports it as invalid too.
//!
//! The encoding is prost's, unchanged (`tonic_prost::ProstEncoder`).

use std::marker::PhantomData;

use prost::Message;
use prost_reflect::Kind;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The services' codec (`build.rs` names it to the code generator).
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(ProstDecoder::default())
    }
}

/// prost's decoder, its failure an `INVALID_ARGUMENT` ([`undecodable`]).
#[derive(Debug, Clone)]
pub struct Decoder<U>(ProstDecoder<U>);

impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| undecodable(&e.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// prost's text of an undecodable message: its prefix, then the fields it was in, innermost
/// first (`Message.field: `), then what was wrong.
const PROST_PREFIX: &str = "failed to decode Protobuf message: ";

/// The status of a message prost could not decode (`text`, [`PROST_PREFIX`]'s form): the
/// field's path from the message's top, where prost names one, and prost's reason.
pub fn undecodable(text: &str) -> Status {
    let mut rest = text.strip_prefix(PROST_PREFIX).unwrap_or(text);
    // Each field's message and name, innermost first.
    let mut path: Vec<(&str, &str)> = Vec::new();
    while let Some((segment, after)) = rest.split_once(": ")
        && let Some((message, field)) = segment.split_once('.')
        && [message, field].iter().all(|name| is_name(name))
    {
        path.push((message, field));
        rest = after;
    }
    let mut reason = rest.to_string();
    // prost names a oneof where the proto names its member: the member whose message the
    // entry inside names; at the innermost entry none does, and the oneof's members are
    // named with the reason, the path ending at the message that has it.
    let mut names = Vec::with_capacity(path.len());
    for (at, (message, field)) in path.iter().enumerate() {
        let Some(members) = oneof_members(message, field) else {
            names.push(field.to_string());
            continue;
        };
        let inner = at.checked_sub(1).map(|inner| path[inner].0);
        let member = inner.and_then(|inner| members.iter().find(|(_, t)| t == inner));
        match member {
            Some((name, _)) => names.push(name.clone()),
            None => {
                let members: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
                reason = format!("its {}: {reason}", members.join(" or "));
            }
        }
    }
    if names.is_empty() {
        return Status::invalid_argument(format!(
            "the message cannot be decoded as protobuf: {reason}"
        ));
    }
    names.reverse();
    super::error::invalid(&names.join("."), format!("cannot be decoded as protobuf: {reason}"))
}

/// The members (name, message type's name) of `message`'s oneof `oneof`, by the API's
/// descriptors ([`super::descriptors`]); `None` when `oneof` is no oneof of a message of that
/// name (a field then).
fn oneof_members(message: &str, oneof: &str) -> Option<Vec<(String, String)>> {
    let oneof = super::descriptors()
        .ok()?
        .all_messages()
        .filter(|m| m.name() == message)
        .find_map(|m| m.oneofs().find(|o| o.name() == oneof))?;
    let type_name = |kind: Kind| match kind {
        Kind::Message(m) => m.name().to_string(),
        _ => String::new(),
    };
    Some(oneof.fields().map(|f| (f.name().to_string(), type_name(f.kind()))).collect())
}

/// A protobuf message's or field's name.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    /// The field a decoding error names, from the message's top.
    fn field_of(status: &Status) -> Option<String> {
        let details = status.get_error_details();
        let violations = details.bad_request()?.field_violations.clone();
        violations.first().map(|v| v.field.clone())
    }

    /// A string field's bytes that are not UTF-8, in a nested message: the path from the top.
    #[test]
    fn a_nested_field_is_named_from_the_top() {
        use crate::api::pb;
        let item = pb::RepaymentItem { loan_id: "L1".into(), ..Default::default() };
        let batch = pb::SubmitBatchRequest {
            items: vec![pb::BatchItem {
                request_id: "i1".into(),
                item: Some(pb::batch_item::Item::Repayment(item)),
            }],
        };
        let mut bytes = batch.encode_to_vec();
        let at = bytes.windows(2).position(|w| w == b"L1").expect("the loan id's bytes");
        bytes[at] = 0xff;
        let e = pb::SubmitBatchRequest::decode(bytes.as_slice()).expect_err("not UTF-8");
        let status = undecodable(&e.to_string());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(field_of(&status).as_deref(), Some("items.repayment.loan_id"));
        assert_eq!(
            status.message(),
            "items.repayment.loan_id cannot be decoded as protobuf: invalid string value: data is \
             not UTF-8 encoded"
        );
    }

    /// An error at a oneof's member itself (its length past the end): the path ends at the
    /// message that has the oneof, and the reason names its members.
    #[test]
    fn an_error_at_a_oneof_names_its_members() {
        use crate::api::pb;
        let batch = pb::SubmitBatchRequest {
            items: vec![pb::BatchItem {
                request_id: "i1".into(),
                item: Some(pb::batch_item::Item::Repayment(pb::RepaymentItem::default())),
            }],
        };
        let mut bytes = batch.encode_to_vec();
        // The repayment's length (its key is field 3, length-delimited: 0x1a), made past the end.
        let at = bytes.iter().rposition(|&b| b == 0x1a).expect("the repayment's key");
        bytes[at + 1] = 0x7f;
        let e = pb::SubmitBatchRequest::decode(bytes.as_slice()).expect_err("past the end");
        let status = undecodable(&e.to_string());
        assert_eq!(field_of(&status).as_deref(), Some("items"), "{status:?}");
        assert!(
            status.message().starts_with(
                "items cannot be decoded as protobuf: its disbursement or repayment: "
            ),
            "{status:?}"
        );
    }

    /// An error prost ties to no field: the message as a whole.
    #[test]
    fn an_error_of_no_field_names_none() {
        let status = undecodable("failed to decode Protobuf message: invalid wire type value: 7");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(field_of(&status), None);
        assert_eq!(
            status.message(),
            "the message cannot be decoded as protobuf: invalid wire type value: 7"
        );
    }
}
