-- RevokeToken is idempotent by request_id, as every other write: the token each request id
-- revoked (or was refused revoking). A retry answers that token as it stands; the id sent again
-- for another token is ALREADY_EXISTS (REQUEST_ID_REUSED). The CLI's revocations have none.
create table token_revocation (
    request_id text collate "C" primary key,
    token_id text collate "C" not null,
    recorded_at_us bigint not null
);
