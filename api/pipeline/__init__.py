"""The pipeline from trades to stored bars, independent of threads where it can
be: the bar kinds (kinds), the one set of ingest rules used live and by replay
(ingest), the typed messages between stages (messages), and rows <-> bars with
batched idempotent upserts (store)."""
