package ring

import (
	"crypto/md5"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// Server is one shard as twemproxy describes it: "host:port:weight [name]".
type Server struct {
	Host   string
	Port   int
	Weight int
	// Name is the explicit name, or "" (then the ketama name is host:port, or host alone for port 11211).
	Name string
}

// Addr is host:port, the address to dial.
func (s Server) Addr() string {
	if strings.Contains(s.Host, ":") {
		return "[" + s.Host + "]:" + strconv.Itoa(s.Port)
	}
	return s.Host + ":" + strconv.Itoa(s.Port)
}

// KetamaName is the string twemproxy hashes to place the server on the continuum: the explicit name, or
// host:port, or just host when the port is 11211 (libmemcached's convention, kept by twemproxy).
func (s Server) KetamaName() string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Port == 11211:
		return s.Host
	default:
		return s.Host + ":" + strconv.Itoa(s.Port)
	}
}

// String is how logs and metrics name the server: its name, or host:port.
func (s Server) String() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Addr()
}

// ParseServer reads twemproxy's "host:port:weight [name]" (IPv6 hosts in brackets).
func ParseServer(s string) (Server, error) {
	s = strings.TrimSpace(s)
	addr, name, _ := strings.Cut(s, " ")
	name = strings.TrimSpace(name)
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return Server{}, fmt.Errorf("shard %q: want host:port:weight [name]", s)
	}
	weight, err := strconv.Atoi(addr[i+1:])
	if err != nil || weight < 1 {
		return Server{}, fmt.Errorf("shard %q: weight %q: want a whole number of at least 1", s, addr[i+1:])
	}
	hostport := addr[:i]
	j := strings.LastIndexByte(hostport, ':')
	if j < 0 {
		return Server{}, fmt.Errorf("shard %q: want host:port:weight [name]", s)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(hostport[:j], "["), "]")
	port, err := strconv.Atoi(hostport[j+1:])
	if err != nil || port < 1 || port > 65535 {
		return Server{}, fmt.Errorf("shard %q: port %q: want a port number from 1 to 65535", s, hostport[j+1:])
	}
	if host == "" {
		return Server{}, fmt.Errorf("shard %q: empty host: want host:port:weight [name]", s)
	}
	return Server{Host: host, Port: port, Weight: weight, Name: name}, nil
}

// Distributions are twemproxy's distribution names.
var Distributions = []string{"ketama", "modula", "random"}

// Ring maps keys to server indexes. It is immutable: ejecting or restoring a server builds a new Ring.
type Ring struct {
	hash    HashFunc
	dist    string
	tag     [2]byte
	hasTag  bool
	nserver int
	points  []point // ketama: sorted continuum; modula: one entry per unit of weight; random: live servers
}

type point struct {
	value uint32
	index uint32
}

// New builds the ring over servers, of which only those with live[i] take keys (live nil: all).
// hashTag is "" or two characters. It fails on an unknown distribution or a bad hash tag; with no
// live server the ring is empty and Pick returns -1.
func New(servers []Server, live []bool, hash HashFunc, distribution, hashTag string) (*Ring, error) {
	r := &Ring{hash: hash, dist: distribution, nserver: len(servers)}
	switch len(hashTag) {
	case 0:
	case 2:
		r.tag, r.hasTag = [2]byte{hashTag[0], hashTag[1]}, true
	default:
		return nil, fmt.Errorf("hash tag %q: want two characters, such as {}", hashTag)
	}
	isLive := func(i int) bool { return live == nil || live[i] }
	nlive, total := 0, 0
	for i, s := range servers {
		if isLive(i) {
			nlive++
			total += s.Weight
		}
	}
	switch distribution {
	case "ketama":
		for i, s := range servers {
			if !isLive(i) {
				continue
			}
			r.points = append(r.points, ketamaPoints(s, i, total, nlive)...)
		}
		// twemproxy sorts with qsort (not stable); equal 32-bit points are vanishingly rare.
		sort.Slice(r.points, func(a, b int) bool { return r.points[a].value < r.points[b].value })
	case "modula":
		for i, s := range servers {
			if isLive(i) {
				for w := 0; w < s.Weight; w++ {
					r.points = append(r.points, point{index: uint32(i)})
				}
			}
		}
	case "random":
		for i := range servers {
			if isLive(i) {
				r.points = append(r.points, point{index: uint32(i)})
			}
		}
	default:
		return nil, fmt.Errorf("unknown distribution %q: want one of %s", distribution, strings.Join(Distributions, ", "))
	}
	return r, nil
}

// ketamaPoints places server s (index i) on the continuum exactly as twemproxy's ketama_update does,
// including its float32 arithmetic: floor(weight/total × 40 × live + 1e-10) × 4 points, four per MD5
// digest of "name-k", each a little-endian uint32.
func ketamaPoints(s Server, i, total, nlive int) []point {
	pct := float32(s.Weight) / float32(total)
	x := float32(float32(float32(pct*float32(160))/float32(4)) * float32(nlive))
	perServer := uint32(math.Floor(float64(float32(float64(x)+0.0000000001)))) * 4
	name := s.KetamaName()
	pts := make([]point, 0, perServer)
	for k := uint32(0); k < perServer/4; k++ {
		d := md5.Sum([]byte(name + "-" + strconv.FormatUint(uint64(k), 10)))
		for a := 0; a < 4; a++ {
			pts = append(pts, point{value: le32(d[a*4:]), index: uint32(i)})
		}
	}
	return pts
}

// HashKey is twemproxy's hash of key: the part between the hash tag's characters when the tag is set
// and found (and not empty), an empty key hashes to 0, and a one-server pool never hashes.
func (r *Ring) HashKey(key []byte) uint32 {
	if r.hasTag {
		if i := indexByte(key, r.tag[0]); i >= 0 {
			if j := indexByte(key[i+1:], r.tag[1]); j > 0 {
				key = key[i+1 : i+1+j]
			}
		}
	}
	if r.nserver == 1 || len(key) == 0 {
		return 0
	}
	return r.hash(key)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// Pick returns the index (into the servers given to New) of the server that owns key, or -1 when no
// server is live.
func (r *Ring) Pick(key []byte) int {
	if len(r.points) == 0 {
		return -1
	}
	if r.nserver == 1 {
		return int(r.points[0].index)
	}
	switch r.dist {
	case "ketama":
		h := r.HashKey(key)
		lo, hi := 0, len(r.points)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if r.points[mid].value < h {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo == len(r.points) {
			lo = 0
		}
		return int(r.points[lo].index)
	case "modula":
		return int(r.points[r.HashKey(key)%uint32(len(r.points))].index)
	default: // random
		return int(r.points[rand.IntN(len(r.points))].index)
	}
}

// Live reports how many servers take keys.
func (r *Ring) Live() int {
	seen := map[uint32]bool{}
	for _, p := range r.points {
		seen[p.index] = true
	}
	return len(seen)
}

// SortServers puts servers in twemproxy's order, which decides modula's and random's mapping: nutcracker
// sorts a pool's servers by name (conf_validate_server → string_compare: shorter names first, then
// bytewise) and uses that order from then on, whatever order the file lists them in.
func SortServers(servers []Server) {
	sort.SliceStable(servers, func(i, j int) bool {
		a, b := servers[i].KetamaName(), servers[j].KetamaName()
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
}
