-- Room on each page of the two tables the writer updates, so that an update can be HOT
-- (heap-only: the new row version on the same page, no index entry written). Without it every
-- loan update wrote a new entry into each of the loan's four indexes.
alter table loan set (fillfactor = 50);
alter table account_balance set (fillfactor = 50);
