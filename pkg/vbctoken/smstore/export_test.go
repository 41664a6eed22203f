package smstore

// ShardOf exposes the index shard of an account to the tests.
var ShardOf = shardOf
