package ring

import (
	"crypto/md5"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
)

// The hash functions below are written by hand, not taken from hash/fnv or a murmur library, because
// twemproxy's versions are not the textbook ones: its fnv1a_64 keeps a 32-bit state seeded with the low
// half of the 64-bit offset basis, its crc32 is libmemcached's 15-bit variant, and several of them read
// key bytes as C's signed char (bytes >= 0x80 are sign-extended before mixing). A user migrating from
// twemproxy needs every key to land on the same shard as before, so each function follows twemproxy
// 0.5.0's src/hashkit/nc_*.c bit for bit; the compatibility tests check them against a real nutcracker.

// HashFunc maps a key to twemproxy's 32-bit hash value.
type HashFunc func(key []byte) uint32

var hashes = map[string]HashFunc{
	"one_at_a_time": OneAtATime,
	"md5":           MD5,
	"crc16":         CRC16,
	"crc32":         CRC32,
	"crc32a":        CRC32a,
	"fnv1_64":       FNV1_64,
	"fnv1a_64":      FNV1a64,
	"fnv1_32":       FNV1_32,
	"fnv1a_32":      FNV1a32,
	"hsieh":         Hsieh,
	"murmur":        Murmur,
	"jenkins":       Jenkins,
}

// HashNames lists twemproxy's hash function names, sorted.
func HashNames() []string {
	names := make([]string, 0, len(hashes))
	for n := range hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Hash returns the hash function called name (twemproxy's spelling), or an error listing the accepted names.
func Hash(name string) (HashFunc, error) {
	if h, ok := hashes[name]; ok {
		return h, nil
	}
	return nil, fmt.Errorf("unknown hash %q: want one of %s", name, strings.Join(HashNames(), ", "))
}

// signed is a key byte as C's (signed) char widened to 32 bits, as twemproxy reads it on x86.
func signed(b byte) uint32 { return uint32(int32(int8(b))) }

// FNV1a64 is twemproxy's "fnv1a_64": despite its name a 32-bit FNV-1a with the 64-bit constants truncated
// (offset 0x84222325, prime 0x1b3) over sign-extended bytes.
func FNV1a64(key []byte) uint32 {
	h := uint32(0x84222325)
	for _, b := range key {
		h ^= signed(b)
		h *= 0x1b3
	}
	return h
}

// FNV1_64 is twemproxy's "fnv1_64": a real 64-bit FNV-1 over sign-extended bytes, truncated to 32 bits.
func FNV1_64(key []byte) uint32 {
	h := uint64(0xcbf29ce484222325)
	for _, b := range key {
		h *= 0x100000001b3
		h ^= uint64(int64(int8(b)))
	}
	return uint32(h)
}

// FNV1a32 is 32-bit FNV-1a over sign-extended bytes.
func FNV1a32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h ^= signed(b)
		h *= 16777619
	}
	return h
}

// FNV1_32 is 32-bit FNV-1 over sign-extended bytes.
func FNV1_32(key []byte) uint32 {
	h := uint32(2166136261)
	for _, b := range key {
		h *= 16777619
		h ^= signed(b)
	}
	return h
}

// MD5 is the first four bytes of the key's MD5 digest, little-endian (twemproxy's hash_md5).
func MD5(key []byte) uint32 {
	d := md5.Sum(key)
	return uint32(d[0]) | uint32(d[1])<<8 | uint32(d[2])<<16 | uint32(d[3])<<24
}

// CRC32 is libmemcached's crc32 as twemproxy has it: bits 16..30 of the IEEE CRC-32, so 0..32767.
func CRC32(key []byte) uint32 { return (crc32.ChecksumIEEE(key) >> 16) & 0x7fff }

// CRC32a is the standard IEEE CRC-32.
func CRC32a(key []byte) uint32 { return crc32.ChecksumIEEE(key) }

// OneAtATime is Jenkins' one-at-a-time hash over sign-extended bytes.
func OneAtATime(key []byte) uint32 {
	var v uint32
	for _, b := range key {
		v += signed(b)
		v += v << 10
		v ^= v >> 6
	}
	v += v << 3
	v ^= v >> 11
	v += v << 15
	return v
}

// Murmur is MurmurHash2 with twemproxy's seed (0xdeadbeef × length), reading little-endian words.
func Murmur(key []byte) uint32 {
	const m = 0x5bd1e995
	n := uint32(len(key))
	h := (0xdeadbeef * n) ^ n
	data := key
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// Hsieh is Paul Hsieh's SuperFastHash as twemproxy has it (the 3-byte tail's last byte sign-extended).
func Hsieh(key []byte) uint32 {
	if len(key) == 0 {
		return 0
	}
	get16 := func(b []byte) uint32 { return uint32(b[1])<<8 + uint32(b[0]) }
	var h uint32
	rem := len(key) & 3
	for n := len(key) >> 2; n > 0; n-- {
		h += get16(key)
		tmp := (get16(key[2:]) << 11) ^ h
		h = (h << 16) ^ tmp
		key = key[4:]
		h += h >> 11
	}
	switch rem {
	case 3:
		h += get16(key)
		h ^= h << 16
		h ^= signed(key[2]) << 18
		h += h >> 11
	case 2:
		h += get16(key)
		h ^= h << 11
		h += h >> 17
	case 1:
		h += uint32(key[0])
		h ^= h << 10
		h += h >> 1
	}
	h ^= h << 3
	h += h >> 5
	h ^= h << 4
	h += h >> 17
	h ^= h << 25
	h += h >> 6
	return h
}

// Jenkins is Bob Jenkins' lookup3 hashlittle with initval 13 (libmemcached's and twemproxy's "jenkins").
func Jenkins(key []byte) uint32 {
	rot := func(x uint32, k uint) uint32 { return x<<k | x>>(32-k) }
	n := uint32(len(key))
	a := 0xdeadbeef + n + 13
	b, c := a, a
	for len(key) > 12 {
		a += le32(key[0:])
		b += le32(key[4:])
		c += le32(key[8:])
		a -= c
		a ^= rot(c, 4)
		c += b
		b -= a
		b ^= rot(a, 6)
		a += c
		c -= b
		c ^= rot(b, 8)
		b += a
		a -= c
		a ^= rot(c, 16)
		c += b
		b -= a
		b ^= rot(a, 19)
		a += c
		c -= b
		c ^= rot(b, 4)
		b += a
		key = key[12:]
	}
	if len(key) == 0 {
		return c
	}
	var tail [12]byte
	copy(tail[:], key)
	a += le32(tail[0:])
	b += le32(tail[4:])
	c += le32(tail[8:])
	c ^= b
	c -= rot(b, 14)
	a ^= c
	a -= rot(c, 11)
	b ^= a
	b -= rot(a, 25)
	c ^= b
	c -= rot(b, 16)
	a ^= c
	a -= rot(c, 4)
	b ^= a
	b -= rot(a, 14)
	c ^= b
	c -= rot(b, 24)
	return c
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

var crc16Table = func() (t [256]uint32) {
	// The CRC-16/XMODEM table (polynomial 0x1021, not reflected), as in twemproxy 0.5.0's nc_crc16.c.
	for i := range t {
		c := uint32(i) << 8
		for j := 0; j < 8; j++ {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c & 0xffff
	}
	return t
}()

// CRC16 is twemproxy 0.5.0's crc16: XMODEM's table, but the state is a uint32 that is never masked to
// 16 bits, so long keys give values above 0xffff — kept, because the shard choice depends on them.
func CRC16(key []byte) uint32 {
	var crc uint32
	for _, b := range key {
		crc = crc<<8 ^ crc16Table[(crc>>8^uint32(b))&0xff]
	}
	return crc
}
