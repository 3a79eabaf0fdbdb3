-- From this version on, loan.servicing_json is written without its empty lists and zero
-- figures (domain::servicing::Servicing), which versions before it cannot read. This migration
-- changes nothing: it is recorded in _sqlx_migrations so that such a version refuses the
-- database at its start (an applied migration it does not know) rather than failing on each
-- loan serviced since.
select 1;
