package ring

import "testing"

func TestParseServerAndKetamaName(t *testing.T) {
	for in, want := range map[string]Server{
		"10.0.0.1:11211:1":        {Host: "10.0.0.1", Port: 11211, Weight: 1},
		"redis-0.redis:6379:3 r0": {Host: "redis-0.redis", Port: 6379, Weight: 3, Name: "r0"},
		"[::1]:6380:2":            {Host: "::1", Port: 6380, Weight: 2},
	} {
		got, err := ParseServer(in)
		if err != nil || got != want {
			t.Errorf("ParseServer(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	names := map[Server]string{
		{Host: "a", Port: 11211}:            "a",
		{Host: "a", Port: 6379}:             "a:6379",
		{Host: "a", Port: 6379, Name: "r0"}: "r0",
	}
	for s, want := range names {
		if got := s.KetamaName(); got != want {
			t.Errorf("%+v.KetamaName() = %q, want %q", s, got, want)
		}
	}
	for _, bad := range []string{"a:1", "a:x:1", "a:1:0", ":1:1"} {
		if _, err := ParseServer(bad); err == nil {
			t.Errorf("ParseServer(%q): no error", bad)
		}
	}
}

func TestFNV1a64IsTwemproxysVariant(t *testing.T) {
	// 32-bit state, offset 0x84222325, prime 0x1b3, bytes sign-extended: Go's hash/fnv gives other values.
	if got := FNV1a64(nil); got != 0x84222325 {
		t.Errorf("FNV1a64(\"\") = %#x", got)
	}
	h, prime := uint32(0x84222325)^0xffffffff, uint32(0x1b3) // 0xff sign-extended
	want := h * prime
	if got := FNV1a64([]byte{0xff}); got != want {
		t.Errorf("FNV1a64(0xff) = %#x, want %#x", got, want)
	}
}

func TestEmptyRingPicksNothing(t *testing.T) {
	r, err := New([]Server{{Host: "a", Port: 1, Weight: 1}, {Host: "b", Port: 1, Weight: 1}}, []bool{false, false}, FNV1a64, "ketama", "")
	if err != nil || r.Pick([]byte("k")) != -1 {
		t.Fatalf("Pick with no live server = %d, %v", r.Pick([]byte("k")), err)
	}
}
