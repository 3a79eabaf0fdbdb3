//! The offline check of signed checkpoints and their proofs (`loanledger check`): what an auditor
//! runs on the answers of `GetCheckpoint`, `GetInclusionProof` and `GetConsistencyProof`, saved
//! as JSON, with the public key pinned once. No server, no database: nothing here trusts the
//! service ([`crate::app::checkpoints`] has the model).
//!
//! The JSON is proto3's, as grpcurl prints it (lowerCamelCase names, 64-bit integers as
//! strings), or with the proto's own field names; numbers are taken as numbers too. Each
//! checkpoint is checked whole:
//! - its `public_key`, when present, is the pinned key;
//! - its `signed_text`, when present, is the text its fields give
//!   ([`Checkpoint::signed_text`]), and the signature is the pinned key's over that text (the
//!   text is rebuilt from the fields, never taken as sent);
//! - an inclusion proof's audit path leads from its `transaction_hash` at `seq` to the
//!   checkpoint's root;
//! - a consistency proof's two checkpoints are of one ledger and its path leads from the
//!   first's root to the second's;
//! - an inclusion proof of the checkpoint's last seq is of its head hash; a consistency proof
//!   between equal sizes is of one checkpoint twice.
//!
//! With a checkpoint held from before (`--held`), a consistency proof's `from`, or an inclusion
//! proof's checkpoint, must be it; with `--transaction-hash` (recomputed from the transaction's
//! content), the answer must be an inclusion proof of that hash. The first line found names the
//! kind of answer checked; `--expect` makes it required ([`Expected`]), so that a script asking
//! for a consistency proof is not satisfied by a plain checkpoint equal to the one held.
//!
//! `--transaction FILE` recomputes the hash itself ([`transaction_hash`]): from a journal
//! transaction as `ReadJournal` answers it (one message of the stream), its content and
//! `prev_hash` encoded as `src/ledger/hash.rs` specifies, which must give its `hash`; the
//! inclusion proof must then be of that hash, seq and ledger.
//!
//! After the service's key changed (`serve --new-signing-key`), a checkpoint held from before
//! is signed with the old key: `--held-public-key` pins it for the held checkpoint alone
//! ([`Options::held_key`]); a held checkpoint is the same as the answer's when their ledger,
//! size, root and head are (whoever signed them). A key changed by `rotate-signing-key` comes
//! with a handover statement signed by both keys ([`Handover`]): with `--handover` (each
//! statement since the pinned key, in order) the answer is checked with the key the statements
//! lead to, and a held checkpoint with it or any key before it ([`follow_handovers`]), so that
//! an auditor keeps the key pinned once.

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use crate::ledger::checkpoint::{Checkpoint, Handover, public_key_from_hex};
use crate::ledger::hash::{Hash, from_hex, to_hex};
use crate::ledger::merkle::{consistency_holds, inclusion_holds};

/// What the check found: one line per thing checked, in order.
pub type Findings = Vec<String>;

/// The kind of answer an auditor asked for (`check --expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Checkpoint,
    Inclusion,
    Consistency,
}

impl Expected {
    /// `checkpoint`, `inclusion` or `consistency`.
    pub fn parse(text: &str) -> Option<Expected> {
        match text {
            "checkpoint" => Some(Expected::Checkpoint),
            "inclusion" => Some(Expected::Inclusion),
            "consistency" => Some(Expected::Consistency),
            _ => None,
        }
    }

    fn answer(self) -> &'static str {
        match self {
            Expected::Checkpoint => "a checkpoint",
            Expected::Inclusion => "an inclusion proof",
            Expected::Consistency => "a consistency proof",
        }
    }
}

/// What [`check_with`] is told besides the answer and the pinned key.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options<'a> {
    /// A `SignedCheckpoint` kept from before.
    pub held: Option<&'a Value>,
    /// The key the held checkpoint was signed with, when the service's has changed since (the
    /// pinned key otherwise).
    pub held_key: Option<&'a VerifyingKey>,
    /// The keys the service's key was handed over from ([`follow_handovers`]), oldest first:
    /// without `held_key`, the held checkpoint may be signed by any of them.
    pub earlier_keys: &'a [VerifyingKey],
    /// The transaction hash an inclusion proof must be of.
    pub transaction_hash: Option<&'a Hash>,
    /// The kind of answer required.
    pub expect: Option<Expected>,
    /// What the auditor asked about ([`Asked`]): the answer must be of it.
    pub asked: Asked<'a>,
}

/// The ledger, size and seq an auditor asked about (`check --ledger`, `--size`, `--seq`). A
/// signature says what the service signed, not what was asked: a checkpoint of another ledger,
/// or of another size, handed back in place of the one asked for (by a proxy, or a service in
/// error) holds as well, and once kept as the held checkpoint every later check is tied to it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Asked<'a> {
    /// The ledger of the answer's checkpoints.
    pub ledger: Option<&'a str>,
    /// The size of the answer's checkpoint (a consistency proof's later one).
    pub size: Option<u64>,
    /// The seq an inclusion proof is of.
    pub seq: Option<u64>,
}

impl Asked<'_> {
    /// Refuses `c` (the answer's checkpoint, a consistency proof's later one: `latest`, or its
    /// earlier one) when it is not of the ledger or the size asked about.
    fn check(&self, c: &Checkpoint, latest: bool, found: &mut Findings) -> Result<(), String> {
        if let Some(ledger) = self.ledger
            && c.ledger_id != ledger
        {
            return Err(format!("{} is not of ledger {ledger} as asked", describe(c)));
        }
        if let Some(size) = self.size
            && latest
            && c.tree_size != size
        {
            return Err(format!("{} is not of size {size} as asked", describe(c)));
        }
        if latest && (self.ledger.is_some() || self.size.is_some()) {
            found.push(format!("{} is the checkpoint asked for", describe(c)));
        }
        Ok(())
    }
}

/// Checks `answer` (the JSON of a `SignedCheckpoint`, an `InclusionProof` or a
/// `ConsistencyProof`) against the pinned `key`, and against `held` (a `SignedCheckpoint` kept
/// from before) and `transaction_hash` when given. `Err` names the first thing that does not
/// hold.
pub fn check(
    key: &VerifyingKey,
    answer: &Value,
    held: Option<&Value>,
    transaction_hash: Option<&Hash>,
) -> Result<Findings, String> {
    check_with(key, answer, Options { held, transaction_hash, ..Options::default() })
}

/// [`check`] with its [`Options`].
pub fn check_with(
    key: &VerifyingKey,
    answer: &Value,
    options: Options<'_>,
) -> Result<Findings, String> {
    let Options { held, held_key, earlier_keys, transaction_hash, expect, asked } = options;
    if asked.seq.is_some() && expect.is_some_and(|e| e != Expected::Inclusion) {
        return Err("--seq is for an inclusion proof".into());
    }
    // The key the answer is checked with: the pinned one, or the one the handovers lead to.
    let named = if earlier_keys.is_empty() { "the pinned key" } else { "the key handed over to" };
    // The kind of answer, by the fields only it has (grpcurl leaves out empty lists: a tree of
    // one transaction's audit path, two equal sizes' path).
    let inclusion = answer.get("checkpoint").is_some();
    let consistency = !inclusion && (answer.get("from").is_some() || answer.get("to").is_some());
    let is = match (inclusion, consistency) {
        (true, _) => Expected::Inclusion,
        (_, true) => Expected::Consistency,
        _ => Expected::Checkpoint,
    };
    let kind = is.answer();
    if let Some(expected) = expect
        && expected != is
    {
        return Err(format!("the answer is {kind}, not {} as asked", expected.answer()));
    }
    // A consistency proof shows that a checkpoint you hold is a prefix of a later one: between
    // two the service chose, it shows nothing of yours (since 2026-12-07: it passed).
    if expect == Some(Expected::Consistency) && held.is_none() {
        return Err("--expect consistency needs --held, the checkpoint you hold: a proof \
                    between two checkpoints the service chose shows nothing of yours"
            .into());
    }
    let mut found = vec![kind.to_string()];
    // The held checkpoint's key: the one given for it, else the pinned key (or the one the
    // handovers lead to), else one it was handed over from, the latest first; the first that
    // holds, or the first's error.
    let held = match held {
        Some(held) => {
            let earlier = earlier_keys.iter().rev().map(|k| (k, "an earlier key of the handovers"));
            let keys: Vec<(&VerifyingKey, &str)> = match held_key {
                Some(held_key) => vec![(held_key, "the held key")],
                None => std::iter::once((key, named)).chain(earlier).collect(),
            };
            // (`signed` notes a finding only when the signature holds.) The error told is the
            // one of the key the checkpoint names, when it is one of them (since 2026-12-07: a
            // damaged signature of an earlier key was told as signed with another key), else
            // the first.
            let names = get(held, "publicKey", "public_key")
                .and_then(Value::as_str)
                .and_then(public_key_from_hex);
            let mut error = None;
            let mut checked = None;
            for by in keys {
                match signed(by, held, "the held checkpoint", &mut found) {
                    Ok(c) => {
                        checked = Some(c);
                        break;
                    }
                    Err(e) if names.as_ref() == Some(by.0) => error = Some(e),
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            match checked {
                Some(c) => Some(c),
                // (`keys` holds one key at least: the held one, or the answer's.)
                None => return Err(error.unwrap_or_default()),
            }
        }
        None => None,
    };
    let same_as_held = |c: &Checkpoint, what: &str, found: &mut Findings| match &held {
        Some(h) if h != c => Err(format!(
            "{what} is not the checkpoint held: {} against {}",
            describe(c),
            describe(h)
        )),
        Some(_) => {
            found.push(format!("{what} is the checkpoint held"));
            Ok(())
        }
        None => Ok(()),
    };
    if inclusion {
        let c = signed((key, named), object(answer, "checkpoint")?, "the checkpoint", &mut found)?;
        same_as_held(&c, "the checkpoint", &mut found)?;
        asked.check(&c, true, &mut found)?;
        let seq = number(answer, "seq", "seq")?;
        if let Some(asked) = asked.seq
            && seq != asked
        {
            return Err(format!("the proof is of seq {seq}, not {asked} as asked"));
        }
        let leaf = hash(answer, "transactionHash", "transaction_hash")?;
        if let Some(expected) = transaction_hash
            && *expected != leaf
        {
            return Err(format!(
                "the proof is of transaction hash {}, not {}",
                to_hex(&leaf),
                to_hex(expected)
            ));
        }
        if seq == c.tree_size && leaf != c.head {
            return Err(format!(
                "seq {seq} is the checkpoint's last, whose hash it gives as {}, not {}",
                to_hex(&c.head),
                to_hex(&leaf)
            ));
        }
        let path =
            hashes(get(answer, "auditPath", "audit_path").unwrap_or(&Value::Null), "audit_path")?;
        if !inclusion_holds(&c.root, c.tree_size, seq, &leaf, &path) {
            return Err(format!(
                "the audit path does not lead from seq {seq} ({}) to the root of {}",
                to_hex(&leaf),
                describe(&c)
            ));
        }
        found.push(format!("seq {seq} ({}) is in {}", to_hex(&leaf), describe(&c)));
        // Said, not failed (since 2026-12-07): without a hash of the auditor's own, the proof
        // shows that the service's hash is in the journal, not that it is the transaction's.
        if transaction_hash.is_none() {
            found.push(
                "the transaction hash is the service's, not checked against one of yours \
                 (--transaction-hash)"
                    .to_string(),
            );
        }
        return Ok(found);
    }
    // Only an inclusion proof proves a transaction: asked of another answer, the check fails
    // rather than pass without it.
    if transaction_hash.is_some() {
        return Err("--transaction-hash is for an inclusion proof, and this is none".into());
    }
    if asked.seq.is_some() {
        return Err("--seq is for an inclusion proof, and this is none".into());
    }
    if consistency {
        let from =
            signed((key, named), object(answer, "from")?, "the earlier checkpoint", &mut found)?;
        same_as_held(&from, "the earlier checkpoint", &mut found)?;
        let to = signed((key, named), object(answer, "to")?, "the later checkpoint", &mut found)?;
        asked.check(&from, false, &mut found)?;
        asked.check(&to, true, &mut found)?;
        if from.ledger_id != to.ledger_id {
            return Err(format!(
                "the checkpoints are of ledgers {} and {}",
                from.ledger_id, to.ledger_id
            ));
        }
        if from.tree_size == to.tree_size && from != to {
            return Err(format!(
                "two checkpoints of one size differ: {} and {}",
                describe(&from),
                describe(&to)
            ));
        }
        // Asked for a consistency proof, one between equal sizes shows nothing: a service
        // frozen (or forked, keeping its journals apart) answers it for the head (since
        // 2026-12-07; it passed), unless that size is the one asked for (`--size`).
        if expect == Some(Expected::Consistency)
            && from.tree_size == to.tree_size
            && asked.size != Some(to.tree_size)
        {
            return Err(format!(
                "the proof is between two equal sizes ({}), which shows no later journal: asked \
                 for a consistency proof to the head, the head is no later than {} (give --size \
                 {} if that is the size asked for)",
                to.tree_size,
                describe(&from),
                to.tree_size
            ));
        }
        let path = hashes(get(answer, "path", "path").unwrap_or(&Value::Null), "path")?;
        if !consistency_holds(from.tree_size, &from.root, to.tree_size, &to.root, &path) {
            return Err(format!(
                "the path does not show {} a prefix of {}",
                describe(&from),
                describe(&to)
            ));
        }
        found.push(format!("{} is a prefix of {}", describe(&from), describe(&to)));
        return Ok(found);
    }
    let c = signed((key, named), answer, "the checkpoint", &mut found)?;
    same_as_held(&c, "the checkpoint", &mut found)?;
    asked.check(&c, true, &mut found)?;
    Ok(found)
}

/// Follows `handovers` (statements of `loanledger rotate-signing-key`, as JSON, oldest first)
/// from the `pinned` key: each must hand over from the key reached so far, with both its keys'
/// signatures over its text ([`Handover`]). The keys before the last, oldest first (the
/// pinned one first), the last (the key the service signs with now), and what was found; `Err`
/// names the first statement that does not hold.
pub fn follow_handovers(
    pinned: &VerifyingKey,
    handovers: &[Value],
) -> Result<(Vec<VerifyingKey>, VerifyingKey, Findings), String> {
    let mut earlier = Vec::new();
    let mut key = *pinned;
    let mut found = Vec::new();
    for (i, v) in handovers.iter().enumerate() {
        let what = format!("handover {}", i + 1);
        let within = |e: String| format!("{what}: {e}");
        let text = |name: &str| -> Result<&str, String> {
            v.get(name).and_then(Value::as_str).ok_or_else(|| within(format!("{name} is missing")))
        };
        let public = |name: &str| -> Result<VerifyingKey, String> {
            public_key_from_hex(text(name)?)
                .ok_or_else(|| within(format!("{name} is not a public key")))
        };
        let signature = |name: &str| -> Result<Vec<u8>, String> {
            hex::decode(text(name)?).map_err(|_| within(format!("{name} is not hex")))
        };
        let at = text("at")?;
        if chrono::NaiveDateTime::parse_from_str(at, Handover::AT_FORMAT).is_err() {
            return Err(within("at is not a time YYYY-MM-DDTHH:MM:SSZ".into()));
        }
        let h = Handover {
            from: public("from_public_key")?,
            to: public("to_public_key")?,
            at: at.to_string(),
        };
        if h.from != key {
            return Err(within(format!(
                "it hands over from {}, not from {}",
                hex::encode(h.from.as_bytes()),
                hex::encode(key.as_bytes())
            )));
        }
        if let Some(sent) = v.get("signed_text")
            && sent.as_str() != Some(h.signed_text().as_str())
        {
            return Err(within("signed_text is not the text of its fields".into()));
        }
        if !h.holds(&signature("from_signature")?, &signature("to_signature")?) {
            return Err(within("the two keys' signatures do not hold".into()));
        }
        found.push(format!(
            "{what}: key {} hands over to {} at {}, signed by both",
            hex::encode(h.from.as_bytes()),
            hex::encode(h.to.as_bytes()),
            h.at
        ));
        earlier.push(key);
        key = h.to;
    }
    Ok((earlier, key, found))
}

/// The JSON of a handover and its signatures, as `rotate-signing-key` writes it and
/// [`follow_handovers`] reads it.
pub fn handover_json(h: &Handover, from_signature: &[u8; 64], to_signature: &[u8; 64]) -> Value {
    serde_json::json!({
        "from_public_key": hex::encode(h.from.as_bytes()),
        "to_public_key": hex::encode(h.to.as_bytes()),
        "at": h.at,
        "signed_text": h.signed_text(),
        "from_signature": hex::encode(from_signature),
        "to_signature": hex::encode(to_signature),
    })
}

/// The checkpoint `v` states, checked (the module's doc).
fn signed(
    (key, named): (&VerifyingKey, &str),
    v: &Value,
    what: &str,
    found: &mut Findings,
) -> Result<Checkpoint, String> {
    let within = |e: String| format!("{what}: {e}");
    let ledger_id = text(v, "ledgerId", "ledger_id").map_err(within)?;
    // An identifier never holds a line break: the signed text's lines are then unambiguous.
    crate::domain::ids::check_id(ledger_id)
        .map_err(|m| within(format!("ledger_id {m} (not a ledger's id)")))?;
    let c = Checkpoint {
        ledger_id: ledger_id.to_string(),
        tree_size: number(v, "treeSize", "tree_size").map_err(within)?,
        root: hash(v, "rootHash", "root_hash").map_err(within)?,
        head: hash(v, "headHash", "head_hash").map_err(within)?,
    };
    if let Some(public_key) = get(v, "publicKey", "public_key") {
        let given = public_key.as_str().and_then(public_key_from_hex);
        if given.as_ref() != Some(key) {
            let expected = hex::encode(key.as_bytes());
            // A string as its text, anything else (a number, a list) as its JSON.
            let given = public_key.as_str().map_or_else(|| public_key.to_string(), str::to_string);
            return Err(format!("{what} is signed with key {given}, not {named} {expected}"));
        }
    }
    if let Some(sent) = get(v, "signedText", "signed_text")
        && sent.as_str() != Some(c.signed_text().as_str())
    {
        return Err(format!("{what}: signed_text is not the text of its fields"));
    }
    let signature = hex::decode(text(v, "signature", "signature").map_err(within)?)
        .map_err(|_| within("signature is not hex".into()))?;
    if !c.signed_by(key, &signature) {
        return Err(format!("{what}: the signature of {} is not {named}'s", describe(&c)));
    }
    found.push(format!("{what}, {}, is signed by {named}", describe(&c)));
    Ok(c)
}

fn describe(c: &Checkpoint) -> String {
    format!("ledger {} size {} root {}", c.ledger_id, c.tree_size, to_hex(&c.root))
}

/// A journal transaction as `ReadJournal` answers it (its JSON, as grpcurl or `loanledger client`
/// prints one message of the stream): its ledger, its seq and its hash recomputed from its
/// content and its `prev_hash` (`SHA-256(prev_hash || canonical bytes)`, the encoding of
/// [`crate::ledger::hash`]), which must be the `hash` it gives when it gives one. The auditor's
/// own hash of the transaction, for the inclusion proof (since 2026-12-07: the README asked the
/// auditor to encode it by hand).
pub fn transaction_hash(v: &Value) -> Result<(String, u64, Hash), String> {
    use crate::domain::money::Fen;
    use crate::ledger::hash::TxnContent;
    use crate::ledger::posting::Posting;
    let within = |e: String| format!("the transaction: {e}");
    // proto3 JSON leaves out a field at its default: an empty text.
    let optional = |json_name: &str, proto_name: &str| -> Result<&str, String> {
        match get(v, json_name, proto_name) {
            None => Ok(""),
            Some(t) => t.as_str().ok_or_else(|| within(format!("{proto_name} is not a text"))),
        }
    };
    let ledger_id = text(v, "ledgerId", "ledger_id").map_err(within)?;
    let seq = number(v, "seq", "seq").map_err(within)?;
    let recorded_at = text(v, "recordedAt", "recorded_at").map_err(within)?;
    let recorded_at = chrono::DateTime::parse_from_rfc3339(recorded_at)
        .map_err(|e| within(format!("recorded_at is not an RFC 3339 time: {e}")))?;
    let recorded_at_us = recorded_at.timestamp_micros();
    if recorded_at.timestamp_subsec_nanos() % 1_000 != 0 {
        return Err(within("recorded_at has a part of a microsecond: not the service's".into()));
    }
    let postings = match get(v, "postings", "postings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let account = text(p, "account", "account")
                    .map_err(|e| within(format!("postings[{i}]: {e}")))?;
                let amount = match get(p, "amountFen", "amount_fen") {
                    None => Ok(0),
                    Some(Value::String(s)) => s.parse::<i64>().map_err(|_| ()),
                    Some(n) => n.as_i64().ok_or(()),
                }
                .map_err(|()| within(format!("postings[{i}]: amount_fen is not a number")))?;
                Ok(Posting { account: account.to_string(), amount: Fen(amount) })
            })
            .collect::<Result<Vec<_>, String>>()?,
        Some(_) => return Err(within("postings is not a list".into())),
    };
    let content = TxnContent {
        ledger_id,
        seq,
        kind: optional("kind", "kind")?,
        value_date: optional("valueDate", "value_date")?,
        recorded_at_us,
        actor: optional("actor", "actor")?,
        request_id: optional("requestId", "request_id")?,
        command_json: optional("commandJson", "command_json")?,
        postings: &postings,
    };
    let prev = hash(v, "prevHash", "prev_hash").map_err(within)?;
    let recomputed = content.chain_hash(&prev);
    if get(v, "hash", "hash").is_some() {
        let given = hash(v, "hash", "hash").map_err(within)?;
        if given != recomputed {
            return Err(format!(
                "the transaction, seq {seq} of ledger {ledger_id}, gives its hash as {}, but its \
                 content and prev_hash give {}",
                to_hex(&given),
                to_hex(&recomputed)
            ));
        }
    }
    Ok((ledger_id.to_string(), seq, recomputed))
}

fn get<'a>(v: &'a Value, json_name: &str, proto_name: &str) -> Option<&'a Value> {
    v.get(json_name).or_else(|| v.get(proto_name))
}

fn object<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).filter(|o| o.is_object()).ok_or_else(|| format!("no {name}"))
}

fn text<'a>(v: &'a Value, json_name: &str, proto_name: &str) -> Result<&'a str, String> {
    get(v, json_name, proto_name).and_then(Value::as_str).ok_or_else(|| format!("no {proto_name}"))
}

/// A 64-bit integer field: proto3 JSON writes it as a string; a number is taken too. Absent:
/// 0, as proto3 leaves out zeros.
fn number(v: &Value, json_name: &str, proto_name: &str) -> Result<u64, String> {
    match get(v, json_name, proto_name) {
        None => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{proto_name} is not a number")),
        Some(n) => n.as_u64().ok_or_else(|| format!("{proto_name} is not a number")),
    }
}

fn hash(v: &Value, json_name: &str, proto_name: &str) -> Result<Hash, String> {
    parse_hash(text(v, json_name, proto_name)?)
        .ok_or_else(|| format!("{proto_name} is not 64 hex digits"))
}

/// A hash written as 64 hex digits (either case; blanks around them allowed).
pub fn parse_hash(text: &str) -> Option<Hash> {
    from_hex(text.trim())
}

/// A list of hashes (absent or null: none, as proto3 leaves out an empty list).
fn hashes(v: &Value, name: &str) -> Result<Vec<Hash>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|h| h.as_str().and_then(parse_hash))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{name} holds something not 64 hex digits")),
        _ => Err(format!("{name} is not a list")),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    use super::*;
    use crate::ledger::merkle::Tree;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| [i; 32]).collect()
    }

    /// A checkpoint's JSON as grpcurl prints it.
    fn checkpoint_json(size: u8) -> Value {
        let tree = Tree::of(leaves(size));
        let c = Checkpoint {
            ledger_id: "450121".into(),
            tree_size: u64::from(size),
            root: tree.root(),
            head: [size - 1; 32],
        };
        json!({
            "ledgerId": c.ledger_id,
            "treeSize": c.tree_size.to_string(),
            "rootHash": to_hex(&c.root),
            "headHash": to_hex(&c.head),
            "signature": hex::encode(c.sign(&key())),
            "publicKey": hex::encode(key().verifying_key().as_bytes()),
            "signedText": c.signed_text(),
        })
    }

    fn public() -> VerifyingKey {
        key().verifying_key()
    }

    /// The inclusion proof of seq 3 (its hash `[2; 32]`) in `tree`, of seven leaves.
    fn seq_3_of_7(tree: &Tree) -> Value {
        json!({
            "checkpoint": checkpoint_json(7),
            "seq": "3",
            "transactionHash": to_hex(&[2; 32]),
            "auditPath": tree.inclusion(3).unwrap().iter().map(to_hex).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn a_checkpoint_holds_and_any_change_is_found() {
        let c = checkpoint_json(5);
        assert_eq!(check(&public(), &c, None, None).unwrap().len(), 2);
        // The pinned key compared as a key, whatever the case of its hex.
        let mut upper = c.clone();
        upper["publicKey"] = json!(upper["publicKey"].as_str().unwrap().to_uppercase());
        assert!(check(&public(), &upper, None, None).is_ok());
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let e = check(&other, &c, None, None).unwrap_err();
        let sent = c["publicKey"].as_str().unwrap();
        assert!(e.contains(&format!("signed with key {sent}, not the pinned")), "{e}");
        for (field, value) in [
            ("treeSize", json!("6")),
            ("rootHash", json!("00".repeat(32))),
            ("headHash", json!("00".repeat(32))),
            ("ledgerId", json!("450122")),
        ] {
            let mut changed = c.clone();
            changed[field] = value;
            changed.as_object_mut().unwrap().remove("signedText");
            let e = check(&public(), &changed, None, None).unwrap_err();
            assert!(e.contains("is not the pinned key's"), "{field}: {e}");
        }
        let mut lines = c.clone();
        lines["ledgerId"] = json!("450121\nsize 9");
        assert!(check(&public(), &lines, None, None).unwrap_err().contains("not a ledger's id"));
        let mut text = c.clone();
        text["signedText"] = json!("loanledger checkpoint v1\n");
        assert!(check(&public(), &text, None, None).unwrap_err().contains("signed_text"));
        // The proto's own names, a number for the size.
        let mut proto_names = serde_json::Map::new();
        for (json_name, proto_name) in [
            ("ledgerId", "ledger_id"),
            ("rootHash", "root_hash"),
            ("headHash", "head_hash"),
            ("signature", "signature"),
        ] {
            proto_names.insert(proto_name.into(), c[json_name].clone());
        }
        proto_names.insert("tree_size".into(), json!(5));
        assert!(check(&public(), &Value::Object(proto_names), None, None).is_ok());
    }

    #[test]
    fn proofs_hold_for_what_they_prove_alone() {
        let tree = Tree::of(leaves(7));
        let proof = seq_3_of_7(&tree);
        let held = checkpoint_json(7);
        let found = check(&public(), &proof, Some(&held), Some(&[2; 32])).unwrap();
        assert_eq!(found[0], "an inclusion proof");
        assert!(!found.iter().any(|f| f.contains("the service's")), "{found:?}");
        // Without the auditor's own hash, it says whose hash was proved.
        let found = check(&public(), &proof, Some(&held), None).unwrap();
        let note = found.last().unwrap();
        assert!(note.contains("the transaction hash is the service's"), "{found:?}");
        let e = check(&public(), &held, None, Some(&[2; 32])).unwrap_err();
        assert!(e.contains("is for an inclusion proof"), "{e}");
        // A tree of one: grpcurl leaves the empty path out.
        let one = json!({
            "checkpoint": checkpoint_json(1),
            "seq": "1",
            "transactionHash": to_hex(&[0; 32]),
        });
        assert!(check(&public(), &one, None, Some(&[0; 32])).is_ok());
        // The last seq's proof must be of the head's hash.
        let pair = Tree::of(leaves(2));
        let mut last = json!({
            "checkpoint": checkpoint_json(2),
            "seq": "2",
            "transactionHash": to_hex(&[1; 32]),
            "auditPath": pair.inclusion(2).unwrap().iter().map(to_hex).collect::<Vec<_>>(),
        });
        assert!(check(&public(), &last, None, None).is_ok());
        // Signed with another head (a server's own mistake or lie): refused though signed.
        let c = Checkpoint {
            ledger_id: "450121".into(),
            tree_size: 2,
            root: pair.root(),
            head: [9; 32],
        };
        last["checkpoint"]["headHash"] = json!(to_hex(&c.head));
        last["checkpoint"]["signature"] = json!(hex::encode(c.sign(&key())));
        last["checkpoint"]["signedText"] = json!(c.signed_text());
        let e = check(&public(), &last, None, None).unwrap_err();
        assert!(e.contains("is the checkpoint's last"), "{e}");
        let e = check(&public(), &proof, None, Some(&[3; 32])).unwrap_err();
        assert!(e.contains("not 0303"), "{e}");
        let e = check(&public(), &proof, Some(&checkpoint_json(6)), None).unwrap_err();
        assert!(e.contains("is not the checkpoint held"), "{e}");
        let mut moved = proof.clone();
        moved["seq"] = json!("4");
        assert!(check(&public(), &moved, None, None).unwrap_err().contains("does not lead"));

        let consistency = json!({
            "from": checkpoint_json(4),
            "to": checkpoint_json(7),
            "path": tree.consistency(4).unwrap().iter().map(to_hex).collect::<Vec<_>>(),
        });
        let found = check(&public(), &consistency, Some(&checkpoint_json(4)), None).unwrap();
        assert!(found.last().unwrap().contains("is a prefix of"), "{found:?}");
        assert_eq!(found[0], "a consistency proof");
        let e = check(&public(), &consistency, None, Some(&[2; 32])).unwrap_err();
        assert!(e.contains("is for an inclusion proof"), "{e}");
        // Equal sizes: grpcurl leaves the empty path out; the two must be one checkpoint.
        let equal = json!({ "from": checkpoint_json(4), "to": checkpoint_json(4) });
        assert!(check(&public(), &equal, None, None).is_ok());
        // A checkpoint held replayed as the earlier one of a later tree it is no prefix of.
        let mut replayed = consistency.clone();
        let mut other = checkpoint_json(4);
        let c =
            Checkpoint { ledger_id: "450121".into(), tree_size: 4, root: [5; 32], head: [3; 32] };
        other["rootHash"] = json!(to_hex(&c.root));
        other["signature"] = json!(hex::encode(c.sign(&key())));
        other["signedText"] = json!(c.signed_text());
        replayed["from"] = other;
        assert!(check(&public(), &replayed, None, None).unwrap_err().contains("does not show"));
        let e = check(&public(), &consistency, Some(&checkpoint_json(5)), None).unwrap_err();
        assert!(e.contains("is not the checkpoint held"), "{e}");
        let mut cut = consistency.clone();
        cut["path"].as_array_mut().unwrap().pop();
        assert!(check(&public(), &cut, None, None).unwrap_err().contains("a prefix"));
        let mut bad = consistency.clone();
        bad["path"][0] = json!("zz");
        assert!(check(&public(), &bad, None, None).unwrap_err().contains("not 64 hex digits"));
    }

    /// `--ledger`, `--size`, `--seq`: an answer signed by the pinned key, but of another ledger,
    /// size or seq than asked (a proxy handing back another ledger's checkpoint), does not
    /// hold; without them it does. A path with an element appended does not hold either.
    #[test]
    fn the_ledger_size_and_seq_asked_about() {
        let with = |answer: &Value, asked: Asked<'_>| {
            check_with(&public(), answer, Options { asked, ..Options::default() })
        };
        let ledger = |l| Asked { ledger: Some(l), ..Asked::default() };
        let size = |n| Asked { size: Some(n), ..Asked::default() };
        let c = checkpoint_json(5);
        let found = with(&c, Asked { ledger: Some("450121"), size: Some(5), seq: None }).unwrap();
        assert!(found.last().unwrap().ends_with("is the checkpoint asked for"), "{found:?}");
        let e = with(&c, ledger("450122")).unwrap_err();
        assert!(e.ends_with("is not of ledger 450122 as asked"), "{e}");
        assert!(with(&c, size(6)).unwrap_err().ends_with("is not of size 6 as asked"));
        let seq = Asked { seq: Some(3), ..Asked::default() };
        assert!(with(&c, seq).unwrap_err().contains("--seq is for an inclusion proof"));

        let tree = Tree::of(leaves(7));
        let proof = seq_3_of_7(&tree);
        assert!(
            with(&proof, Asked { ledger: Some("450121"), size: Some(7), seq: Some(3) }).is_ok()
        );
        let e = with(&proof, Asked { seq: Some(4), ..Asked::default() }).unwrap_err();
        assert!(e.contains("is of seq 3, not 4 as asked"), "{e}");
        assert!(with(&proof, ledger("450122")).is_err());
        let mut longer = proof.clone();
        longer["auditPath"].as_array_mut().unwrap().push(json!(to_hex(&[7; 32])));
        assert!(with(&longer, Asked::default()).unwrap_err().contains("does not lead"));

        // A consistency proof: both checkpoints of the ledger asked, the later of the size.
        let consistency = json!({
            "from": checkpoint_json(4),
            "to": checkpoint_json(7),
            "path": tree.consistency(4).unwrap().iter().map(to_hex).collect::<Vec<_>>(),
        });
        assert!(
            with(&consistency, Asked { ledger: Some("450121"), size: Some(7), seq: None }).is_ok()
        );
        assert!(with(&consistency, size(4)).unwrap_err().contains("is not of size 4"));
        assert!(with(&consistency, ledger("450122")).is_err());
        let mut longer = consistency.clone();
        longer["path"].as_array_mut().unwrap().push(json!(to_hex(&[7; 32])));
        assert!(with(&longer, Asked::default()).unwrap_err().contains("a prefix"));
    }

    /// `--expect`: a plain checkpoint equal to the one held, or a consistency proof between
    /// two equal sizes, does not pass for the consistency proof a script asked for (both
    /// passed, exit status 0). `--held-public-key`: a checkpoint held from before the
    /// service's key changed is checked with its own key; the answer with the pinned one.
    #[test]
    fn the_kind_asked_for_and_a_key_changed_since() {
        let held = checkpoint_json(4);
        let consistency = Expected::Consistency;
        let asked = |answer: &Value| {
            let options =
                Options { held: Some(&held), expect: Some(consistency), ..Options::default() };
            check_with(&public(), answer, options)
        };
        let e = asked(&checkpoint_json(4)).unwrap_err();
        assert!(e.contains("is a checkpoint, not a consistency proof as asked"), "{e}");
        let tree = Tree::of(leaves(7));
        let proof = json!({
            "from": checkpoint_json(4),
            "to": checkpoint_json(7),
            "path": tree.consistency(4).unwrap().iter().map(to_hex).collect::<Vec<_>>(),
        });
        assert!(asked(&proof).is_ok());
        let equal = json!({ "from": checkpoint_json(4), "to": checkpoint_json(4) });
        let e = asked(&equal).unwrap_err();
        assert!(e.contains("between two equal sizes (4)"), "{e}");
        let of_size = |size| Options {
            held: Some(&held),
            expect: Some(consistency),
            asked: Asked { size: Some(size), ..Asked::default() },
            ..Options::default()
        };
        assert!(check_with(&public(), &equal, of_size(4)).is_ok(), "the size asked for");
        let unasked = Options { held: Some(&held), ..Options::default() };
        assert!(check_with(&public(), &equal, unasked).is_ok(), "no kind asked for");
        // Asked for a consistency proof, one checked against no held checkpoint shows nothing.
        let unheld = Options { expect: Some(consistency), ..Options::default() };
        let e = check_with(&public(), &proof, unheld).unwrap_err();
        assert!(e.contains("--expect consistency needs --held"), "{e}");
        let inclusion = Options { expect: Some(Expected::Inclusion), ..Options::default() };
        assert!(check_with(&public(), &proof, inclusion).is_err());
        assert_eq!(Expected::parse("consistency"), Some(Expected::Consistency));
        assert_eq!(Expected::parse("proof"), None);

        // The service's key changed after the held checkpoint of size 4 was signed: the
        // answer's checkpoints come under the new key.
        let new_key = SigningKey::from_bytes(&[9; 32]);
        let resign = |mut v: Value| {
            let c = Checkpoint {
                ledger_id: v["ledgerId"].as_str().unwrap().into(),
                tree_size: v["treeSize"].as_str().unwrap().parse().unwrap(),
                root: from_hex(v["rootHash"].as_str().unwrap()).unwrap(),
                head: from_hex(v["headHash"].as_str().unwrap()).unwrap(),
            };
            v["signature"] = json!(hex::encode(c.sign(&new_key)));
            v["publicKey"] = json!(hex::encode(new_key.verifying_key().as_bytes()));
            v
        };
        let rotated = json!({
            "from": resign(checkpoint_json(4)),
            "to": resign(checkpoint_json(7)),
            "path": proof["path"].clone(),
        });
        let new_public = new_key.verifying_key();
        let old = Options { held: Some(&held), ..Options::default() };
        let e = check_with(&new_public, &rotated, old).unwrap_err();
        assert!(e.contains("the held checkpoint is signed with key"), "{e}");
        let both = Options { held: Some(&held), held_key: Some(&public()), ..Options::default() };
        let found = check_with(&new_public, &rotated, both).unwrap();
        assert!(found.iter().any(|l| l.contains("is the checkpoint held")), "{found:?}");
        assert!(found.last().unwrap().contains("is a prefix of"), "{found:?}");
        // The held key does not stand in for the answer's.
        let wrong = Options { held: Some(&held), held_key: Some(&public()), ..Options::default() };
        assert!(check_with(&public(), &rotated, wrong).is_err());

        // A handover from the pinned key to the new one, signed by both: followed, the answer
        // is checked with the new key and the held checkpoint with the pinned one, no key
        // given by hand.
        let at = "2026-12-06T08:00:00Z".to_string();
        let (h, by_old, by_new) = Handover::sign(&key(), &new_key, at.clone());
        let statement = handover_json(&h, &by_old, &by_new);
        let (earlier, last, found) =
            follow_handovers(&public(), std::slice::from_ref(&statement)).unwrap();
        assert_eq!((earlier.as_slice(), last), (&[public()][..], new_public));
        assert!(found[0].contains("signed by both"), "{found:?}");
        let followed = Options { held: Some(&held), earlier_keys: &earlier, ..Options::default() };
        let found = check_with(&last, &rotated, followed).unwrap();
        assert!(
            found.iter().any(|l| l.contains("by an earlier key of the handovers")),
            "{found:?}"
        );
        assert!(found.iter().any(|l| l.contains("by the key handed over to")), "{found:?}");
        assert!(found.last().unwrap().contains("is a prefix of"), "{found:?}");
        // An answer signed by the key handed over from is not taken once the handover is
        // followed: whoever kept the old key cannot answer for the service.
        let by_old = Options { earlier_keys: &earlier, ..Options::default() };
        let e = check_with(&last, &checkpoint_json(7), by_old).unwrap_err();
        assert!(e.contains("not the key handed over to"), "{e}");
        // Not followed: from a key other than the pinned one; a signature or field altered.
        let stranger = SigningKey::from_bytes(&[5; 32]).verifying_key();
        let e = follow_handovers(&stranger, std::slice::from_ref(&statement)).unwrap_err();
        assert!(e.contains("hands over from"), "{e}");
        let mut forged = statement.clone();
        forged["to_signature"] = forged["from_signature"].clone();
        assert!(follow_handovers(&public(), &[forged]).unwrap_err().contains("do not hold"));
        let mut moved = statement.clone();
        moved["at"] = json!("2026-12-07T08:00:00Z");
        assert!(follow_handovers(&public(), &[moved]).unwrap_err().contains("signed_text"));
        let mut elsewhere = statement.clone();
        elsewhere["to_public_key"] = json!(hex::encode(stranger.as_bytes()));
        elsewhere.as_object_mut().unwrap().remove("signed_text");
        assert!(follow_handovers(&public(), &[elsewhere]).unwrap_err().contains("do not hold"));
        // A chain: the second must start where the first ended.
        let third = SigningKey::from_bytes(&[11; 32]);
        let (h2, a, b) = Handover::sign(&new_key, &third, at.clone());
        let chain = [statement.clone(), handover_json(&h2, &a, &b)];
        let (earlier, last, _) = follow_handovers(&public(), &chain).unwrap();
        assert_eq!((earlier.len(), last), (2, third.verifying_key()));
        let skipped = [handover_json(&h2, &a, &b)];
        assert!(follow_handovers(&public(), &skipped).is_err());
    }
}
