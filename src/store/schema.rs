//! The database's own guards, checked by `verify` against what this build's migrations make.
//!
//! DESIGN.md: nothing in the journal is ever updated or deleted, and "the database itself
//! refuses it (triggers on both backends)". With a guard dropped, disabled or weakened behind
//! the service's back, the journal and the other append-only tables (loan history links,
//! household statuses, policy versions, the LPR table, idempotency records) are open to
//! change again. The hash chain tells a changed journal row, and the read models are compared
//! with the journal, but neither says that the guards are off, nor covers the LPR table or a
//! change yet to come. Verify reports it, each problem starting with `schema:`.
//!
//! - **SQLite**: every table, index, view and trigger of the database (`sqlite_master`, SQLite's
//!   own `sqlite_*` tables and indexes and sqlx's `_sqlx_migrations` table aside) against those the migrations
//!   make in a fresh in-memory database ([`sqlite_expected`], built once a process, a few
//!   milliseconds), by type, table and SQL text. One of the migrations' objects missing or
//!   defined otherwise is reported, and so is a trigger, view or unique index the migrations do
//!   not make (a trigger can rewrite what is stored, a view stand in for a table, a unique
//!   index have `INSERT OR REPLACE` delete a row, which fires no trigger). Another index or a
//!   table of the operator's own is not: it changes nothing the service stores or reads.
//! - **PostgreSQL** (no fresh database to compare with: verify may run on a read-only
//!   standby): the append-only tables' triggers ([`PG_GUARDS`]) each present, enabled always
//!   (`tgenabled` `A`, migration 0024: they fire in a session whose `session_replication_role`
//!   is `replica` too), and defined as the migrations define it (its events, no `WHEN`,
//!   no columns, calling `refuse_change()`: `pg_get_triggerdef`'s text); no other trigger, no
//!   rule, no row-level security or policy on a table of the service's ([`PG_RELATIONS`],
//!   [`PG_OTHER_SQL`]); each of those relations a table (the `posting` view a
//!   view); and the bodies of the functions the guards and the checks call ([`PG_FUNCTIONS`])
//!   as the migrations wrote them. The `posting` view's query is not compared: PostgreSQL
//!   keeps it only as its deparser prints it back, which may change between versions, and a
//!   healthy database must not fail verify after an upgrade (SQLite keeps the text as written,
//!   and it is compared there).
//!
//! Both read inside the stored read models' transaction ([`super::bulk`]).

use std::sync::OnceLock;

use super::{APPLIED_MIGRATIONS_SQL, POSTGRES_MIGRATOR, SQLITE_MIGRATOR, StoreError, versions};

/// The prefix of every problem this module reports.
const PROBLEM: &str = "schema:";

/// One object of a SQLite schema: (type, name, table, SQL text).
type SqliteObject = (String, String, String, Option<String>);

/// SQLite's own tables and indexes (`sqlite_sequence`, `sqlite_stat1`, `sqlite_autoindex_…`)
/// and sqlx's migrations table are left out by name; a trigger or a view never is, whatever its
/// name (a trigger named `_sqlx_migrations`, or `SQLITE_…` made with `writable_schema`, was
/// left out with them).
const SQLITE_SCHEMA_SQL: &str = "select type, name, tbl_name, sql from sqlite_master \
     where not (type in ('table', 'index') and name like 'sqlite\\_%' escape '\\') \
     and not (type = 'table' and name = '_sqlx_migrations') \
     order by type, name";

/// The schema this build's SQLite migrations make, in [`SQLITE_SCHEMA_SQL`]'s order (or why it
/// could not be made: an internal error, the same for every verify).
fn sqlite_expected() -> Result<&'static [SqliteObject], StoreError> {
    static EXPECTED: OnceLock<Result<Vec<SqliteObject>, String>> = OnceLock::new();
    let made = EXPECTED.get_or_init(|| {
        let make = || -> Result<Vec<SqliteObject>, rusqlite::Error> {
            let conn = rusqlite::Connection::open_in_memory()?;
            for migration in SQLITE_MIGRATOR.iter() {
                conn.execute_batch(migration.sql.as_str())?;
            }
            sqlite_objects(&conn)
        };
        make().map_err(|e| format!("this build's SQLite migrations do not run: {e}"))
    });
    match made {
        Ok(objects) => Ok(objects),
        Err(e) => Err(StoreError::Corrupt(e.clone())),
    }
}

fn sqlite_objects(conn: &rusqlite::Connection) -> Result<Vec<SqliteObject>, rusqlite::Error> {
    let mut statement = conn.prepare(SQLITE_SCHEMA_SQL)?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    rows.collect()
}

/// The differences of the SQLite database on `conn` from the migrations' schema.
pub(super) fn sqlite_problems(conn: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare(APPLIED_MIGRATIONS_SQL)?;
    let applied = statement.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
    if let Some(problem) = other_migrations(&applied, &versions(&SQLITE_MIGRATOR)) {
        return Ok(vec![problem]);
    }
    Ok(sqlite_differences(sqlite_expected()?, &sqlite_objects(conn)?))
}

/// One problem when a database's applied migrations are not this build's (`verify` opens a
/// database as it is): its guards are then not compared object by object, which would read as
/// tampering what is another build's schema.
fn other_migrations(applied: &[i64], build: &[i64]) -> Option<String> {
    (applied != build).then(|| {
        format!(
            "{PROBLEM} the database's migrations ({} applied, the last {}) are not this build's \
             ({}, the last {}): its guards are not compared; verify with the build that \
             migrated it, or migrate it",
            applied.len(),
            applied.last().copied().unwrap_or_default(),
            build.len(),
            build.last().copied().unwrap_or_default()
        )
    })
}

/// `live` against `expected` (both by type then name).
fn sqlite_differences(expected: &[SqliteObject], live: &[SqliteObject]) -> Vec<String> {
    let key = |o: &SqliteObject| (o.0.clone(), o.1.clone());
    let live_by_key: std::collections::BTreeMap<_, _> = live.iter().map(|o| (key(o), o)).collect();
    let mut problems = Vec::new();
    for want in expected {
        let (kind, name, table, _) = want;
        match live_by_key.get(&key(want)) {
            None => problems.push(format!("{PROBLEM} {kind} {name} on {table} is missing")),
            Some(&have) if have != want => problems.push(format!(
                "{PROBLEM} {kind} {name} on {table} is not defined as the migrations define it"
            )),
            Some(_) => {}
        }
    }
    let expected_keys: std::collections::BTreeSet<_> = expected.iter().map(key).collect();
    for (kind, name, table, sql) in live {
        // A unique index of the operator's own changes what is stored: `INSERT OR REPLACE`
        // meeting it deletes the row it conflicts with, and a delete so made fires no trigger
        // (since 2026-12-07; an index of the operator's own went unreported).
        let unique = kind == "index"
            && sql.as_deref().is_some_and(|sql| {
                sql.split_whitespace().take(2).any(|w| w.eq_ignore_ascii_case("unique"))
            });
        let adds_behaviour = kind == "trigger" || kind == "view" || unique;
        if adds_behaviour && !expected_keys.contains(&(kind.clone(), name.clone())) {
            problems.push(format!("{PROBLEM} {kind} {name} on {table} is not the migrations'"));
        }
    }
    problems
}

/// The append-only tables' triggers on PostgreSQL: (table, trigger, the events it refuses and
/// for each what, as `pg_get_triggerdef` words them). `posting` has been a view of the journal
/// since migration 0007; its guards went with its table.
const PG_GUARDS: [(&str, &str, &str); 12] = {
    const ROWS: &str = "BEFORE DELETE OR UPDATE ON {} FOR EACH ROW";
    const TRUNCATE: &str = "BEFORE TRUNCATE ON {} FOR EACH STATEMENT";
    [
        ("journal_txn", "journal_txn_append_only", ROWS),
        ("journal_txn", "journal_txn_no_truncate", TRUNCATE),
        ("journal_loan", "journal_loan_append_only", ROWS),
        ("journal_loan", "journal_loan_no_truncate", TRUNCATE),
        ("household_status", "household_status_append_only", ROWS),
        ("household_status", "household_status_no_truncate", TRUNCATE),
        ("policy_version", "policy_version_append_only", ROWS),
        ("policy_version", "policy_version_no_truncate", TRUNCATE),
        ("lpr", "lpr_append_only", ROWS),
        ("lpr", "lpr_no_truncate", TRUNCATE),
        ("idempotency", "idempotency_append_only", ROWS),
        ("idempotency", "idempotency_no_truncate", TRUNCATE),
    ]
};

/// The service's relations on PostgreSQL and the kind each must be (`r` a table, `v` a view).
const PG_RELATIONS: [(&str, &str); 20] = [
    ("ledger", "r"),
    ("bank", "r"),
    ("household", "r"),
    ("household_status", "r"),
    ("policy_version", "r"),
    ("lpr", "r"),
    ("loan", "r"),
    ("account_balance", "r"),
    ("journal_txn", "r"),
    ("journal_loan", "r"),
    ("idempotency", "r"),
    ("api_token", "r"),
    ("posting", "v"),
    // Migrations 0012, 0013, 0015 and 0020 (their tables were missing here until 2026-12-08:
    // a policy hiding a claim's period from verify's scan went unreported).
    ("subsidy_claim", "r"),
    ("subsidy_claim_period", "r"),
    ("risk_fund", "r"),
    ("risk_compensation", "r"),
    ("pool", "r"),
    ("pool_member", "r"),
    ("token_revocation", "r"),
];

/// The functions the guards (`refuse_change`) and the tables' checks (`loanledger_require`)
/// call on PostgreSQL, with their bodies as the migrations wrote them (0001, 0004).
const PG_FUNCTIONS: [(&str, &str); 2] = [
    (
        "refuse_change()",
        "\nbegin\n    raise exception '% is append-only', tg_table_name using errcode = 'P0001';\nend;\n",
    ),
    (
        "loanledger_require(boolean,text)",
        "\nbegin\n    if ok is not true then\n        raise exception using errcode = 'LL001', message = message;\n    end if;\n    return true;\nend\n",
    ),
];

/// The kind of each of [`PG_RELATIONS`] ("" where there is none), resolved as the service's
/// own statements resolve them (the connection's search path).
const PG_RELATIONS_SQL: &str = "select n, coalesce((select c.relkind::text from pg_class c \
     where c.oid = to_regclass(n)), '') from unnest($1::text[]) n";
/// The triggers on those relations: table, schema, trigger, `tgenabled`, its definition.
const PG_TRIGGERS_SQL: &str = "select c.relname::text, c.relnamespace::regnamespace::text, \
     t.tgname::text, t.tgenabled::text, pg_get_triggerdef(t.oid) \
     from pg_trigger t join pg_class c on c.oid = t.tgrelid \
     where not t.tgisinternal \
     and t.tgrelid in (select to_regclass(n) from unnest($1::text[]) n) \
     order by 1, 3";
/// What else makes a table of the service's behave otherwise than its statements say, none of
/// which the migrations make: a rule (`_RETURN`, a view's own, aside), row-level security on
/// or forced, a row-level security policy. (A `session_replication_role` of `replica` no longer
/// switches the guards off: they fire always since migration 0024.)
const PG_OTHER_SQL: &str = "select format('rule %s on %s is not the migrations''', \
     r.rulename, c.relname) from pg_rewrite r join pg_class c on c.oid = r.ev_class \
     where r.rulename <> '_RETURN' \
     and r.ev_class in (select to_regclass(n) from unnest($1::text[]) n) \
     union all select format('row-level security is on for %s: the migrations leave it off', \
     c.relname) from pg_class c where (c.relrowsecurity or c.relforcerowsecurity) \
     and c.oid in (select to_regclass(n) from unnest($1::text[]) n) \
     union all select format('policy %s on %s is not the migrations''', p.polname, c.relname) \
     from pg_policy p join pg_class c on c.oid = p.polrelid \
     where p.polrelid in (select to_regclass(n) from unnest($1::text[]) n) \
     order by 1";

/// The body of each of [`PG_FUNCTIONS`] (`None` where there is no such function).
const PG_FUNCTIONS_SQL: &str = "select f, (select p.prosrc from pg_proc p \
     where p.oid = to_regprocedure(f)) from unnest($1::text[]) f";

/// The differences of the PostgreSQL database on `conn` from the migrations' guards.
pub(super) async fn postgres_problems(
    conn: &mut sqlx::PgConnection,
) -> Result<Vec<String>, StoreError> {
    let applied: Vec<i64> =
        sqlx::query_scalar(APPLIED_MIGRATIONS_SQL).fetch_all(&mut *conn).await?;
    if let Some(problem) = other_migrations(&applied, &versions(&POSTGRES_MIGRATOR)) {
        return Ok(vec![problem]);
    }
    // The transaction's scans turned sorts off ([`super::pgcopy::scan_settings`]): a sort's
    // cost then passes `jit_above_cost`, and each catalog read below was compiled by the JIT
    // first (half a second for the one of rules and policies, measured in a test database).
    sqlx::query("select set_config('enable_sort', 'on', true), set_config('jit', 'off', true)")
        .execute(&mut *conn)
        .await?;
    let relations: Vec<&str> = PG_RELATIONS.iter().map(|(name, _)| *name).collect();
    let kinds: Vec<(String, String)> =
        sqlx::query_as(PG_RELATIONS_SQL).bind(&relations).fetch_all(&mut *conn).await?;
    let triggers: Vec<PgTrigger> =
        sqlx::query_as(PG_TRIGGERS_SQL).bind(&relations).fetch_all(&mut *conn).await?;
    let functions: Vec<&str> = PG_FUNCTIONS.iter().map(|(name, _)| *name).collect();
    let bodies: Vec<(String, Option<String>)> =
        sqlx::query_as(PG_FUNCTIONS_SQL).bind(&functions).fetch_all(&mut *conn).await?;
    let others: Vec<String> =
        sqlx::query_scalar(PG_OTHER_SQL).bind(&relations).fetch_all(&mut *conn).await?;
    let mut problems = postgres_differences(&kinds, &triggers, &bodies);
    problems.extend(others.into_iter().map(|o| format!("{PROBLEM} {o}")));
    Ok(problems)
}

/// A trigger as PostgreSQL's catalog has it: (table, its schema, name, `tgenabled`, definition).
type PgTrigger = (String, String, String, String, String);

fn postgres_differences(
    kinds: &[(String, String)],
    triggers: &[PgTrigger],
    bodies: &[(String, Option<String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let kind_name = |kind: &str| match kind {
        "r" | "p" => "a table",
        "v" => "a view",
        "m" => "a materialized view",
        "f" => "a foreign table",
        _ => "another kind of relation",
    };
    for (name, want) in PG_RELATIONS {
        match kinds.iter().find(|(n, _)| n == name).map(|(_, kind)| kind.as_str()) {
            None | Some("") => problems.push(format!("{PROBLEM} relation {name} is missing")),
            Some(have) if kind_name(have) != kind_name(want) => problems.push(format!(
                "{PROBLEM} {name} is {}, the migrations make it {}",
                kind_name(have),
                kind_name(want)
            )),
            Some(_) => {}
        }
    }
    for (table, name, events) in PG_GUARDS {
        let found = triggers.iter().find(|t| t.0 == table && t.2 == name);
        let Some((_, schema, _, enabled, definition)) = found else {
            problems.push(format!("{PROBLEM} trigger {name} on {table} is missing"));
            continue;
        };
        let on = format!("{schema}.{table}");
        let want = format!(
            "CREATE TRIGGER {name} {} EXECUTE FUNCTION refuse_change()",
            events.replace("{}", &on)
        );
        // PostgreSQL before 12 (and systems built on it, such as YugabyteDB) print the same
        // trigger with `EXECUTE PROCEDURE`.
        if definition.replace(" EXECUTE PROCEDURE ", " EXECUTE FUNCTION ") != want {
            problems.push(format!(
                "{PROBLEM} trigger {name} on {table} is not defined as the migrations define it"
            ));
        }
        // `A`: fires always, as migration 0024 leaves it; `O`: fires unless the session's
        // `session_replication_role` is `replica`; `D`: disabled; `R`: fires only in a
        // replicating session.
        match enabled.as_str() {
            "A" => {}
            "O" => problems.push(format!(
                "{PROBLEM} trigger {name} on {table} does not fire in a session whose \
                 session_replication_role is replica (enabled, not always)"
            )),
            _ => problems.push(format!("{PROBLEM} trigger {name} on {table} is disabled")),
        }
    }
    for (table, _, name, _, _) in triggers {
        if !PG_GUARDS.iter().any(|(t, n, _)| t == table && n == name) {
            problems.push(format!("{PROBLEM} trigger {name} on {table} is not the migrations'"));
        }
    }
    for (function, want) in PG_FUNCTIONS {
        match bodies.iter().find(|(f, _)| f == function).and_then(|(_, body)| body.as_deref()) {
            None => problems.push(format!("{PROBLEM} function {function} is missing")),
            Some(body) if body != want => problems.push(format!(
                "{PROBLEM} function {function} is not defined as the migrations define it"
            )),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's migration 0016 over a database holding versions: its rows are kept (ordinal 0,
    /// in date order), a second version of a date is stored after the first, and the table's
    /// guards refuse a row under a stored key, a change and a removal as before.
    #[test]
    fn sqlite_policy_versions_keep_their_rows_and_guards_through_0016() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("pragma foreign_keys = on").unwrap();
        let (before, after): (Vec<_>, Vec<_>) =
            SQLITE_MIGRATOR.iter().filter(|m| m.version < 19).partition(|m| m.version < 16);
        for migration in &before {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        conn.execute_batch(
            "insert into ledger (ledger_id, name) values ('L1', 'county');
             insert into policy_version (ledger_id, effective_date, params_json)
                 values ('L1', '2024-01-01', '{\"b\":1}'), ('L1', '2014-12-10', '{\"a\":1}');",
        )
        .unwrap();
        for migration in &after {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        let rows = |conn: &rusqlite::Connection| -> Vec<(String, i64, String)> {
            let sql = "select effective_date, ordinal, params_json from policy_version \
                       where ledger_id = 'L1' order by effective_date, ordinal";
            let mut statement = conn.prepare(sql).unwrap();
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            rows.unwrap().collect::<Result<_, _>>().unwrap()
        };
        let kept = rows(&conn);
        assert_eq!(
            kept,
            [
                ("2014-12-10".into(), 0, "{\"a\":1}".into()),
                ("2024-01-01".into(), 0, "{\"b\":1}".into())
            ]
        );
        let insert = "insert into policy_version (ledger_id, effective_date, ordinal, params_json) \
                      values ('L1', '2024-01-01', ?1, '{\"c\":1}')";
        conn.execute(insert, [1]).unwrap();
        assert_eq!(rows(&conn).len(), 3);
        for refused in [
            conn.execute(insert, [1]).map(|_| ()),
            conn.execute("update policy_version set params_json = '{}'", []).map(|_| ()),
            conn.execute("delete from policy_version", []).map(|_| ()),
            conn.execute(
                "insert into policy_version (ledger_id, effective_date, params_json) \
                          values ('NO-SUCH', '2030-01-01', '{}')",
                [],
            )
            .map(|_| ()),
        ] {
            assert!(refused.is_err());
        }
        assert_eq!(rows(&conn).len(), 3);
    }

    /// SQLite's migration 0019 gives each stored policy version the seq that recorded it, from
    /// the journal: a date's versions set by `policy.set` are its last rows in the order they
    /// were set, a row before them a default version recorded with the ledger; a row the
    /// journal does not explain takes 0. A row stored since must say its seq.
    #[test]
    fn sqlite_policy_versions_take_their_seqs_from_the_journal_through_0019() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("pragma foreign_keys = on").unwrap();
        let (before, after): (Vec<_>, Vec<_>) =
            SQLITE_MIGRATOR.iter().partition(|m| m.version < 19);
        for migration in &before {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        let journal = |ledger: &str, seq: i64, kind: &str, json: &str| {
            let sql = "insert into journal_txn (ledger_id, seq, kind, value_date, recorded_at_us, \
                       actor, request_id, command_json, prev_hash, hash, postings) \
                       values (?1, ?2, ?3, '2020-01-01', 0, 'a', ?4, ?5, '', '', '[]')";
            let request = format!("{ledger}-{seq}");
            conn.execute(sql, rusqlite::params![ledger, seq, kind, request, json]).unwrap();
        };
        let set = |ledger: &str, date: &str| {
            format!(
                r#"{{"ledger_id":"{ledger}","version":{{"effective_date":"{date}","params":{{}}}}}}"#
            )
        };
        conn.execute_batch(
            "insert into ledger (ledger_id, name) values ('L1', 'county'), ('L2', 'other'),
                 ('L3', 'no journal');
             insert into policy_version (ledger_id, effective_date, ordinal, params_json) values
                 ('L1', '2014-12-10', 0, '{}'), ('L1', '2024-01-01', 0, '{}'),
                 ('L1', '2024-01-01', 1, '{}'), ('L1', '2019-01-01', 0, '{}'),
                 ('L1', '2030-01-01', 0, '{}'), ('L2', '2014-12-10', 0, '{}'),
                 ('L2', '2019-01-01', 0, '{}'), ('L3', '2014-12-10', 0, '{}');",
        )
        .unwrap();
        journal("L1", 1, "ledger.created", r#"{"ledger_id":"L1","name":"county"}"#);
        journal("L1", 4, "bank.registered", "{}");
        journal("L1", 5, "policy.set", &set("L1", "2024-01-01"));
        journal("L1", 7, "policy.set", &set("L1", "2019-01-01"));
        journal("L2", 1, "ledger.created", r#"{"ledger_id":"L2","name":"other"}"#);
        journal("L2", 3, "policy.set", &set("L2", "2019-01-01"));
        for migration in &after {
            conn.execute_batch(migration.sql.as_str()).unwrap();
        }
        let sql = "select ledger_id, effective_date, ordinal, seq from policy_version \
                   order by ledger_id, effective_date, ordinal";
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)));
        let rows: Vec<(String, String, i64, i64)> =
            rows.unwrap().collect::<Result<_, _>>().unwrap();
        let row =
            |ledger: &str, date: &str, ordinal, seq| (ledger.into(), date.into(), ordinal, seq);
        assert_eq!(
            rows,
            [
                row("L1", "2014-12-10", 0, 1),
                row("L1", "2019-01-01", 0, 7),
                row("L1", "2024-01-01", 0, 1),
                row("L1", "2024-01-01", 1, 5),
                row("L1", "2030-01-01", 0, 0),
                row("L2", "2014-12-10", 0, 1),
                row("L2", "2019-01-01", 0, 3),
                row("L3", "2014-12-10", 0, 0),
            ]
        );
        let without_seq = "insert into policy_version (ledger_id, effective_date, ordinal, \
                           params_json) values ('L1', '2031-01-01', 0, '{}')";
        assert!(conn.execute(without_seq, []).is_err());
        assert!(conn.execute("update policy_version set seq = 2", []).is_err());
    }

    /// The function bodies pinned here are the migrations' own text.
    #[test]
    fn pinned_function_bodies_are_the_migrations() {
        let migrations = [
            include_str!("../../migrations/postgres/0001_spine.sql"),
            include_str!("../../migrations/postgres/0004_require.sql"),
        ];
        for ((function, body), migration) in PG_FUNCTIONS.iter().zip(migrations) {
            assert!(migration.contains(&format!("$${body}$$")), "{function}");
        }
    }

    /// A database of another build's migrations is one problem, naming both.
    #[test]
    fn other_migrations_are_one_problem() {
        assert_eq!(other_migrations(&[1, 2, 3], &[1, 2, 3]), None);
        let behind = other_migrations(&[1, 2], &[1, 2, 3]).expect("behind");
        assert!(behind.contains("(2 applied, the last 2)") && behind.contains("(3, the last 3)"));
        assert!(other_migrations(&[1, 2, 3, 4], &[1, 2, 3]).is_some());
    }

    /// A fresh database of the migrations has the schema they make; what differs is named.
    #[test]
    fn sqlite_schema_differences_are_named() {
        let expected = sqlite_expected().expect("the migrations run");
        assert!(expected.iter().any(|o| o.0 == "trigger" && o.1 == "journal_txn_no_update"));
        assert!(sqlite_differences(expected, expected).is_empty());
        let mut live = expected.to_vec();
        live.retain(|o| o.1 != "journal_txn_no_update");
        let weakened = live.iter_mut().find(|o| o.1 == "idempotency_no_delete").expect("guard");
        weakened.3 = Some("create trigger idempotency_no_delete before delete on idempotency when 0 begin select 1; end".into());
        live.push((
            "index".into(),
            "my_report_idx".into(),
            "loan".into(),
            Some("create index my_report_idx on loan (status)".into()),
        ));
        live.push(("trigger".into(), "rewrite".into(), "loan".into(), None));
        assert_eq!(
            sqlite_differences(expected, &live),
            [
                "schema: trigger idempotency_no_delete on idempotency is not defined as the migrations define it",
                "schema: trigger journal_txn_no_update on journal_txn is missing",
                "schema: trigger rewrite on loan is not the migrations'",
            ]
        );
    }

    /// The guards as the migrations make them pass; each way of weakening one is named.
    #[test]
    fn postgres_guard_differences_are_named() {
        let kinds: Vec<(String, String)> =
            PG_RELATIONS.iter().map(|(n, k)| (n.to_string(), k.to_string())).collect();
        let trigger = |table: &str, name: &str, events: &str| {
            let on = format!("public.{table}");
            let definition = format!(
                "CREATE TRIGGER {name} {} EXECUTE FUNCTION refuse_change()",
                events.replace("{}", &on)
            );
            (table.to_string(), "public".to_string(), name.to_string(), "A".to_string(), definition)
        };
        let triggers: Vec<PgTrigger> = PG_GUARDS.iter().map(|(t, n, e)| trigger(t, n, e)).collect();
        let bodies: Vec<(String, Option<String>)> =
            PG_FUNCTIONS.iter().map(|(f, b)| (f.to_string(), Some(b.to_string()))).collect();
        assert!(postgres_differences(&kinds, &triggers, &bodies).is_empty());
        // As PostgreSQL 11 prints them.
        let older: Vec<PgTrigger> = triggers
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.4 = t.4.replace("EXECUTE FUNCTION", "EXECUTE PROCEDURE");
                t
            })
            .collect();
        assert!(postgres_differences(&kinds, &older, &bodies).is_empty());

        let mut kinds = kinds;
        kinds[6].1 = "v".into();
        kinds[7].1 = String::new();
        let mut triggers = triggers;
        triggers.remove(0);
        triggers[0].3 = "D".into();
        triggers[1].4 = triggers[1].4.replace(" FOR EACH ROW", " FOR EACH ROW WHEN (false)");
        triggers[2].3 = "O".into();
        triggers.push(trigger("loan", "rewrite", "BEFORE UPDATE ON {} FOR EACH ROW"));
        let mut bodies = bodies;
        bodies[0].1 = Some("begin return old; end".into());
        bodies[1].1 = None;
        assert_eq!(
            postgres_differences(&kinds, &triggers, &bodies),
            [
                "schema: loan is a view, the migrations make it a table",
                "schema: relation account_balance is missing",
                "schema: trigger journal_txn_append_only on journal_txn is missing",
                "schema: trigger journal_txn_no_truncate on journal_txn is disabled",
                "schema: trigger journal_loan_append_only on journal_loan is not defined as the migrations define it",
                "schema: trigger journal_loan_no_truncate on journal_loan does not fire in a session whose session_replication_role is replica (enabled, not always)",
                "schema: trigger rewrite on loan is not the migrations'",
                "schema: function refuse_change() is not defined as the migrations define it",
                "schema: function loanledger_require(boolean,text) is missing",
            ]
        );
    }
}
