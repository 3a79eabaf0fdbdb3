-- A person belongs to one household of a ledger (DESIGN.md: the household is the borrower, and
-- its cap counts all its members' loans together; one person in two households would double it).
-- The writer looks up, before it registers a household or contracts a loan, the households the
-- head's or borrower's identity number already heads, and the open loans its borrower already
-- owes, through these two indexes. Neither is unique: a database may hold such pairs recorded
-- before this rule, which stay as they are (the rule refuses new ones).
create index household_head_idx on household (head_id_number);
create index loan_borrower_idx on loan (borrower_id_number);
