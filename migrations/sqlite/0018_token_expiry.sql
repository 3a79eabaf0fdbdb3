-- A token may be made to expire (CreateToken's valid_days, `token create --valid-days`): from
-- that microsecond on it is refused as a revoked one is. NULL: it does not expire (every token
-- made before, and those made without a term).
alter table api_token add column expires_at_us integer;
