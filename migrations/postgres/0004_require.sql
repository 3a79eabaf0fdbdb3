-- A condition a statement requires of itself: false raises SQLSTATE LL001 with the message, so
-- that the statement fails as a whole (and, in autocommit, writes nothing). The writer's group
-- statement (src/store/write.rs, flush_unnest) requires that every loan it changes had a stored
-- row to update; SQLite's writer checks the same by the rows each update changed. A NULL
-- condition fails too. VOLATILE (the default) on purpose: an IMMUTABLE function called with
-- constant arguments would be evaluated when the statement is planned, and fail every one.
create function loanledger_require(ok boolean, message text) returns boolean
language plpgsql
as $$
begin
    if ok is not true then
        raise exception using errcode = 'LL001', message = message;
    end if;
    return true;
end
$$;
