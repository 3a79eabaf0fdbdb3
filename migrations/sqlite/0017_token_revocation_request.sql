-- RevokeToken is idempotent by request_id, as every other write: the token each request id
-- revoked, and the reason it was refused (LAST_OPERATOR_TOKEN), if it was. A retry answers that
-- token as it stands, or the same refusal; the id sent again for another token is
-- ALREADY_EXISTS (REQUEST_ID_REUSED). The CLI's revocations have none.
create table token_revocation (
    request_id text primary key,
    token_id text not null,
    recorded_at_us bigint not null,
    refused text
);
