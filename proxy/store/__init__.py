"""Key store and usage ledger: the records, the interface the proxy uses, and its backends."""
