"""zkv: a distributed, replicated, partitioned key-value store on ZeroMQ."""
