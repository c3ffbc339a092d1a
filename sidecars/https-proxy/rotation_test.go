package main

import (
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// secretVolume lays files out as the kubelet does for a Secret volume: the files live in a timestamped
// directory, ..data is a symlink to it, and each name is a symlink into ..data. An update writes a new
// directory and renames a new ..data symlink over the old one (one atomic step), then removes the old one.
type secretVolume struct {
	dir     string
	current string
	n       int
}

func (v *secretVolume) publish(t *testing.T, files map[string][]byte) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..%s.%09d", time.Now().UTC().Format("2006_01_02_15_04_05"), v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		writeFile(t, filepath.Join(v.dir, ts, name), data)
	}
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.current != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, v.current)); err != nil {
			t.Fatal(err)
		}
	}
	v.current = ts
}

func TestRotationByDataSymlinkSwap(t *testing.T) {
	ca := newPKI(t, "test CA")
	certA, certB, certC := ca.serverCert(t, time.Now().Add(time.Hour)), ca.serverCert(t, time.Now().Add(2*time.Hour)), ca.serverCert(t, time.Now().Add(3*time.Hour))
	vol := &secretVolume{dir: t.TempDir()}
	vol.publish(t, map[string][]byte{"tls.crt": certA.certPEM, "tls.key": certA.keyPEM})
	cfg := testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp)))
	cfg.CertificatePath, cfg.KeyPath = filepath.Join(vol.dir, "tls.crt"), filepath.Join(vol.dir, "tls.key")
	p := startProxy(t, ca, cfg) // PollInterval is an hour: only the file watch can notice the swap

	// A keep-alive connection opened before the rotation.
	keepAlive := p.client("1.1", nil)
	getOnKeepAlive := func() (serial *big.Int, reused bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", p.url("/"), nil)
		resp, err := keepAlive.Do(req)
		if err != nil {
			t.Fatalf("request on the keep-alive connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body) // read to the end, so that the connection is reused
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber, reused
	}
	if serial, _ := getOnKeepAlive(); serial.Cmp(certA.serial) != 0 {
		t.Fatalf("serving serial %x, want certificate A %x", serial, certA.serial)
	}

	// A client that loops on new connections through both rotations.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var lastSerial atomic.Pointer[big.Int]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tr := p.client("1.1", nil).Transport.(*http.Transport)
		tr.DisableKeepAlives = true
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Get(p.url("/loop"))
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, resp.Status)
				continue
			}
			ok.Add(1)
			lastSerial.Store(resp.TLS.PeerCertificates[0].SerialNumber)
		}
	})
	stopLoop := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoop()
	eventually(t, "the looping client's first request", func() bool { return ok.Load() > 0 })

	vol.publish(t, map[string][]byte{"tls.crt": certB.certPEM, "tls.key": certB.keyPEM})
	eventually(t, "new connections to present certificate B", func() bool {
		return servedSerial(t, p.httpsAddr, ca).Cmp(certB.serial) == 0
	})
	eventually(t, "the looping client to see certificate B", func() bool {
		s := lastSerial.Load()
		return s != nil && s.Cmp(certB.serial) == 0
	})
	if serial, reused := getOnKeepAlive(); !reused || serial.Cmp(certA.serial) != 0 {
		t.Errorf("keep-alive connection: reused=%v serial %x; want the same connection, still with certificate A %x", reused, serial, certA.serial)
	}
	if got, want := p.metric("https_proxy_certificate_expiry_timestamp_seconds"), float64(certB.notAfter(t).Unix()); got != want {
		t.Errorf("expiry metric = %v, want certificate B's %v", got, want)
	}

	// A broken update (C's certificate with B's key) is refused and B stays in use.
	vol.publish(t, map[string][]byte{"tls.crt": certC.certPEM, "tls.key": certB.keyPEM})
	eventually(t, "the failed reload to be counted", func() bool {
		return p.metric(`https_proxy_certificate_reloads_total{result="failure"}`) >= 1
	})
	if serial := servedSerial(t, p.httpsAddr, ca); serial.Cmp(certB.serial) != 0 {
		t.Errorf("after a broken update new connections get serial %x, want certificate B %x", serial, certB.serial)
	}
	okBefore := ok.Load()
	eventually(t, "more loop requests after the broken update", func() bool { return ok.Load() > okBefore+10 })

	stopLoop()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d looping requests failed during the rotations; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d requests on new connections, none failed", ok.Load())
}

func (l leaf) notAfter(t *testing.T) time.Time {
	t.Helper()
	c, err := parseLeaf(l.certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c.NotAfter
}
