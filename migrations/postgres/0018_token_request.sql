-- Tokens made through the operator's CreateToken are idempotent by request_id: a retry finds
-- the token its first call made (and is not shown its secret again). NULL for the tokens the
-- CLI makes; a unique index admits any number of NULLs.
alter table api_token add column request_id text collate "C";
create unique index api_token_request on api_token (request_id);
