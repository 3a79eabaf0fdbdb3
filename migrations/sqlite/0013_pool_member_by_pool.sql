-- A pool's members are read by pool (every pool command reads them).
create index pool_member_pool on pool_member (pool_id);
