-- A condition a statement requires of itself: false raises SQLSTATE LL001 with the message, so
-- that the statement fails as a whole (and, in autocommit, writes nothing). The writer's group
-- statement (src/store/write.rs, flush_unnest) requires that every loan it changes had a stored
-- row to update; SQLite's writer checks the same by the rows each update changed.
create function loanledger_require(ok boolean, message text) returns boolean
language plpgsql
as $$
begin
    if not ok then
        raise exception using errcode = 'LL001', message = message;
    end if;
    return true;
end
$$;
