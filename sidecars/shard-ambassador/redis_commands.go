package main

import "strings"

// How each redis command is routed. Like twemproxy, the proxy knows every command it forwards: a command
// it does not know could read or write keys on the wrong shard, so it is refused with an error instead.

type routeKind uint8

const (
	routeKey       routeKind = iota + 1 // the key is argument 1
	routeSplit                          // arguments 1.. are keys: split per shard, merge the replies
	routeSplitKV                        // MSET: key/value pairs, split per shard
	routeSameShard                      // several keys that must all live on one shard (use a hash tag)
	routeNumKeys                        // EVAL-like: argument 2 counts the keys that follow
	routeStore                          // ZUNIONSTORE-like: destination, then a count of keys
	routeLocal                          // answered by the proxy itself
)

type mergeKind uint8

const (
	mergeArray mergeKind = iota + 1 // MGET: one array, elements in key order
	mergeSum                        // DEL, EXISTS, UNLINK, TOUCH: the sum of the integers
	mergeOK                         // MSET: +OK when every shard says OK
)

type command struct {
	id      int // the command's metrics (commandID): its name, upper case as in the table, is the label
	route   routeKind
	merge   mergeKind
	minArgs int // including the command name
	// lastKey is the last key argument of a routeSameShard command; -1 means every argument from 1.
	lastKey int
}

var redisCommands = func() map[string]command {
	m := map[string]command{}
	add := func(c command, names string) {
		for _, n := range strings.Fields(names) {
			c.id = commandID(n)
			m[n] = c
		}
	}
	add(command{route: routeKey, minArgs: 2}, `
		DUMP EXPIRE EXPIREAT PEXPIRE PEXPIREAT PERSIST PTTL SORT SORT_RO TTL TYPE RESTORE EXPIRETIME PEXPIRETIME
		APPEND BITCOUNT BITPOS BITFIELD BITFIELD_RO DECR DECRBY GET GETBIT GETRANGE GETSET GETDEL GETEX INCR INCRBY
		INCRBYFLOAT PSETEX SET SETBIT SETEX SETNX SETRANGE STRLEN SUBSTR
		HDEL HEXISTS HGET HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HSET HSETNX HVALS HSCAN HSTRLEN HRANDFIELD
		LINDEX LINSERT LLEN LPOP LPUSH LPUSHX LRANGE LREM LSET LTRIM RPOP RPUSH RPUSHX LPOS
		SADD SCARD SISMEMBER SMISMEMBER SMEMBERS SPOP SRANDMEMBER SREM SSCAN
		ZADD ZCARD ZCOUNT ZINCRBY ZLEXCOUNT ZRANGE ZRANGEBYLEX ZRANGEBYSCORE ZRANK ZREM ZREMRANGEBYLEX
		ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX ZREVRANGEBYSCORE ZREVRANK ZSCORE ZSCAN
		ZPOPMIN ZPOPMAX ZMSCORE ZRANDMEMBER
		PFADD GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER GEORADIUSBYMEMBER_RO GEOSEARCH
		XADD XLEN XRANGE XREVRANGE XTRIM XDEL XACK XPENDING XCLAIM XAUTOCLAIM`)
	add(command{route: routeSplit, merge: mergeArray, minArgs: 2}, "MGET")
	add(command{route: routeSplit, merge: mergeSum, minArgs: 2}, "DEL UNLINK EXISTS TOUCH")
	add(command{route: routeSplitKV, merge: mergeOK, minArgs: 3}, "MSET")
	add(command{route: routeSameShard, minArgs: 2, lastKey: -1}, "SINTER SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE PFCOUNT PFMERGE")
	add(command{route: routeSameShard, minArgs: 3, lastKey: 2}, "RENAME RENAMENX RPOPLPUSH SMOVE LMOVE COPY GEOSEARCHSTORE ZRANGESTORE")
	add(command{route: routeNumKeys, minArgs: 4}, "EVAL EVALSHA EVAL_RO EVALSHA_RO")
	add(command{route: routeStore, minArgs: 4}, "ZUNIONSTORE ZINTERSTORE ZDIFFSTORE")
	add(command{route: routeLocal, minArgs: 1}, "PING ECHO QUIT SELECT COMMAND AUTH")
	return m
}()

// refusedRedisCommands are redis commands the proxy knows and refuses (whole-keyspace, blocking,
// pub/sub, transactions, server administration): shard_ambassador_refused_commands_total labels them by
// name, and every other refused name "other", so a client sending made-up names cannot grow the series
// without bound.
var refusedRedisCommands = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`
		KEYS SCAN RANDOMKEY DBSIZE FLUSHALL FLUSHDB SWAPDB MOVE MIGRATE OBJECT WAIT WAITAOF
		MULTI EXEC DISCARD WATCH UNWATCH
		BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP XREAD XREADGROUP LMPOP ZMPOP
		SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE SSUBSCRIBE SUNSUBSCRIBE PUBLISH SPUBLISH PUBSUB MONITOR
		XGROUP XINFO XSETID LCS SINTERCARD ZINTERCARD ZUNION ZINTER ZDIFF
		SCRIPT FUNCTION FCALL FCALL_RO CLIENT CONFIG INFO HELLO RESET CLUSTER READONLY READWRITE ACL
		MEMORY LATENCY MODULE SLOWLOG DEBUG SAVE BGSAVE BGREWRITEAOF LASTSAVE SHUTDOWN TIME ROLE
		REPLICAOF SLAVEOF SYNC PSYNC FAILOVER LOLWUT`) {
		m[n] = true
	}
	return m
}()

// refusedLabel is the label a refused command counts under: its name if redis has such a command,
// "other" if not.
func refusedLabel(name []byte) string {
	up := upperName(name)
	if refusedRedisCommands[up] {
		return up
	}
	return "other"
}

// lookupCommand finds name case-insensitively without allocating.
func lookupCommand(name []byte) (command, bool) {
	var up [24]byte
	if len(name) > len(up) {
		return command{}, false
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	c, ok := redisCommands[string(up[:len(name)])]
	return c, ok
}
